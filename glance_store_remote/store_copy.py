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

"""Copies of remote-glance images into another store of the same edge.

An edge whose glance-api has a store of its own beside remote-glance (the
DCN shape: ``enabled_backends = local:file, ceph:rbd, central:remote-glance``)
boots nova instances on RBD computes by copy-on-write clones of an RBD
snapshot in the same Ceph cluster. An image read through remote-glance is of
no use to such computes until it is in that Ceph: each would download it.
Glance's own ``copy-image`` import makes the copy. It reads the image through
this driver (the read-through cache, its single flight and its verification
included) into its staging area, writes it into the target store, and adds
the location only if the size, checksum and os_hash of what it wrote match
the edge image's record (glance.location's ``_verify_uploaded_data``). The
edge record carries central's values, so a copy is accepted only when it is
central's image, byte for byte; this module refuses to ask for a copy of an
image whose record lacks them.

This module owns:

* the rules, as functions of an edge image record in the shape Glance's API
  shows it (glance_edge.api_view turns a database row into that shape): where a
  copy stands (``copy_state``), whether an image may be copied
  (``refusal``), and which edge images still need the cache's copy of a
  central image (``lacking_copy``);
* ``copy_image``: the one copy procedure (ask for the copy, wait for
  another import and for the copy's end), of the CLI and of AutoCopy, their
  differences as its parameters;
* ``EdgeCopies``: the edge's API as the CLI asks it for a copy, with the
  operator's credentials;
* ``AutoCopy``: the ``remote_glance_copy_to_store`` option inside glance-api
  (a copy of the edge image under central's ID after the first complete,
  verified read, then the release of the cache entry); its access to
  Glance's database and task machinery is glance_edge.GlanceEdge;
* ``release_cache``: evicting a cache entry the store copy made redundant.

Nothing here talks to central or imports Glance.
"""

import logging
import os
import queue
import threading
import time
import typing

from glance_store_remote import exceptions
from glance_store_remote import glance_edge
from glance_store_remote import locations
from glance_store_remote import record_rules
from glance_store_remote import streams

LOG = logging.getLogger(__name__)

# Where a copy into a store stands.
HELD = 'held'          # the image has a location in the store
COPYING = 'copying'    # an import into the store (or any import) runs
FAILED_STATE = 'failed'  # the last import into the store failed
ABSENT = 'absent'      # nothing of the above

# The fields Glance checks a copy against; the edge record must carry
# central's values of all of them.
VERIFIED_FIELDS = ('size', 'checksum', 'os_hash_algo', 'os_hash_value')

# What AutoCopy reports for an edge image that links a central image under
# an ID of its own (see AutoCopy).
NOT_COPIED_LINK = 'not copied: a link under an ID of its own'
NOT_AN_IMPORT = ("not copied: central's ID, but not its import")

POLL_INTERVAL = 1.0       # seconds between looks at a running copy
COPY_TIMEOUT = 6 * 3600   # seconds an automatic copy is waited for
RELEASE_ATTEMPTS = 10     # evictions tried while the entry is being read
RELEASE_DELAY = 1.0       # seconds between them
MAX_ROUNDS = 3            # looks at an image another import held


class CopyError(exceptions.RemoteGlanceError):
    """A copy into a store was refused, failed or did not end in time.
    The message names the image and the store, never a credential.
    """


class CopyBusy(CopyError, exceptions.ImportLocked):
    """Another import of the image runs (Glance's import lock is held)."""


class CopyRefused(CopyError):
    """The edge image must not be copied (see refusal); ``why`` says why."""

    def __init__(self, why):
        super().__init__(why)
        self.why = why


class NotAnImport(CopyRefused):
    """The edge image has central's ID but is not its import
    (record_rules.why_not_an_import): no copy as admin.
    """


class CopyFailed(CopyError):
    """The copy ended without a location in the store, or the image went
    away.
    """


