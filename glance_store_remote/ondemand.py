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

"""On-demand import: the edge answers for central images it was never told
about.

A paste filter of its own (``[filter:remote-glance-on-demand]``, see
etc/glance-api-paste.ini.edge-example), active for the remote-glance
backends that set ``remote_glance_import_on_demand = true``. It acts only
when the edge's own answer to ``GET /v2/images/<id>`` or
``GET /v2/images/<id>/file`` is 404, so the images the edge has cost nothing
extra. Then, in order:

1. an ID the edge has or had (a deleted image, or one the requester may not
   see here) keeps its 404: the edge's own decision stands, and an existing
   image is never adopted. Glance is asked once more, since another worker
   may have just imported the image. An edge image with that ID that is not
   an import (a location other than ``remote-glance://<backend>/<id>``: a
   project member chose central's ID for an image of its own) is logged as
   a conflict, once per ``remote_glance_record_ttl`` seconds per ID;
2. central is asked for the image with the backend's credentials; an ID it
   does not have is remembered for ``remote_glance_record_ttl`` seconds, so
   a stream of made-up IDs costs central one request each per period;
3. the requester must be able to see the image at central, by Glance's own
   rule (``record_rules.may_use`` with any membership); if not, 404 as
   before;
4. the image is created in the edge database with central's ID, its full
   record (data fields included: the driver verifies every byte against
   them), tags, members and a ``remote-glance://<backend>/<id>`` location,
   the import is logged, and Glance answers the request again.

When the lookup cannot be made (central cannot be reached, or the edge
database cannot be read or written), the answer is 503 with Retry-After,
never the 404: a 404 says the image does not exist, and nova treats it as
final, while the image may be there once central or the database is back.
Such an episode is logged once when it starts and once when it ends (with
the count of requests it refused), not once per request.

A paste filter rather than a driver hook: a glance_store driver is only
asked about locations of images Glance already has, and by then the 404 is
decided. The filter runs in glance-api, after the request context is known,
and writes through Glance's database API (glance_edge.py).
"""

import collections
import logging
import re
import threading
import time

import webob

from glance_store_remote import exceptions
from glance_store_remote import glance_edge
from glance_store_remote import locations
from glance_store_remote import record_rules

LOG = logging.getLogger(__name__)

_IMAGE_GET = re.compile(r'^/v2/images/(?P<id>%s)(?:/file)?/?$'
                        % locations.IMAGE_ID)
# IDs central said it does not have, remembered per worker, oldest dropped.
UNKNOWN_MEMO_SIZE = 4096
# Seconds a client is asked to wait before it tries a lookup again.
RETRY_AFTER = 5

IMPORTED, NOT_FOUND, UNAVAILABLE = 'imported', 'not-found', 'unavailable'


def _retry_later(image_id):
    """The 503 of a lookup that could not be made now."""
    response = webob.Response(
        status=503, content_type='text/plain', charset='utf-8',
        text='image %s cannot be looked up at this edge now; try again '
             'later\n' % image_id)
    response.headers['Retry-After'] = str(RETRY_AFTER)
    return response


