# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""What a ``glance-remote`` command prints: text or, with ``--json``,
JSON; per-image results; and Failed, the exit code 1 of a command that ran
but found or left a problem.
"""

import datetime
import json


class Failed(Exception):
    """The command ran but found or left a problem (exit code 1)."""


def emit(args, data, text):
    """Print *data* as JSON with ``--json``, else *text*."""
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(text)


def report(args, results, failed):
    """Print per-image results; raise Failed if any image failed."""
    emit(args, [{'image_id': i, 'result': r, 'details': d}
                for i, r, d in results],
         '\n'.join('%s %s%s' % (i, r, ': %s' % d if d else '')
                   for i, r, d in results))
    if failed:
        raise Failed()


def when(timestamp):
    """A Unix time as UTC ISO 8601, to the second."""
    return datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def as_dict(result):
    """A (result, details) pair as JSON shows it, or None."""
    return dict(zip(('result', 'details'), result)) if result else None


class Quiet:
    """A progress output that shows nothing (--json)."""

    def isatty(self):
        return False

    def write(self, text):
        pass

    def flush(self):
        pass