class CopyTimeout(CopyError):
    """An import still held the image when the wait for it ended."""


def store_list(value):
    """A comma-separated store list of an image record, as a list."""
    if not value:
        return []
    if isinstance(value, (list, tuple)):
        return list(value)
    return [name.strip() for name in value.split(',') if name.strip()]


def copy_state(image, target):
    """Where a copy of edge *image* (an API-shaped record) into store
    *target* stands: HELD, COPYING, FAILED_STATE or ABSENT.

    HELD as soon as the image lists the store: Glance adds the location
    only after it verified what it wrote. COPYING while Glance's import
    lock is held (it is taken before the task starts and dropped when it
    ends, success or not). Without the lock, FAILED_STATE when the store is
    listed as failed, or still as importing: Glance 33 leaves it there when
    the copy fails before writing to the store (the read into staging
    failed, e.g. the bytes did not match central's record).
    """
    if target in store_list(image.get('stores')):
        return HELD
    if image.get(glance_edge.IMPORT_LOCK):
        return COPYING
    if (target in store_list(image.get(glance_edge.FAILED)) or
            target in store_list(image.get(glance_edge.IMPORTING))):
        return FAILED_STATE
    return ABSENT


def refusal(image, central, backend, target):
    """Why edge *image* must not be copied into *target*, or None.

    :param image: the edge record, API-shaped
    :param central: central's record of the image it reads (a dict)
    :param backend: the remote-glance backend that holds it
    :param target: the store to copy into
    """
    if target == backend:
        return 'the target store is the remote-glance backend itself'
    if image.get('status') != 'active':
        return 'edge image %s is %s, not active' % (
            image.get('id'), image.get('status'))
    if backend not in store_list(image.get('stores')):
        return 'edge image %s has no location in backend %s' % (
            image.get('id'), backend)
    missing = [f for f in VERIFIED_FIELDS if not image.get(f)]
    if missing:
        return ('edge image %s has no %s: Glance would accept a copy '
                'without checking it' % (image.get('id'),
                                         ', '.join(missing)))
    differ = [f for f in VERIFIED_FIELDS if image.get(f) != central.get(f)]
    if differ:
        return ("edge image %s does not carry central's %s of image %s"
                % (image.get('id'), ', '.join(differ), central.get('id')))
    return None


def uses(image, location):
    """Whether edge *image* reads *location* (a remote-glance URI): True,
    False, or None when its record does not show locations and it may.
    """
    shown = image.get('locations')
    if shown is not None:
        return any(loc.get('url') == location for loc in shown)
    backend, _, central_id = location[len(locations.PREFIX):].partition(
        '/')
    if backend not in store_list(image.get('stores')):
        return False
    # Imports (glance-remote, on demand) keep central's ID.
    return True if image.get('id') == central_id else None


def lacking_copy(images, location, target):
    """IDs of the edge *images* that use (or may use: their locations are
    not shown) *location* and have no copy in *target*: while there is one,
    the cache's copy is still needed.
    """
    return [image.get('id') for image in images
            if uses(image, location) is not False and
            copy_state(image, target) != HELD]


def release_cache(cache, image_id, attempts=RELEASE_ATTEMPTS,
                  delay=RELEASE_DELAY, sleep=time.sleep):
    """Evict the cache entry of central image *image_id*, waiting (up to
    *attempts* tries) while it is being read. A pinned entry stays: a pin
    is the operator's explicit wish.

    :returns: 'evicted', 'absent', 'pinned' or 'busy'
    :raises CacheError: the cache's index cannot be used
    """
    result = 'busy'
    for attempt in range(attempts):
        result = cache.evict(image_id)
        if result != 'busy':
            break
        if attempt + 1 < attempts:
            sleep(delay)
    return result


