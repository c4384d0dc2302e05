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

"""Build a virtualenv of pinned packages once, for a tier that runs servers
from another release than tox's own virtualenv (tools/older_glance.py,
tools/nova_env.py).
"""

import os
import subprocess
import sys
import venv


def build_once(folder, packages, marker):
    """Create *folder* with *packages* unless its *marker* file says it was
    built already; return its python.
    """
    folder = os.path.abspath(folder)
    python = os.path.join(folder, 'bin', 'python')
    marker = os.path.join(folder, marker)
    if not os.path.exists(marker):
        venv.create(folder, with_pip=True, clear=True)
        subprocess.run([python, '-m', 'pip', 'install', '--quiet',
                        '--disable-pip-version-check'] + list(packages),
                       check=True, stdout=sys.stderr)
        open(marker, 'w').close()
    return python