class _Episode:
    """One log line when lookups start failing, one when they succeed
    again (with how many requests failed meanwhile), instead of a line or a
    traceback per request.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._failures = 0

    def failed(self, what, error):
        with self._lock:
            self._failures += 1
            first = self._failures == 1
        if first:
            LOG.warning('remote-glance: on-demand lookups answer 503 until '
                        'this is over: %s: %s', what, error)
        else:
            LOG.debug('remote-glance: on-demand lookup refused: %s: %s',
                      what, error)

    def ended(self):
        if not self._failures:
            return
        with self._lock:
            failures, self._failures = self._failures, 0
        if failures:
            LOG.warning('remote-glance: on-demand lookups work again, after '
                        '%d refused with 503', failures)


def importing_stores():
    """This edge's remote-glance stores with on-demand import enabled, in
    the order of ``enabled_backends``.
    """
    return [store for store in locations.backend_stores().values()
            if store.conf[store.backend_group].remote_glance_import_on_demand]


class OnDemandImport:
    """WSGI middleware; see the module docstring.

    :param records: the edge database (glance_edge.EdgeRecords by default)
    :param find_stores: callable() -> the remote-glance stores to import
        from (importing_stores by default)
    """

    def __init__(self, app, records=None, find_stores=None,
                 clock=time.monotonic):
        self.app = app
        self._records = records
        self._find_stores = find_stores or importing_stores
        self._clock = clock
        self._unknown = collections.OrderedDict()
        self._episode = _Episode()
        # IDs whose conflict was logged: when, oldest dropped.
        self._conflicts = collections.OrderedDict()
        self._memo_lock = threading.Lock()
        self._lock = threading.Lock()

    @property
    def records(self):
        if self._records is None:
            self._records = glance_edge.EdgeRecords()
        return self._records

    def __call__(self, environ, start_response):
        request = webob.Request(environ)
        match = (_IMAGE_GET.match(request.path_info)
                 if request.method == 'GET' else None)
        stores = self._find_stores() if match else ()
        if not stores:
            return self.app(environ, start_response)
        not_found = []
        held = []

        def hold_404(status, headers, exc_info=None):
            # Glance's webob responses start before returning their body;
            # anything but a 404 goes out untouched, streaming.
            if status.startswith('404'):
                not_found.append((status, headers, exc_info))
                return held.append
            return start_response(status, headers, exc_info)
        # Glance's router leaves its match in the environ: answering again
        # takes the environ as it was before the first answer.
        pristine = dict(environ)
        body = self.app(environ, hold_404)
        if not not_found:
            return body
        try:
            held.extend(body)
        finally:
            getattr(body, 'close', lambda: None)()
        outcome = self._import(request, match['id'], stores)
        if outcome == IMPORTED:
            return self.app(pristine, start_response)
        if outcome == UNAVAILABLE:
            return _retry_later(match['id'])(environ, start_response)
        start_response(*not_found[0])
        return held

    def _import(self, request, image_id, stores):
        """Import *image_id* from the first store whose central has it.

        :returns: IMPORTED (the edge has the image now: Glance answers
            again), NOT_FOUND (the 404 stands) or UNAVAILABLE (central or
            the edge database could not be asked: 503)
        """
        try:
            known = self.records.known(image_id)
        except Exception as e:
            self._episode.failed('the edge database cannot be read', e)
            return UNAVAILABLE
        if known:
            # Another worker may have imported it since Glance answered;
            # else the edge hides or deleted it. Glance's second answer
            # tells which; central is not asked.
            self._report_conflict(image_id, stores)
            return IMPORTED
        context = getattr(request, 'context', None)
        unavailable = False
        for store in stores:
            try:
                record = self._central_record(store, image_id)
            except exceptions.UpstreamError as e:
                self._episode.failed(
                    'central (backend %s) cannot be asked'
                    % store.backend_group, e)
                unavailable = True
                continue
            if record is not None:
                return self._import_record(context, store, record)
        if unavailable:
            return UNAVAILABLE
        self._episode.ended()
        return NOT_FOUND

    def _report_conflict(self, image_id, stores):
        """Log, once per record TTL, an edge image that has a central
        image's ID and is not provably its import
        (record_rules.why_not_an_import): it keeps its ID (the operator
        decides), and the on-demand import of central's image is refused.

        Cost: one edge database read and central's record (memoized as for
        any on-demand lookup).
        """
        try:
            record = self.records.get(image_id)
        except Exception as e:
            self._episode.failed('the edge database cannot be read', e)
            return
        if record is None:
            return   # deleted: Glance never gives its ID again
        image = glance_edge.api_view(record)
        urls = [location['url'] for location in image['locations']]
        now = self._clock()
        for store in stores:
            backend = store.backend_group
            ttl = store.conf[backend].remote_glance_record_ttl
            key = (backend, image_id)
            with self._memo_lock:
                if now - self._conflicts.get(key, now - ttl - 1) < ttl:
                    return
            try:
                central = self._central_record(store, image_id)
            except exceptions.UpstreamError:
                continue
            if central is None:
                continue
            why = record_rules.why_not_an_import(
                image, urls, locations.location_url(backend, image_id),
                central, copies=record_rules.CopyRules.from_conf(
                    store.conf, backend).copies)
            if why is None:
                return   # an import the requester may not see
            with self._memo_lock:
                self._conflicts[key] = now
                self._conflicts.move_to_end(key)
                while len(self._conflicts) > UNKNOWN_MEMO_SIZE:
                    self._conflicts.popitem(last=False)
            LOG.warning('remote-glance: edge image %s (owner %s, %s) has the '
                        'ID of a central image (backend %s) but is not its '
                        'import (%s): it is not adopted, and the on-demand '
                        'import of that image is refused; an operator should '
                        'look at it', image_id, record.get('owner'),
                        record.get('visibility'), backend, why)
            return

    def _central_record(self, store, image_id):
        """Central's active record of *image_id*, or None: central does not
        have it (remembered for a while).

        :raises UpstreamError: central cannot be asked now
        """
        ttl = store.conf[store.backend_group].remote_glance_record_ttl
        key = (store.backend_group, image_id)
        now = self._clock()
        with self._memo_lock:
            if now - self._unknown.get(key, now - ttl - 1) < ttl:
                return None
        try:
            return store.central.record(image_id).raw
        except exceptions.UpstreamNotFound:
            with self._memo_lock:
                self._unknown[key] = now
                self._unknown.move_to_end(key)
                while len(self._unknown) > UNKNOWN_MEMO_SIZE:
                    self._unknown.popitem(last=False)
        return None

    def _import_record(self, context, store, record):
        image_id = record['id']
        backend = store.backend_group
        project = getattr(context, 'project_id', None)
        try:
            members = (store.central.members(image_id)
                       if record.get('visibility') == 'shared' else {})
        except exceptions.UpstreamError as e:
            self._episode.failed('central (backend %s) cannot be asked for '
                                 'the members of an image' % backend, e)
            return UNAVAILABLE
        if not record_rules.may_use(
                context, record, members.get,
                member_statuses=record_rules.ANY_MEMBERSHIP):
            LOG.info('remote-glance: project %s asked for central image %s '
                     '(backend %s), which it may not see at central; not '
                     'imported', project, image_id, backend)
            return NOT_FOUND
        try:
            with self._lock:  # one import of an ID at a time per worker
                if self.records.known(image_id):
                    return IMPORTED
                self.records.create(
                    record_rules.edge_row(
                        record, locations.location_url(backend, image_id),
                        backend,
                        record_rules.CopyRules.from_conf(store.conf, backend)),
                    sorted(record.get('tags') or ()), members)
        except glance_edge.AlreadyExists:
            LOG.info('remote-glance: image %s was imported by another '
                     'worker meanwhile', image_id)
            return IMPORTED
        except Exception as e:
            # The edge database refused (locked, restarting, gone): the
            # image may still exist if another worker wrote it; otherwise
            # the client is told to try again.
            self._episode.failed('the edge database refused an on-demand '
                                 'import', e)
            try:
                return IMPORTED if self.records.known(image_id) else (
                    UNAVAILABLE)
            except Exception:
                return UNAVAILABLE
        self._episode.ended()
        LOG.info('remote-glance: imported central image %s (backend %s, '
                 '%s bytes, %d members) on demand, asked for by project %s',
                 image_id, backend, record.get('size'), len(members),
                 project)
        return IMPORTED


def filter_factory(global_conf, **local_conf):
    """Paste entry point: ``paste.filter_factory =
    glance_store_remote.ondemand:filter_factory``.
    """
    return OnDemandImport
