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

"""Build (once) a virtualenv with tempest 47 and glance-tempest-plugin, for
the tempest tier (tests/harness/tempest_lab.py). Prints the virtualenv's
python.

Tempest gets a virtualenv of its own, outside tox's: it is the client
side, pins its own libraries, and must not move when the Glance of the
functional virtualenv is upgraded (nor move it).

    python -m tools.tempest_env DIR
"""

import sys
import zlib

from tools import venv_once

PACKAGES = ('tempest==47.0.0', 'glance-tempest-plugin==0.17.0')
# Names the package list: a virtualenv built from another list is rebuilt.
MARKER = 'glance-store-remote-tempest-ready-%08x' % zlib.crc32(
    ' '.join(PACKAGES).encode())


def main(argv):
    print(venv_once.build_once(argv[1], PACKAGES, MARKER))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
