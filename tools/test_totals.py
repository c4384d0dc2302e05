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

"""Print ``N passed, N failed, N skipped`` for every run in a stestr
repository (default ``.stestr``), read from the subunit streams themselves.

CI sums the unit and the functional runs with this; it exits 1 if any test
failed or no test ran at all, so the line is never better than the truth.
"""

import os
import sys

import subunit
import testtools


def count(repository):
    """Sum every run stored in *repository* (subunit v1 files named 0, 1,
    ...): returns (passed, failed, skipped).
    """
    result = testtools.TestResult()
    runs = sorted((name for name in os.listdir(repository)
                   if name.isdigit()), key=int)
    for name in runs:
        with open(os.path.join(repository, name), 'rb') as stream:
            subunit.ProtocolTestCase(stream).run(result)
    failed = (len(result.errors) + len(result.failures) +
              len(result.unexpectedSuccesses))
    skipped = sum(len(tests) for tests in result.skip_reasons.values())
    passed = result.testsRun - failed - skipped
    return passed, failed, skipped


def main(argv):
    repository = argv[1] if len(argv) > 1 else '.stestr'
    passed, failed, skipped = (count(repository) if os.path.isdir(repository)
                               else (0, 0, 0))
    print('%d passed, %d failed, %d skipped' % (passed, failed, skipped))
    return 0 if failed == 0 and passed > 0 else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv))
