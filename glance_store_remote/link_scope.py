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

"""What the driver knows of the API request that adds a location.

Glance asks a store for the size of every location it is about to accept,
with the request context, but does not say which image the location is for.
The record-copy filter (record_copy.py) sees the request's path: it names the
edge image here under the request's context object, and the driver finds it
again from the context it is given, also in the background task that Glance
runs for ``POST /v2/images/<id>/locations`` (the same context object, in
another thread, after the answer went out). The driver reports each location
it authorized back to the scope, which hands it to whoever opened the scope.

Keyed by the context OBJECT, weakly: a request ID would not do, since Glance
takes it from the client's X-Openstack-Request-ID header. A scope lives as
long as its request's context. Standard library only, so that store.py can
import it at no cost.
"""

import threading
import weakref

_scopes = weakref.WeakKeyDictionary()
_lock = threading.Lock()


class LinkScope:
    """One API request about one edge image.

    :param edge_image_id: the edge image the request changes, exactly as
        the request names it
    :param on_link: callable(scope, backend, central_id), called once per
        location of *backend* the driver authorized
    """

    def __init__(self, edge_image_id, on_link):
        self.edge_image_id = edge_image_id
        self._on_link = on_link
        self._decisions = {}   # (backend, central id) -> refusal or None
        self._lock = threading.Lock()
        self.answered = False

    def decision(self, backend, central_id):
        """What the driver decided about this location earlier in this
        request (Glance asks up to three times per location): None if
        nothing yet, True if authorized, else the refusal to raise again.
        """
        with self._lock:
            if (backend, central_id) not in self._decisions:
                return None
            return self._decisions[(backend, central_id)] or True

    def refused(self, backend, central_id, refusal):
        """The driver refused a location: remember why."""
        with self._lock:
            self._decisions[(backend, central_id)] = refusal

    def linked(self, backend, central_id):
        """The driver authorized a location: remember it and report it."""
        with self._lock:
            first = (backend, central_id) not in self._decisions
            self._decisions[(backend, central_id)] = None
        if first:
            self._on_link(self, backend, central_id)

    def links(self):
        """The locations authorized in this request: (backend, central id)."""
        with self._lock:
            return [key for key, refusal in self._decisions.items()
                    if refusal is None]


def open_scope(context, edge_image_id, on_link):
    """Start the scope of the request whose context is *context*; returns
    the LinkScope.
    """
    scope = LinkScope(edge_image_id, on_link)
    with _lock:
        _scopes[context] = scope
    return scope


def scope_of(context):
    """The LinkScope of the request *context* belongs to, or None (no
    record-copy filter in the pipeline, not a request about one image, or
    no context at all).
    """
    if context is None:
        return None
    with _lock:
        try:
            return _scopes.get(context)
        except TypeError:  # a context that cannot be weakly referenced
            return None
