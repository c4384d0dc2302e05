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

"""Progress of a long transfer on the operator's terminal.

On a terminal: one line per image, redrawn at most five times a second with
bytes, rate and time left. Elsewhere (logs, pipes): one plain line per image
when it ends, so the output stays readable in a file.
"""

import time

MiB = 1024 * 1024
WIDTH = 24
REDRAW = 0.2  # seconds between redraws


def _duration(seconds):
    seconds = int(seconds)
    return '%d:%02d' % divmod(seconds, 60) if seconds < 3600 else \
        '%d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)


class Progress:
    """Progress of one image of *size* bytes, written to *stream*."""

    def __init__(self, label, size, stream, clock=time.monotonic):
        self.label = label
        self.size = size
        self.stream = stream
        self.done_bytes = 0
        self._clock = clock
        self._started = clock()
        self._drawn = 0.0
        self._tty = stream.isatty()

    def advance(self, count):
        self.done_bytes += count
        now = self._clock()
        if self._tty and now - self._drawn >= REDRAW:
            self._drawn = now
            self.stream.write('\r' + self.line(now))
            self.stream.flush()

    def line(self, now):
        elapsed = max(now - self._started, 1e-6)
        rate = self.done_bytes / elapsed
        share = self.done_bytes / self.size if self.size else 1.0
        filled = int(WIDTH * share)
        left = (self.size - self.done_bytes) / rate if rate else 0
        return '%s [%s%s] %3d%% %d/%d MiB %.0f MiB/s ETA %s' % (
            self.label, '#' * filled, '.' * (WIDTH - filled), share * 100,
            self.done_bytes // MiB, self.size // MiB, rate / MiB,
            _duration(left))

    def finish(self, outcome):
        """End the line with *outcome* (e.g. 'verified')."""
        elapsed = max(self._clock() - self._started, 1e-6)
        text = '%s %s: %d MiB in %.1f s (%.0f MiB/s)' % (
            self.label, outcome, self.done_bytes // MiB, elapsed,
            self.done_bytes / MiB / elapsed)
        self.stream.write(('\r%s\x1b[K\n' if self._tty else '%s\n') % text)
        self.stream.flush()