class EdgeCopies:
    """The edge's images API, as the operator's CLI asks it for copies.

    :param adapter: an authenticated adapter on the edge's /v2 (an
        openstacksdk image proxy or a keystoneauth1 Adapter)
    """

    def __init__(self, adapter):
        self._api = adapter

    def _get(self, path, ok=(200,)):
        response = self._api.request(path, 'GET', raise_exc=False)
        if response.status_code not in ok:
            raise CopyError('the edge answered %d to GET %s: %s' % (
                response.status_code, path, response.text.strip()[:300]))
        return response

    def image(self, image_id):
        """The edge image record, or None (404)."""
        response = self._get('/images/%s' % image_id, ok=(200, 404))
        return response.json() if response.status_code == 200 else None

    def images(self):
        """Every edge image the caller can list (follows pagination)."""
        path = '/images?limit=100'
        while path:
            page = self._get(path).json()
            yield from page.get('images', ())
            following = page.get('next')
            path = following[len('/v2'):] if following else None

    def start_copy(self, image_id, target):
        """``POST /v2/images/<id>/import`` with method copy-image into
        *target*.

        :raises CopyBusy: another import of the image runs (409)
        :raises CopyError: any other refusal (the edge's answer, shortened)
        """
        response = self._api.request(
            '/images/%s/import' % image_id, 'POST', raise_exc=False,
            json={'method': {'name': 'copy-image'}, 'stores': [target],
                  'all_stores_must_succeed': True})
        if response.status_code == 202:
            return
        text = response.text.strip()[:300]
        if response.status_code == 409:
            raise CopyBusy('edge image %s: another import runs: %s'
                           % (image_id, text))
        raise CopyError('edge image %s: the edge answered %d to copy-image '
                        'into %s: %s' % (image_id, response.status_code,
                                         target, text))

    def last_task_message(self, image_id):
        """The message of the image's latest task, or '' (best effort:
        ``GET /v2/images/<id>/tasks`` is Glance 2023.2 and later).
        """
        try:
            response = self._api.request('/images/%s/tasks' % image_id,
                                         'GET', raise_exc=False)
            if response.status_code != 200:
                return ''
            tasks = sorted(response.json().get('tasks', ()),
                           key=lambda t: t.get('created_at') or '')
        except Exception as e:
            LOG.debug('tasks of %s not readable: %s', image_id, e)
            return ''
        return (tasks[-1].get('message') or '') if tasks else ''


class Edge(typing.Protocol):
    """What copy_image needs of the edge: EdgeCopies (its API, with the
    operator's credentials) and glance_edge.GlanceEdge (Glance's own code,
    inside glance-api) both are one.
    """

    def image(self, image_id):
        """The edge image, API-shaped, or None when there is none."""

    def start_copy(self, image_id, target):
        """Start Glance's copy-image import of *image_id* into *target*.

        :raises exceptions.ImportLocked: another import holds the image
        """


