"""gunicorn entry point for the lab's Keystone.

keystone.wsgi.api parses sys.argv as its own command line; under gunicorn
that is gunicorn's, and the worker exits. Keep only the program name.
"""

import sys

sys.argv = sys.argv[:1]

from keystone.wsgi.api import application  # noqa: E402,F401
