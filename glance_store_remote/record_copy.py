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

"""Central's image record lands in the edge database, after Glance accepted
a ``remote-glance://`` location.

A paste filter for the edge's glance-api pipeline, placed after the context
filter (``[filter:remote-glance-record-copy]``, see
etc/glance-api-paste.ini.edge-example). It does not read request bodies:
Glance takes locations in more forms than anyone can list. It only names,
for any request that may change one image (``PATCH``, ``POST`` or ``PUT``
under ``/v2/images/<id>``), that image to the driver (link_scope.py).

The decisions are the driver's, made where Glance asks the store about every
location it is about to accept (``Store.get_size``, with the request
context): whether the requester may link central's image, and whether its
data agrees with the edge record. For each link the driver authorized, once
the edge database shows the location live on an active image that no
Glance task holds (Glance accepted it and, for ``POST /locations``, its
background task released the image's import lock), this module copies what
the edge record lacks: size, checksum, os_hash (when central hashes with the
edge's ``hashing_algorithm``), virtual_size, min_disk, min_ram, and the
custom properties record_rules.CopyRules allows. Values the edge record
already has are kept. A request Glance refused, or a task that failed,
writes nothing.

Synchronous forms (``PATCH``) are copied before the answer leaves. A link
authorized by Glance's background task is retried by one thread per worker,
backing off from one second to ten, for at most ``PENDING_SECONDS``.
"""

import logging
import os
import re
import threading
import time

from glance_store_remote import exceptions
from glance_store_remote import glance_edge
from glance_store_remote import link_scope
from glance_store_remote import locations
from glance_store_remote import record_rules

LOG = logging.getLogger(__name__)

# Glance stores an image ID as the request gives it: the scope names it
# exactly so (another case may be another image).
_IMAGE_PATH = re.compile(r'^/v2/images/(?P<id>[0-9a-fA-F-]{36})(?:/|$)')
_CHANGES = ('PATCH', 'POST', 'PUT')
# How long a link waits for Glance's location task to finish, in seconds.
PENDING_SECONDS = 12 * 3600
# How long a link may be absent from an undecided image before it counts as
# refused: Glance saves a location moments after asking the store about it.
ABSENT_GRACE = 30.0
# Retry delays of a waiting link, in seconds: doubling from the first, so
# that a copy follows the end of Glance's task within RETRY_MAX.
RETRY_FIRST, RETRY_MAX = 1.0, 10.0
# Links waiting per worker, at most; the oldest is dropped (and logged).
MAX_PENDING = 4096
# Statuses in which Glance may still be accepting a location.
_UNDECIDED = ('queued', 'saving', 'importing', 'uploading')
# Properties a Glance task holds while it may still save the whole image
# (and so purge what was written beside it): the import lock, and the hash
# operation's host when worker_self_reference_url is set.
_TASK_HOLDS = ('os_glance_import_task', 'os_glance_hash_op_host')


def _hashing_algorithm():
    from oslo_config import cfg
    try:
        return cfg.CONF.hashing_algorithm
    except cfg.NoSuchOptError:
        return 'sha512'


class _Waiting:
    """A link waiting for Glance to accept it."""

    __slots__ = ('scheduled', 'next_at', 'attempts', 'failed')

    def __init__(self, now):
        self.scheduled = self.next_at = now
        self.attempts = 0
        self.failed = False


