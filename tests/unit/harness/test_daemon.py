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

"""Unit tests of the lab's one daemon helper (tests/harness/daemon.py): a
child leads its own process group, a wait is bounded and ends when the child
exits, a stop reaches the whole group by PID, even a child that ignores
SIGTERM.
"""

import os
import signal
import socket
import subprocess
import sys
import time

import fixtures
import testtools

from tests.harness import daemon

# A parent that starts a child in its group, prints the child's PID, and
# then sleeps; with 'ignore', both ignore SIGTERM.
FAMILY = '''
import os, signal, subprocess, sys, time
if sys.argv[1] == "ignore":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
child = subprocess.Popen([
    sys.executable, "-c", "import signal, sys, time\\n"
    "if sys.argv[1] == 'ignore':\\n"
    "    signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
    "time.sleep(600)", sys.argv[1]])
print(child.pid, flush=True)
time.sleep(600)
'''


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open('/proc/%d/stat' % pid) as f:
        return f.read().rsplit(')', 1)[1].split()[0] != 'Z'


class TestDaemon(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.root = self.useFixture(fixtures.TempDir()).path
        self.log = os.path.join(self.root, 'out.log')

    def spawn(self, command):
        proc = daemon.spawn(command, self.log, self.root)
        self.addCleanup(daemon.kill, proc)
        return proc

    def family(self, mode):
        proc = self.spawn([sys.executable, '-c', FAMILY, mode])

        def child_pid():
            with open(self.log) as f:
                return int(f.read().split()[0])
        daemon.wait_until(child_pid, 10, {'parent': proc}, 'the child',
                          lambda: '')
        return proc, child_pid()

    def test_the_child_leads_a_group_of_its_own_and_logs_to_its_file(self):
        proc = self.spawn([sys.executable, '-c', 'print("hello")'])
        self.assertEqual(0, proc.wait(10))
        self.assertNotEqual(os.getpgrp(), proc.pid)
        with open(self.log) as f:
            self.assertEqual('hello\n', f.read())

    def test_stop_reaches_the_whole_group(self):
        proc, child = self.family('obey')
        self.assertEqual(proc.pid, os.getpgid(child))
        daemon.stop(proc, grace=10)
        self.assertIsNotNone(proc.returncode)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(alive(child))

    def test_a_group_that_ignores_sigterm_is_killed_after_the_grace(self):
        proc, child = self.family('ignore')
        started = time.monotonic()
        daemon.stop(proc, grace=1)
        self.assertLess(time.monotonic() - started, 5)
        self.assertEqual(-signal.SIGKILL, proc.returncode)
        deadline = time.monotonic() + 10
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(alive(child))

    def test_stop_and_kill_of_nothing_do_nothing(self):
        killpg = self.useFixture(fixtures.MockPatch('os.killpg')).mock
        daemon.stop(None)
        daemon.kill(None)
        daemon.signal_group(None, signal.SIGTERM)
        self.assertEqual([], killpg.call_args_list)

    def test_wait_until_ends_when_the_child_exits(self):
        proc = self.spawn([sys.executable, '-c', 'print("bad config")'])
        started = time.monotonic()
        error = self.assertRaises(
            RuntimeError, daemon.wait_until, lambda: False, 30,
            {'server': proc}, 'an answer', lambda: 'TAIL')
        self.assertLess(time.monotonic() - started, 10)
        self.assertIn('server exited with 0 while waiting for an answer',
                      str(error))
        self.assertIn('TAIL', str(error))

    def test_wait_until_is_bounded_and_raises_the_given_error(self):
        proc = self.spawn([sys.executable, '-c', 'import time\n'
                           'time.sleep(600)'])

        def never():
            raise OSError('not yet')
        self.assertRaises(subprocess.SubprocessError, daemon.wait_until,
                          never, 0.3, {'server': proc}, 'an answer',
                          lambda: '', error=subprocess.SubprocessError)

    def test_free_ports_are_fresh_free_and_below_the_ephemeral_range(self):
        ports = [daemon.free_port() for _ in range(20)]
        self.assertEqual(len(ports), len(set(ports)))
        for port in ports:
            self.assertTrue(
                daemon.PORT_RANGE[0] <= port <= daemon.PORT_RANGE[1])
            self.assertFalse(daemon.port_open(port))
        with socket.socket() as sock:
            sock.bind((daemon.HOST, ports[0]))
            sock.listen()
            self.assertTrue(daemon.port_open(ports[0]))

    def test_starting_stops_what_failed_to_start(self):
        stopped = []

        class Part:
            def stop(self):
                stopped.append(self)
                daemon.forget(self)
        part = Part()
        with testtools.ExpectedException(ValueError):
            with daemon.starting(part):
                raise ValueError('no')
        self.assertEqual([part], stopped)
        self.assertNotIn(part, daemon._live)
        with daemon.starting(part):
            pass
        self.assertIn(part, daemon._live)
        daemon.forget(part)
        self.assertNotIn(part, daemon._live)

    def test_skip_reason_names_what_is_missing_and_its_packages(self):
        self.assertIsNone(daemon.skip_reason('Ceph', [], ('ceph-mon',)))
        self.assertEqual(
            'CEPH TIER SKIPPED: not installed here: ceph-mon (package '
            'ceph-mon). Install as root: apt-get install '
            '--no-install-recommends ceph-mon ceph-osd (.ci/run does it on '
            'CI)', daemon.skip_reason('Ceph', ['ceph-mon (package ceph-mon)'],
                                      ('ceph-mon', 'ceph-osd')))
