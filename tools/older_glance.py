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

"""Build (once) a virtualenv with an older Glance, for the functional tier
that runs central on it. Prints the virtualenv's python.

Glance 30.2.0 (2025.1) runs here with two pins
(doc/source/contributor/lab.rst): without ``oslo.db<18`` its db_sync fails.

    python -m tools.older_glance DIR
"""

import sys

from tools import venv_once

PACKAGES = ('glance==30.2.0', 'oslo.db<18', 'SQLAlchemy<2.1', 'gunicorn')
MARKER = 'glance-store-remote-older-glance-ready'


def main(argv):
    print(venv_once.build_once(argv[1], PACKAGES, MARKER))
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