class RecordCopier:
    """Copies central's record into edge images whose links the driver
    authorized, once Glance has accepted them.

    :param records: the edge database (glance_edge.EdgeRecords by default)
    :param find_store: callable(backend) -> remote-glance Store or None
    :param retry_in_background: retry waiting links in a thread of this
        worker (off in unit tests, which call run_pending)
    """

    # copy() outcomes: copied or never will be; Glance is still checking
    # the data of an accepted link; the link is not on the image (Glance
    # has not saved it yet, or refused it).
    DONE, WAIT, ABSENT = 'done', 'wait', 'absent'

    def __init__(self, records=None, find_store=locations.backend_store,
                 clock=time.monotonic, hashing_algorithm=_hashing_algorithm,
                 retry_in_background=True):
        self._records = records
        self._find_store = find_store
        self._clock = clock
        self._hashing_algorithm = hashing_algorithm
        self._background = retry_in_background
        self._pending = {}   # (edge id, backend, central id) -> _Waiting
        self._lock = threading.Lock()
        self._thread = None
        self._thread_pid = None

    @property
    def records(self):
        if self._records is None:
            self._records = glance_edge.EdgeRecords()
        return self._records

    def schedule(self, scope, backend, central_id):
        """The driver authorized a link in *scope*: copy it once Glance
        accepted it.
        """
        with self._lock:
            self._pending[(scope.edge_image_id, backend, central_id)] = (
                _Waiting(self._clock()))
            while len(self._pending) > MAX_PENDING:
                dropped = next(iter(self._pending))
                del self._pending[dropped]
                LOG.warning('remote-glance: too many links waiting; the '
                            'record of central image %s is not copied into '
                            'edge image %s', dropped[2], dropped[0])
        if scope.answered:
            # Authorized by Glance's background task, after the answer:
            # only the retry thread will see it.
            self._ensure_thread()

    def forget(self, scope):
        """Glance refused the request of *scope*: its links, and only
        those, will never be accepted.
        """
        with self._lock:
            for backend, central_id in scope.links():
                self._pending.pop((scope.edge_image_id, backend, central_id),
                                  None)

    def copy_now(self, edge_image_id):
        """Try the links of *edge_image_id* now; leave those Glance is
        still deciding to the retry thread.
        """
        with self._lock:
            keys = [key for key in self._pending if key[0] == edge_image_id]
        for key in keys:
            self._attempt(key)
        if keys and self.pending():
            self._ensure_thread()

    def run_pending(self):
        """One pass over the waiting links that are due (the retry
        thread's work).
        """
        now = self._clock()
        with self._lock:
            keys = [key for key, waiting in self._pending.items()
                    if waiting.next_at <= now]
        for key in keys:
            self._attempt(key)

    def pending(self):
        with self._lock:
            return sorted(self._pending)

    def _attempt(self, key):
        try:
            outcome = self.copy(*key)
            error = None
        except Exception as e:
            outcome, error = self.WAIT, e
        with self._lock:
            waiting = self._pending.get(key)
            if waiting is None:
                return
            now = self._clock()
            age = now - waiting.scheduled
            if error is not None:
                # Once with the traceback, then quietly until it works.
                LOG.log(logging.DEBUG if waiting.failed else logging.ERROR,
                        'remote-glance: copying the record of central image '
                        '%s into edge image %s failed; will retry: %s',
                        key[2], key[0], error,
                        exc_info=None if waiting.failed else error)
                waiting.failed = True
            if outcome == self.DONE or (
                    outcome == self.ABSENT and age > ABSENT_GRACE):
                del self._pending[key]
            elif age > PENDING_SECONDS:
                del self._pending[key]
                LOG.warning('remote-glance: gave up waiting for Glance to '
                            'accept central image %s in edge image %s; its '
                            'record was not copied', key[2], key[0])
            else:
                waiting.next_at = now + min(
                    RETRY_MAX, RETRY_FIRST * 2 ** waiting.attempts)
                waiting.attempts += 1

    def copy(self, edge_image_id, backend, central_id):
        """Copy central's record into the edge image if Glance accepted
        the link.

        :returns: DONE (copied, nothing to copy, or nothing ever will be),
            WAIT (a Glance task may still save the image, or central cannot
            be asked now) or ABSENT (the link is not on the image)
        """
        edge = self.records.get(edge_image_id)
        if edge is None:
            return self.DONE
        url = locations.location_url(backend, central_id)
        live = any(location.get('url') == url and
                   location.get('status', 'active') == 'active'
                   for location in edge.get('locations') or ())
        status = edge.get('status')
        if not live:
            return self.ABSENT if status in _UNDECIDED else self.DONE
        if status in _UNDECIDED or any(hold in edge['properties']
                                       for hold in _TASK_HOLDS):
            return self.WAIT
        if status != 'active':
            return self.DONE    # deactivated or being deleted meanwhile
        store = self._find_store(backend)
        if store is None:
            return self.DONE
        try:
            record = store.central.record(central_id).raw
        except exceptions.UpstreamNotFound:
            return self.DONE
        except exceptions.UpstreamError as e:
            LOG.info('remote-glance: the record of central image %s will be '
                     'copied when central answers: %s', central_id, e)
            return self.WAIT
        conflicts = record_rules.data_conflicts(record, edge)
        if conflicts:
            LOG.error('remote-glance: edge image %s now differs from central '
                      'image %s (%s); nothing copied', edge_image_id,
                      central_id, '; '.join(conflicts))
            return self.DONE
        rules = record_rules.CopyRules.from_conf(store.conf, backend)
        values, properties = record_rules.plan_copy(
            record, edge, self._hashing_algorithm(), rules)
        if values or properties:
            self.records.update(edge_image_id, values, properties)
            LOG.info('remote-glance: copied the record of central image %s '
                     'into edge image %s: %s and %d properties', central_id,
                     edge_image_id, ', '.join(sorted(values)) or 'no fields',
                     len(properties))
        else:
            LOG.debug('remote-glance: edge image %s already has what the '
                      'record of central image %s gives', edge_image_id,
                      central_id)
        return self.DONE

    def _ensure_thread(self):
        if not self._background:
            return
        # A thread does not survive fork: a worker forked from a master
        # that loaded the pipeline starts its own.
        with self._lock:
            if (self._thread_pid == os.getpid() and
                    self._thread.is_alive()):
                return
            self._thread = threading.Thread(
                target=self._retry_loop, name='remote-glance-record-copy',
                daemon=True)
            self._thread_pid = os.getpid()
            self._thread.start()

    def _retry_loop(self):
        while True:
            time.sleep(RETRY_FIRST)
            self.run_pending()
            with self._lock:
                if not self._pending:
                    self._thread_pid = None
                    return


class RecordCopyFilter:
    """WSGI middleware; see the module docstring."""

    def __init__(self, app, copier=None):
        self.app = app
        self.copier = copier or RecordCopier()

    def __call__(self, environ, start_response):
        match = (_IMAGE_PATH.match(environ.get('PATH_INFO', ''))
                 if environ.get('REQUEST_METHOD') in _CHANGES else None)
        context = _context(environ) if match else None
        if context is None:
            return self.app(environ, start_response)
        image_id = match['id']
        try:
            scope = link_scope.open_scope(context, image_id,
                                          self.copier.schedule)
        except TypeError:   # a context that cannot be weakly referenced
            return self.app(environ, start_response)
        status = []

        def capture(code, headers, exc_info=None):
            status.append(code)
            return start_response(code, headers, exc_info)
        try:
            body = self.app(environ, capture)
        finally:
            scope.answered = True
        if status and status[0].startswith('2'):
            self.copier.copy_now(image_id)
        else:
            self.copier.forget(scope)
        return body


def _context(environ):
    """The request context Glance's context filter left, or None."""
    import webob
    return getattr(webob.Request(environ), 'context', None)


def filter_factory(global_conf, **local_conf):
    """Paste entry point: ``paste.filter_factory =
    glance_store_remote.record_copy:filter_factory``.
    """
    copier = RecordCopier()

    def record_copy_filter(app):
        return RecordCopyFilter(app, copier)
    return record_copy_filter
