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

"""``glance-remote check`` and ``show``: what central answers, with the
backend's credentials, as the driver asks it.
"""

from glance_store_remote.cmd import config
from glance_store_remote.cmd import output


def cmd_check(args, conf, backend):
    central = config.central(conf, backend)
    endpoint = central.probe()
    output.emit(args, {'backend': backend, 'endpoint': endpoint, 'ok': True},
                'backend %s: central Glance at %s answers and accepts our '
                'credentials' % (backend, endpoint))


def cmd_show(args, conf, backend):
    central = config.central(conf, backend)
    record = central.fetch_record(args.image_id)
    output.emit(args, record.raw, '\n'.join(
        '%-20s %s' % (key, record.raw[key]) for key in sorted(record.raw)))
