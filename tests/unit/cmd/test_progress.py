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

"""Unit tests of cmd/progress.py."""

import io

import testtools

from glance_store_remote.cmd import progress

MiB = progress.MiB


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


class TestProgress(testtools.TestCase):

    def run_transfer(self, tty):
        now = [0.0]
        stream = Stream(tty)
        shown = progress.Progress('img', 100 * MiB, stream,
                                  clock=lambda: now[0])
        for _ in range(10):
            now[0] += 1
            shown.advance(10 * MiB)
        shown.finish('cached and verified')
        return stream.getvalue()

    def test_terminal_gets_a_redrawn_bar_with_rate_and_eta(self):
        text = self.run_transfer(tty=True)
        self.assertIn('\rimg [##', text)
        self.assertIn(' 10 MiB/s ETA 0:0', text)
        self.assertTrue(text.endswith('img cached and verified: 100 MiB in '
                                      '10.0 s (10 MiB/s)\x1b[K\n'), text)

    def test_a_pipe_gets_one_plain_line(self):
        self.assertEqual('img cached and verified: 100 MiB in 10.0 s '
                         '(10 MiB/s)\n', self.run_transfer(tty=False))
