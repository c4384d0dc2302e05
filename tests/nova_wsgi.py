"""gunicorn entry points for the nova tier's placement and nova-api
(tests/nova.py), in nova's virtualenv.

Both parse ``sys.argv`` as their own command line; under gunicorn that is
gunicorn's, and the worker dies. Keep only the program name, then import
the one application asked for (``tests.nova_wsgi:compute`` or
``tests.nova_wsgi:placement``): each process loads only its own.
"""

import sys

sys.argv = sys.argv[:1]


def __getattr__(name):
    if name == 'compute':
        from nova.wsgi.osapi_compute import application
        return application
    if name == 'placement':
        from placement.wsgi.api import application
        return application
    raise AttributeError(name)
