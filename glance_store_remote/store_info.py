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

"""Remote-glance stores are read-only to Glance's API, as http stores are.

A paste filter for the edge's glance-api pipeline, placed after the context
filter (``[filter:remote-glance-store-info]``, see
etc/glance-api-paste.ini.edge-example).

Why a filter and not the driver's capabilities: Glance 33 and 30.2 decide
which stores are read-only by the configured store TYPE alone, never by
what the driver says it can do. ``glance/api/v2/discovery.py`` marks
``"read-only": "true"`` only for type ``http``, and
``glance/common/utils.py: _get_available_stores`` skips only ``http`` when
an import or copy-image says ``all_stores``. The driver's missing
WRITE_ACCESS is seen only when glance_store is asked to write, after Glance
accepted the import: the driver refuses (StoreAddDisabled), and Glance
reverts the whole import, the edge's own stores included. So the decision
has to be taken in the API process, before Glance answers:

* ``GET /v2/info/stores`` and ``/v2/info/stores/detail`` are answered by
  Glance's own discovery resource with a controller that marks every
  remote-glance store ``"read-only": "true"`` (Glance's policy checks and
  serializer unchanged). The detail view of a remote-glance store has type
  ``remote-glance`` and no properties, as an http store: Glance's own
  detail view knows no properties for a store type it does not ship and
  answers 500.
* An import or copy-image that names a remote-glance store in ``stores``
  or ``X-Image-Meta-Store`` is refused at once with 409 (Glance's answer
  for a store it cannot import to), and an upload naming one in
  ``X-Image-Meta-Store`` with 410 (what glance_store's StoreAddDisabled
  gives), before Glance touches the image or reads any data.
* ``all_stores`` imports: Glance expands the list in
  ``glance.common.utils._get_available_stores`` and nowhere else (the task
  gets the expanded list). The API offers no way to say "all stores but
  these", and rewriting the request into an explicit list would change
  Glance's copy-image semantics (with ``all_stores`` a store already holding
  the image is skipped, named explicitly it is a 400). So the filter wraps
  that one function (through glance_edge.py), once, when it is loaded: the
  wrapper calls Glance's own and drops the remote-glance stores. If a
  Glance release renames it, the filter logs an error at start and every
  other part of it still works; tests run it against Glance 33 and 30.2.
"""

import json
import logging
import re

from oslo_config import cfg

from glance_store_remote import glance_edge
from glance_store_remote import locations

LOG = logging.getLogger(__name__)

_INFO_PATH = re.compile(r'^/v2/info/stores(?P<detail>/detail)?/?$')
_IMAGE_ACTION = re.compile(
    r'^/v2/images/(?P<id>[^/]+)/(?P<action>import|file)/?$')
# An import request is a small JSON document; a larger body is left to
# Glance, unread.
MAX_IMPORT_BODY = 64 * 1024
# Set in a request's environ while Glance's own detail view runs for it.
_HIDE = 'remote_glance.hide_read_only'


def read_only_backends(conf=None):
    """The names of the remote-glance backends of enabled_backends."""
    conf = conf or cfg.CONF
    try:
        enabled = conf.enabled_backends or {}
    except cfg.NoSuchOptError:
        return set()
    return {name for name, kind in enabled.items()
            if kind == locations.SCHEME}


def exclude_from_all_stores():
    """Make Glance's ``all_stores`` expansion skip remote-glance stores
    (glance_edge.wrap_available_stores; see the module docstring);
    idempotent. Returns True when the wrapper is in place.
    """
    def available_stores(original, *args, **kwargs):
        read_only = read_only_backends()
        return [store for store in original(*args, **kwargs)
                if store not in read_only]

    wrapped = glance_edge.wrap_available_stores(available_stores)
    if wrapped is False:
        LOG.error('remote-glance: this Glance has no '
                  'glance.common.utils._get_available_stores; imports with '
                  'all_stores will also target the remote-glance stores '
                  '%s, and fail', sorted(read_only_backends()))
    return bool(wrapped)


