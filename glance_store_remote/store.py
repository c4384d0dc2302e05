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

"""The ``remote-glance`` glance_store driver: an edge Glance reads its images
from a central Glance.

This module is only the glance_store surface: the location format, the
driver's capabilities, and the one table that turns this package's
exceptions into glance_store's. Talking to central lives in ``upstream.py``,
the local copy in ``cache.py`` and ``readthrough.py``.

Glance imports every enabled driver module to list and register options,
and drops a store silently when that import fails: keep the imports here
light and certain.

Locations look like ``remote-glance://<backend>/<central-image-uuid>``.
"""

import contextlib
import logging
import re

from glance_store import capabilities
from glance_store import driver
from glance_store import exceptions as gs_exceptions
from glance_store import location as gs_location

from glance_store_remote import backend as backend_module
from glance_store_remote import cache
from glance_store_remote import delivery
from glance_store_remote import exceptions
from glance_store_remote import glance_edge
from glance_store_remote import link_scope
from glance_store_remote import locations
from glance_store_remote import opts
from glance_store_remote import record_rules
from glance_store_remote import store_copy
from glance_store_remote import upstream

LOG = logging.getLogger(__name__)

SCHEME = locations.SCHEME

# The one place where our errors become glance_store's (and so HTTP codes:
# NotFound is 400 at location add, RemoteServiceUnavailable is 503 at
# download). A lying central is as unusable as an absent one; a refused
# link looks like an unknown image.
_TO_GLANCE_STORE = (
    (exceptions.InvalidLocation, gs_exceptions.BadStoreUri),
    (exceptions.LinkRefused, gs_exceptions.NotFound),
    # Before any byte: a 503 naming both sizes. Glance would turn NotFound
    # into an empty 204 and StoreRandomGetNotSupported into a 400 that
    # blames a client whose range was valid for the edge record.
    (exceptions.SizeMismatch, gs_exceptions.RemoteServiceUnavailable),
    (exceptions.UpstreamNotFound, gs_exceptions.NotFound),
    (exceptions.UpstreamUnavailable, gs_exceptions.RemoteServiceUnavailable),
    (exceptions.UpstreamProtocolError,
     gs_exceptions.RemoteServiceUnavailable),
)
# At location add Glance answers 500 for RemoteServiceUnavailable but 503
# for glance_store's TimeoutError: a central that cannot be asked now is
# that, to the client.
_TO_GLANCE_STORE_AT_LINK = tuple(
    (ours, gs_exceptions.TimeoutError
     if theirs is gs_exceptions.RemoteServiceUnavailable else theirs)
    for ours, theirs in _TO_GLANCE_STORE)


def linked_central_images(edge_record):
    """The central image IDs that the live remote-glance locations of an
    edge record (glance_edge.EdgeRecords.get) name, in any backend.
    """
    linked = set()
    for loc in edge_record.get('locations') or ():
        named = locations.central_image_of(loc.get('url'))
        if named and loc.get('status', 'active') == 'active':
            linked.add(named[1])
    return linked


@contextlib.contextmanager
def _glance_store_errors(table=_TO_GLANCE_STORE):
    """Re-raise this package's errors as the glance_store exception Glance
    maps to the right HTTP answer; the client is told only the public part
    of the message, the log has it all.
    """
    try:
        yield
    except exceptions.RemoteGlanceError as e:
        for ours, theirs in table:
            if isinstance(e, ours):
                LOG.warning('%s', e)
                raise theirs(message=getattr(e, 'public', str(e))) from None
        raise


@contextlib.contextmanager
def _not_held_here(location):
    """A read that needs central while it cannot be used tells the client
    (a user whose server fails to boot) which image and why, in words;
    the reason central could not be used stays in the edge's log.
    """
    try:
        yield
    except exceptions.UpstreamBusy:
        raise
    except exceptions.UpstreamUnavailable as e:
        central_id = location.store_location.image_id
        # The edge image the user asked for, when only one uses this
        # location (a link may give it an ID of its own).
        users = glance_edge.live_images_at(location.get_store_uri())
        e.public = exceptions.not_held_here(
            central_id, users[0] if len(users) == 1 else None)
        raise


@contextlib.contextmanager
def _refusal_counted(cache):
    """Count a read refused because central cannot serve it (no WAN slot
    came free: ``busy``; central unreachable, failing or its breaker open:
    ``unavailable``), once, in *cache*'s counters when there is a cache.
    Such a read was counted under no other result (readthrough.py).
    """
    try:
        yield
    except exceptions.UpstreamUnavailable as e:
        if cache is not None:
            cache.count(**{'busy' if isinstance(e, exceptions.UpstreamBusy)
                           else 'unavailable': 1})
        raise


