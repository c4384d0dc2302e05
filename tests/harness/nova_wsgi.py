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

"""gunicorn entry points for the nova tier's placement and nova-api
(tests/harness/nova.py), in nova's virtualenv.

Both parse ``sys.argv`` as their own command line; under gunicorn that is
gunicorn's, and the worker dies. Keep only the program name, then import
the one application asked for (``tests.harness.nova_wsgi:compute`` or
``tests.harness.nova_wsgi:placement``): each process loads only its own.
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
