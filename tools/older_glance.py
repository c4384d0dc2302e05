"""Build (once) a virtualenv with an older Glance, for the functional tier
that runs central on it. Prints the virtualenv's python.

Glance 30.2.0 (2025.1) runs here with two pins (see GLANCE-NOTES.md):
without ``oslo.db<18`` its db_sync fails.

    python tools/older_glance.py DIR
"""

import os
import subprocess
import sys
import venv

PACKAGES = ('glance==30.2.0', 'oslo.db<18', 'SQLAlchemy<2.1', 'gunicorn')
MARKER = 'glance-store-remote-older-glance-ready'


def main(argv):
    folder = os.path.abspath(argv[1])
    python = os.path.join(folder, 'bin', 'python')
    marker = os.path.join(folder, MARKER)
    if not os.path.exists(marker):
        venv.create(folder, with_pip=True, clear=True)
        subprocess.run([python, '-m', 'pip', 'install', '--quiet',
                        '--disable-pip-version-check'] + list(PACKAGES),
                       check=True, stdout=sys.stderr)
        open(marker, 'w').close()
    print(python)
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv))
