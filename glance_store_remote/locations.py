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

"""The location format, ``remote-glance://<backend>/<central image ID>``,
and the registry of this glance-api's remote-glance stores: one home for
both, so that the driver, the filters and the CLI never write them again.

Standard library only at import time (glance_store is imported when the
registry is asked).
"""

import re

from glance_store_remote import exceptions

SCHEME = 'remote-glance'
PREFIX = SCHEME + '://'

# Glance image IDs are lowercase canonical UUIDs; nothing else is accepted,
# so a location can never smuggle a path, a query or credentials to central.
IMAGE_ID = '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}'
BACKEND = '[A-Za-z0-9_-]{1,255}'
_LOCATION = re.compile(r'remote-glance://(?P<backend>%s)/(?P<image_id>%s)'
                       % (BACKEND, IMAGE_ID))


def location_url(backend, image_id):
    """The location of central image *image_id* in *backend*."""
    return '%s%s/%s' % (PREFIX, backend, image_id)


def parse_location(uri, backend):
    """Return the central image ID of *uri*, a location of *backend*.

    :raises InvalidLocation: for anything but
        ``remote-glance://<backend>/<lowercase uuid>``
    """
    match = _LOCATION.fullmatch(uri) if isinstance(uri, str) else None
    if match is None:
        raise exceptions.InvalidLocation(
            'a remote-glance location must be remote-glance://%s/<central '
            'image id as a lowercase UUID>, with nothing else' % backend)
    if match['backend'] != backend:
        raise exceptions.InvalidLocation(
            'location names backend %r, not %r' % (match['backend'], backend))
    return match['image_id']


def central_image_of(uri):
    """(backend, central image ID) of a well-formed location, else None."""
    match = _LOCATION.fullmatch(uri) if isinstance(uri, str) else None
    return (match['backend'], match['image_id']) if match else None


def backend_stores():
    """This glance-api's remote-glance Stores, by backend name, in the
    order of ``enabled_backends`` (empty outside glance-api).
    """
    from glance_store import location
    return {backend: entry['store'] for backend, entry in
            location.SCHEME_TO_CLS_BACKEND_MAP.get(SCHEME, {}).items()}


def backend_store(backend):
    """This glance-api's remote-glance Store for *backend*, or None."""
    return backend_stores().get(backend)