class StoreLocation(gs_location.StoreLocation):
    """``remote-glance://<backend>/<central-image-uuid>``."""

    def process_specs(self):
        self.backend = self.specs['backend']
        self.image_id = self.specs['image_id']

    def parse_uri(self, uri):
        backend = self.backend_group
        with _glance_store_errors():
            self.image_id = locations.parse_location(uri, backend)
        self.backend = backend

    def get_uri(self):
        return '%s://%s/%s' % (SCHEME, self.backend, self.image_id)


class Store(driver.Store):
    """Read-only store whose images live in a central Glance."""

    # Reads, offsets and ranges; no WRITE_ACCESS, so an upload is refused
    # with 410 before it reaches us. READ_RANDOM already holds READ_ACCESS.
    _CAPABILITIES = (capabilities.BitMasks.READ_RANDOM |
                     capabilities.BitMasks.DRIVER_REUSABLE)
    OPTIONS = opts.store_opts

    def __init__(self, conf, backend=None):
        super().__init__(conf, backend=backend)
        self._central = None
        self._data_source = None
        self._cache = None
        self._readthrough = None
        self._auto_copy = None
        if backend:
            # glance_store's url_prefix: which store a location belongs to.
            self._url_prefix = locations.location_url(backend, '')

    def get_schemes(self):
        return (SCHEME,)

    def configure(self, re_raise_bsc=False):
        """Read the backend group and prepare (not open) the connection to
        central.

        :raises BadStoreConfiguration: the group cannot describe a central
            Glance (no backend group, no auth_type nor endpoint_override, an
            unknown auth plugin)
        """
        backend = self.backend_group
        if not backend:
            raise gs_exceptions.BadStoreConfiguration(
                store_name=SCHEME, reason='remote-glance works only as a '
                'backend of enabled_backends (multi-store Glance)')
        opts.register_keystoneauth_opts(self.conf, backend)
        try:
            parts = backend_module.for_node(self.conf, backend)
        except backend_module.ConfigError as e:
            raise gs_exceptions.BadStoreConfiguration(store_name=backend,
                                                      reason=str(e))
        self._cache = parts.cache
        self._central = parts.central
        self._data_source = parts.gate
        self._readthrough = parts.reader
        try:
            self._auto_copy = store_copy.auto_copy_from_conf(
                self.conf, backend, self._cache,
                lambda image_id: self._record_of(image_id, None).raw)
        except store_copy.CopyError as e:
            raise gs_exceptions.BadStoreConfiguration(store_name=backend,
                                                      reason=str(e))
        super().configure(re_raise_bsc=re_raise_bsc)

    @property
    def cache(self):
        """This backend's cache.Cache, or None."""
        return self._cache

    def get_size(self, location, context=None):
        """Size of the central image, once the requester may link it.

        Glance asks this of every location it is about to accept, in every
        form its API takes one, with the request context: the one place
        where a link is authorized. The requester must be able to see the
        image at central now (central's current record, reused for at most
        ``remote_glance_record_ttl``; never the copy kept with the cache),
        with an accepted membership for a shared image. When the
        ``remote-glance-record-copy`` filter names the edge image
        (link_scope.py), its data fields must agree with central's, every
        other remote-glance location of it (live in the edge database, or
        authorized earlier in the same request) must name the same central
        image, and the authorized link is reported so that central's record
        is copied once Glance has accepted it. Nothing is written here.

        Cost: one GET to central for the record and, for a shared image, one
        for the membership, the first time in a request.

        :raises NotFound: central has no such active image, or the
            requester may not link it (Glance answers 400 either way)
        :raises TimeoutError: central cannot be asked now (Glance answers
            503; it would answer 500 for RemoteServiceUnavailable here)
        """
        with _glance_store_errors(_TO_GLANCE_STORE_AT_LINK):
            central_id = location.store_location.image_id
            record = self._central.record(central_id,
                                          request_id=_request_id(context))
            scope = link_scope.scope_of(context)
            backend = self.backend_group
            decided = (scope.decision(backend, central_id)
                       if scope is not None else None)
            if isinstance(decided, exceptions.LinkRefused):
                # Logged when it was decided: answer the same, quietly.
                raise gs_exceptions.NotFound(message=decided.public)
            if decided is None:
                try:
                    self._authorize(context, record.raw, scope)
                except exceptions.LinkRefused as refusal:
                    if scope is not None:
                        scope.refused(backend, central_id, refusal)
                    raise
                if scope is not None:
                    scope.linked(backend, central_id)
            return record.size

    def _authorize(self, context, record, scope):
        """Raise LinkRefused unless the requester may link *record* into
        the scope's edge image.
        """
        central_id = record['id']
        project = getattr(context, 'project_id', None)
        if not record_rules.may_use(context, record, lambda member: (
                self._central.member_status(central_id, member))):
            raise exceptions.LinkRefused(
                'project %s may not link central image %s (visibility %s '
                'at central)' % (project, central_id,
                                 record.get('visibility')))
        if scope is None:
            return
        # Read with the requester's own context: Glance loaded this image
        # for the requester before asking, so anything else is refused.
        edge = glance_edge.EdgeRecords().get(scope.edge_image_id,
                                             context=context)
        if edge is None:
            raise exceptions.LinkRefused(
                'edge image %s is not visible to project %s' % (
                    scope.edge_image_id, project))
        # One edge image is one central image: its record (size, checksum,
        # the copied properties) can describe only one, and a client
        # verifies what any of its locations serves against that record.
        # Glance asks about a request's locations one after the other, so
        # the links authorized earlier in this request count as the
        # edge image's own.
        others = linked_central_images(edge) | {
            linked for _, linked in scope.links()}
        others.discard(central_id)
        if others:
            raise exceptions.LinkRefused(
                'edge image %s already links central image %s; all its '
                'remote-glance locations must name that image, not %s' % (
                    scope.edge_image_id, ', '.join(sorted(others)),
                    central_id))
        conflicts = record_rules.data_conflicts(record, edge)
        if conflicts:
            raise exceptions.LinkRefused(
                'central image %s does not match edge image %s: %s' % (
                    central_id, scope.edge_image_id, '; '.join(conflicts)))

    @capabilities.check
    def get(self, location, offset=0, chunk_size=None, context=None):
        """Stream the central image, or the *chunk_size* bytes from *offset*
        of it (Glance passes the Range length as *chunk_size*).

        :returns: (iterator of bytes, number of bytes it yields)
        """
        with _glance_store_errors(), _not_held_here(location), \
                _refusal_counted(self._cache):
            record = self._record(location, context)
            length = (chunk_size if chunk_size is not None
                      else record.size - offset)
            if self._readthrough is not None:
                data = self._readthrough.read(record, offset, length)
            elif not length:
                data = delivery.empty()
            else:
                # No cache: central's bytes, verified as they pass.
                data = delivery.from_central(
                    self._data_source.open_data(
                        record, offset, length,
                        request_id=_request_id(context)),
                    cache.expected_from_record(record.raw), offset, length)
            data = delivery.checked(data)
        if self._auto_copy is not None and length and length == record.size:
            # remote_glance_copy_to_store: a whole read queues the copy.
            data = self._auto_copy.watch(data, record.id, length)
        return data, length

    @property
    def central(self):
        """The upstream.Central this backend reads."""
        return self._central

    def _record(self, location, context):
        return self._record_of(location.store_location.image_id, context)

    def _record_of(self, image_id, context):
        """Central's record of an image, to serve its data: the copy kept
        in the cache when there is one (image data never changes at central,
        and this works offline), else central's answer. Never used to
        authorize: see get_size.
        """
        if self._readthrough is not None:
            kept = self._readthrough.stored_record(image_id)
            if kept is not None:
                return upstream.ImageRecord(kept)
        try:
            return self._central.record(image_id,
                                        request_id=_request_id(context))
        except exceptions.UpstreamUnavailable:
            # Central cut: another node of the site may hold the image.
            site = self._readthrough and self._readthrough.site
            held = site.held_record(image_id) if site is not None else None
            if held is None:
                raise
            return held

    def delete(self, location, context=None):
        """Release what this edge holds for the location; central is never
        touched: its image belongs to central, not to this edge.

        The cached copy is released unless another edge image still uses the
        same location, it is pinned, or it is being read; when the edge
        database cannot be read it is kept.

        Not behind ``capabilities.check``, which would demand WRITE_ACCESS
        and refuse the edge's own clean-up.
        """
        image_id = location.store_location.image_id
        self._central.forget(image_id)
        if self._cache is None:
            return
        users = glance_edge.count_live_locations(location.get_store_uri())
        if users is None or users > 1:
            LOG.info('cache: keeping image %s, %s', image_id,
                     'still used by other edge images' if users
                     else 'its users cannot be counted here')
            return
        try:
            result = self._cache.evict(image_id)
        except exceptions.CacheError as e:
            LOG.warning('cache: image %s not released: %s', image_id, e)
            return
        if result != 'absent':
            LOG.info('cache: image %s released at delete: %s', image_id,
                     result)


# oslo.context's request ID form. Glance takes a request ID from the
# client's header as it comes: only this form is passed on to central.
_REQUEST_ID = re.compile('req-' + locations.IMAGE_ID)


def _request_id(context):
    """The ID that ties the edge's request to central's log, or None."""
    for candidate in (getattr(context, 'global_request_id', None),
                      getattr(context, 'request_id', None)):
        if isinstance(candidate, str) and _REQUEST_ID.fullmatch(candidate):
            return candidate
    return None