def _info_controller_class():
    class ReadOnlyInfo(glance_edge.discovery_controller_class()):
        """Glance's discovery controller, remote-glance stores read-only."""

        def get_stores(self, req):
            result = super().get_stores(req)
            read_only = read_only_backends()
            hidden = req.environ.get(_HIDE)
            stores = []
            for store in result['stores']:
                if store['id'] in read_only:
                    if hidden:
                        continue
                    store['read-only'] = 'true'
                stores.append(store)
            result['stores'] = stores
            return result

        def get_stores_detail(self, req):
            read_only = read_only_backends()
            listed = self.get_stores(req)['stores']
            if not any(store['id'] in read_only for store in listed):
                return super().get_stores_detail(req)
            # Glance's detail view (its policy check, types, properties,
            # weights) for the other stores: it calls get_stores, which
            # leaves ours out for this request.
            req.environ[_HIDE] = True
            try:
                detailed = {store['id']: store for store in
                            super().get_stores_detail(req)['stores']}
            finally:
                req.environ.pop(_HIDE, None)
            stores = []
            for store in listed:
                if store['id'] in read_only:
                    store = dict(store, type=locations.SCHEME,
                                 properties={},
                                 weight=getattr(getattr(cfg.CONF,
                                                        store['id']),
                                                'weight', 0))
                stores.append(detailed.get(store['id'], store))
            return {'stores': stores}

    return ReadOnlyInfo


class StoreInfoFilter:
    """WSGI middleware; see the module docstring."""

    def __init__(self, app, info=None):
        self.app = app
        self._info = info

    @property
    def info(self):
        """Glance's discovery resource around ReadOnlyInfo, made once."""
        if self._info is None:
            self._info = glance_edge.discovery_resource(
                _info_controller_class())
        return self._info

    def __call__(self, environ, start_response):
        import webob
        import webob.exc

        path = environ.get('PATH_INFO', '')
        method = environ.get('REQUEST_METHOD')
        read_only = read_only_backends()
        if not read_only:
            return self.app(environ, start_response)
        info = _INFO_PATH.match(path) if method == 'GET' else None
        if info:
            environ['wsgiorg.routing_args'] = ((), {
                'action': ('get_stores_detail' if info['detail']
                           else 'get_stores'),
                'body_reject': True})
            return self.info(environ, start_response)
        action = _IMAGE_ACTION.match(path)
        if action is None or (method, action['action']) not in (
                ('POST', 'import'), ('PUT', 'file')):
            return self.app(environ, start_response)
        request = webob.Request(environ)
        named = [request.headers.get('X-Image-Meta-Store')]
        if action['action'] == 'import':
            named += _stores_of(request)
        refused = [name for name in named if name in read_only]
        if not refused:
            return self.app(environ, start_response)
        msg = ('Store %s is read-only: a remote-glance store reads images '
               'from another Glance and never writes to it (GET '
               '/v2/info/stores marks it read-only). Name one of this '
               "Glance's writable stores, or all_stores, which leaves the "
               'read-only stores out.' % refused[0])
        LOG.info('remote-glance: refused %s %s naming read-only store %s',
                 method, path, refused[0])
        error = (webob.exc.HTTPConflict if action['action'] == 'import'
                 else webob.exc.HTTPGone)
        return error(explanation=msg)(environ, start_response)


def _stores_of(request):
    """The ``stores`` of an import request's JSON body; the body stays
    readable for Glance.
    """
    length = request.content_length
    if not length or length > MAX_IMPORT_BODY:
        return []
    body = request.body
    try:
        stores = json.loads(body).get('stores')
    except (ValueError, AttributeError, UnicodeDecodeError):
        return []
    if not isinstance(stores, list):
        return []
    return [store for store in stores if isinstance(store, str)]


def filter_factory(global_conf, **local_conf):
    """Paste entry point: ``paste.filter_factory =
    glance_store_remote.store_info:filter_factory``.
    """
    exclude_from_all_stores()
    return StoreInfoFilter