def copy_image(edge, image, target, backend, central_record, timeout, *,
               retry_failed, only_imports=False, copies=None,
               task_message=None, poll=POLL_INTERVAL, clock=time.monotonic,
               sleep=time.sleep):
    """Copy edge *image* into store *target* with Glance's copy-image
    import and wait for its end: the one copy procedure, of the CLI's
    ``--store`` (through the edge's API) and of AutoCopy (inside
    glance-api).

    An import holding the image's lock (the hashing task of a new location,
    a copy someone else asked for) refuses the start: the copy is asked
    again once that import ended, up to MAX_ROUNDS times. A stale lock is
    recovered by the edge, as Glance's import call recovers it.

    :param edge: an Edge: EdgeCopies or glance_edge.GlanceEdge
    :param image: the edge record, API-shaped
    :param central_record: callable() -> central's record of the image (a
        dict), called when a copy is about to start, at most once
    :param timeout: seconds each wait (for another import, for the copy)
        lasts at most
    :param retry_failed: ask again for a copy whose last import into
        *target* failed (the operator's CLI); else answer 'failed': a copy
        that failed once would fail in a loop on every read
    :param only_imports: copy only an import of central's image, with
        *copies* the properties an import copies (AutoCopy, which copies as
        admin, outside every quota)
    :param task_message: callable(image ID) -> the message of the image's
        latest task, for the CopyFailed message, or None
    :returns: (result, the edge record then): 'held' (the store held it
        already), 'copied', or 'failed' (not retried)
    :raises CopyRefused: the image must not be copied (NotAnImport: central's
        ID, but not its import)
    :raises CopyFailed: the copy failed, or the image went away
    :raises CopyTimeout: an import still held the image after *timeout*
    :raises exceptions.ImportLocked: another import held it in every round
    :raises CopyError: the edge refused the copy otherwise
    """
    image_id = image['id']
    central = None
    for attempt in range(MAX_ROUNDS):
        state = copy_state(image, target)
        if state == HELD:
            return 'held', image
        if state == FAILED_STATE and not retry_failed:
            return 'failed', image
        if central is None:
            central = central_record()
        try:
            _check(image, central, backend, target, only_imports, copies)
            task_id = edge.start_copy(image_id, target)
        except (CopyRefused, exceptions.ImportLocked) as e:
            # Under another import, a refusal is not final either: the
            # hashing task of a new location writes the record's checksum
            # and os_hash when it ends.
            if attempt + 1 == MAX_ROUNDS or not (
                    state == COPYING or
                    isinstance(e, exceptions.ImportLocked)):
                raise
            LOG.info('copy into %s: edge image %s is under another import '
                     '(%s); looking again once it ended', target, image_id,
                     e)
            image, ended = _until_idle(edge, image_id, target, timeout, poll,
                                       clock, sleep)
            if image is None:
                raise CopyFailed('edge image %s disappeared' % image_id)
            if not ended:
                raise CopyTimeout('edge image %s: another import still runs '
                                  'after %d s' % (image_id, timeout))
            continue
        LOG.info('copying edge image %s (central image %s) into store %s: '
                 'task %s', image_id, image_id, target, task_id)
        image, ended = _until_idle(edge, image_id, target, timeout, poll,
                                   clock, sleep)
        if image is None:
            raise CopyFailed('edge image %s disappeared during its copy into '
                             '%s' % (image_id, target))
        if not ended:
            raise CopyTimeout('edge image %s: the copy into %s did not end '
                              'within %d s; it may still be running'
                              % (image_id, target, timeout))
        if copy_state(image, target) != HELD:
            message = task_message(image_id) if task_message else ''
            raise CopyFailed('edge image %s: the copy into %s failed%s'
                             % (image_id, target,
                                ': %s' % message if message else ''))
        return 'copied', image


def _check(image, central, backend, target, only_imports, copies):
    """Raise CopyRefused (NotAnImport) when edge *image* must not be copied
    (see copy_image).
    """
    why = refusal(image, central, backend, target)
    if why:
        raise CopyRefused(why)
    if only_imports:
        not_import = record_rules.why_not_an_import(
            image, [loc['url'] for loc in image.get('locations') or ()],
            locations.location_url(backend, image['id']), central,
            copies=copies)
        if not_import:
            raise NotAnImport(not_import)


def _until_idle(edge, image_id, target, timeout, poll, clock, sleep):
    """Look at edge image *image_id* until no import holds it, up to
    *timeout* seconds.

    :returns: (the edge record then or None when it went away, whether the
        import ended)
    """
    deadline = clock() + timeout
    while True:
        image = edge.image(image_id)
        if image is None:
            return None, True
        state = copy_state(image, target)
        if state != COPYING:
            if state == HELD:
                LOG.info('edge image %s is now held in store %s', image_id,
                         target)
            return image, True
        if clock() >= deadline:
            return image, False
        sleep(poll)


