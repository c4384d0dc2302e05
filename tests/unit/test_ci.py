"""The CI entry point (.ci/run) leaves other processes of the machine
alone: the servers the tests start are stopped by tests/lab.py by process
group (tests/functional/test_deployment.py proves it for uWSGI too), so
nothing is killed by name.
"""

import os
import re

import testtools

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


class TestCiRun(testtools.TestCase):

    def test_kills_nothing_by_name(self):
        with open(os.path.join(ROOT, '.ci', 'run')) as f:
            commands = [line for line in f
                        if not line.lstrip().startswith('#')]
        self.assertEqual([], [line for line in commands if re.search(
            r'\b(pkill|killall)\b', line)])
