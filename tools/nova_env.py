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

"""Build (once) a virtualenv with nova 34 and placement 16 (the OpenStack
release of Glance 33), for the functional tests' nova tier. Prints the
virtualenv's python.

Nova gets a virtualenv of its own, outside tox's: it pins its own
libraries (oslo.messaging, os-vif, libvirt-python, ...) that the Glance
servers of the other tiers never need, and a Glance upgrade in the
functional virtualenv must not move nova. ``libvirt-python`` is built
from source by pip: it needs Debian's ``libvirt-dev`` and ``pkg-config``
(.ci/run installs them with the nova tier's packages). Without them this
script still builds nothing and exits 0 printing nothing, so that the
tier can skip and name what is missing.

    python -m tools.nova_env DIR
"""

import os
import shutil
import subprocess
import sys
import zlib

from tools import venv_once

PACKAGES = ('nova==34.0.0', 'openstack-placement==16.0.0', 'libvirt-python',
            'gunicorn', 'PyMySQL')
# Names the package list: a virtualenv built from another list is rebuilt.
MARKER = 'glance-store-remote-nova-ready-%08x' % zlib.crc32(
    ' '.join(PACKAGES).encode())


def buildable():
    """libvirt-python builds only with libvirt's headers and pkg-config."""
    if not shutil.which('pkg-config'):
        return False
    return subprocess.run(['pkg-config', '--exists', 'libvirt'],
                          capture_output=True).returncode == 0


def main(argv):
    marker = os.path.join(os.path.abspath(argv[1]), MARKER)
    if not os.path.exists(marker) and not buildable():
        print('nova virtualenv not built: libvirt-dev and pkg-config '
              'are missing', file=sys.stderr)
        return 0
    print(venv_once.build_once(argv[1], PACKAGES, MARKER))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