class AutoCopy:
    """``remote_glance_copy_to_store``: after a complete read of a central
    image through this backend, copy the edge image under central's ID into
    the target store, then release the cache entry.

    Only the edge image whose ID is central's (the operator's
    ``glance-remote import``, an on-demand import) is copied: the copy runs
    as admin, outside every quota, and Glance never gives one ID to two
    images, so there is at most one automatic copy per central image and
    store, however many users link it. A link under an ID of its own (a
    user's image that names central's) is never copied automatically: one
    user's N links would otherwise cost N full copies in the store. An
    admin can still copy one (copy-image, ``glance-remote prefetch
    --store``); until then the cache entry stays, since the link reads
    through it.

    Work runs in one background thread per process (started lazily, again
    after a fork), one central image at a time; a central image queued or
    being handled is not queued again. Glance's import lock keeps two
    workers from copying the same edge image.

    :param backend: the remote-glance backend name
    :param target: the store to copy into
    :param cache: the backend's cache.Cache, or None
    :param central_record: callable(central image ID) -> central's record
        (a dict): the one kept with the cache when there is one
    :param edge: the edge's database and tasks (glance_edge.GlanceEdge by
        default)
    :param release: release the cache entry once every user holds a copy
    """

    def __init__(self, backend, target, cache, central_record, edge=None,
                 release=True, timeout=COPY_TIMEOUT, poll=POLL_INTERVAL,
                 clock=time.monotonic, sleep=time.sleep, copies=None):
        self.backend = backend
        # The properties an import copies (record_rules.CopyRules.copies):
        # an edge image under central's ID with others is not an import.
        self._copies = copies
        self.target = target
        self.cache = cache
        self._central_record = central_record
        self._edge = edge
        self.release = release
        self.timeout = timeout
        self.poll = poll
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._pending = set()
        self._queue = None
        self._pid = None

    @property
    def edge(self):
        if self._edge is None:
            self._edge = glance_edge.GlanceEdge()
        return self._edge

    def location(self, central_id):
        return locations.location_url(self.backend, central_id)

    # -- the hook in the read path -----------------------------------------

    def watch(self, data, central_id, length):
        """Wrap *data*, a whole-image stream of *length* bytes handed to
        Glance: once it yielded every byte (for a cached read, the last byte
        comes only after the fill verified the image), queue the copy.
        Cost: one comparison per chunk.
        """
        def counted():
            sent = 0
            for chunk in data:
                sent += len(chunk)
                yield chunk
            if sent == length:
                self.queue(central_id)
        close = getattr(data, 'close', None)
        return streams.Chunks(counted(), *((close,) if close else ()),
                              name='image %s' % central_id)

    def queue(self, central_id):
        """Queue the copies of *central_id* unless already queued; never
        raises.
        """
        try:
            with self._lock:
                if os.getpid() != self._pid:
                    # A forked worker inherits no thread: start its own.
                    self._pid = os.getpid()
                    self._pending = set()
                    self._queue = queue.Queue()
                    threading.Thread(target=self._run, args=(self._queue,),
                                     name='remote-glance-copy',
                                     daemon=True).start()
                if central_id in self._pending:
                    return
                self._pending.add(central_id)
                self._queue.put(central_id)
        except Exception:
            LOG.exception('copy into %s: image %s not queued', self.target,
                          central_id)

    def _run(self, work):
        while True:
            central_id = work.get()
            try:
                self.process(central_id)
            except Exception:
                LOG.exception('copy of central image %s into %s failed',
                              central_id, self.target)
            finally:
                with self._lock:
                    self._pending.discard(central_id)

    # -- one central image ---------------------------------------------------

    def process(self, central_id):
        """Copy the edge image under *central_id* into the target
        (copy_image: only an import, a failed copy not retried), wait for
        the copy, release the cache entry when no user lacks a copy.

        :returns: {edge image ID: 'held' (it was there), 'copied', 'failed',
            'copying' (still running when the wait ended), 'refused: <why>',
            NOT_AN_IMPORT or NOT_COPIED_LINK} and, under key None, the
            release result ('evicted', 'absent', 'pinned', 'busy', 'kept',
            or None when not asked to release)
        """
        location = self.location(central_id)
        results = {}
        for image in self.edge.users(location):
            if image['id'] != central_id:
                results[image['id']] = NOT_COPIED_LINK
                continue
            result = self._copy(image, central_id)
            if result is not None:
                results[central_id] = result
        links = [key for key, result in results.items()
                 if result == NOT_COPIED_LINK]
        if links:
            LOG.info('copy into %s: %d edge image(s) link central image %s '
                     'under an ID of their own (%s): not copied '
                     'automatically, only the edge image %s is',
                     self.target, len(links), central_id,
                     ', '.join(sorted(links)[:5]) +
                     (', ...' if len(links) > 5 else ''), central_id)
        results[None] = self._release(central_id, location)
        return results

    def _copy(self, image, central_id):
        """copy_image for the edge image under *central_id*: its result,
        what its refusal or failure means here (logged), or None when
        another import held the image in every round (looked at again on
        the next complete read).
        """
        try:
            return copy_image(
                self.edge, image, self.target, self.backend,
                lambda: self._central_record(central_id), self.timeout,
                retry_failed=False, only_imports=True, copies=self._copies,
                poll=self.poll, clock=self._clock, sleep=self._sleep)[0]
        except NotAnImport as e:
            LOG.warning('not copying edge image %s into %s: it has central '
                        "image %s's ID but is not its import: %s",
                        image['id'], self.target, central_id, e.why)
            return NOT_AN_IMPORT
        except CopyRefused as e:
            LOG.warning('not copying into %s: %s', self.target, e.why)
            return 'refused: %s' % e.why
        except CopyTimeout:
            LOG.warning('imports of %s still running after %d s',
                        image['id'], self.timeout)
            return COPYING
        except CopyFailed:
            LOG.error('the copy of edge image %s into store %s failed; see '
                      'its import task', image['id'], self.target)
            return 'failed'
        except exceptions.ImportLocked:
            return None

    def _release(self, central_id, location):
        if not self.release or self.cache is None:
            return None
        lacking = lacking_copy(self.edge.users(location), location,
                               self.target)
        if lacking:
            LOG.info('cache: keeping image %s: edge images %s have no copy '
                     'in store %s', central_id, ', '.join(lacking),
                     self.target)
            return 'kept'
        try:
            result = release_cache(self.cache, central_id,
                                   sleep=self._sleep)
        except exceptions.CacheError as e:
            LOG.warning('cache: image %s not released: %s', central_id, e)
            return 'kept'
        if result != 'absent':
            LOG.info('cache: image %s released, store %s holds it: %s',
                     central_id, self.target, result)
        return result


def auto_copy_from_conf(conf, backend, cache, central_record):
    """The AutoCopy of *backend*, or None when remote_glance_copy_to_store
    is unset.

    :raises CopyError: the target is not another, non-remote-glance
        backend of enabled_backends
    """
    group = conf[backend]
    target = group.remote_glance_copy_to_store
    if not target:
        return None
    try:
        enabled = conf.enabled_backends or {}
    except Exception:
        # Not a multi-store glance-api configuration (unit tests).
        enabled = {}
    kind = enabled.get(target)
    if kind is None:
        raise CopyError('remote_glance_copy_to_store: %r is not a backend '
                        'of enabled_backends' % target)
    if target == backend or kind == 'remote-glance':
        raise CopyError('remote_glance_copy_to_store: %r is a remote-glance '
                        'backend; name a store of this edge (e.g. an rbd '
                        'backend)' % target)
    if cache is None:
        LOG.warning('remote-glance backend %s copies images into %s without '
                    'a cache: each copy reads central', backend, target)
    return AutoCopy(backend, target, cache, central_record,
                    release=group.remote_glance_copy_release_cache,
                    copies=record_rules.CopyRules.from_conf(
                        conf, backend).copies)
