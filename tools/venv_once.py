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
