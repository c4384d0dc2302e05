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

"""WAN protection: how many images an edge reads from central at once, and
how fast.

An edge site's link to central is usually its narrowest: a burst of first
boots of different images, or a prefetch run, must not fill it. Two limits
apply to every read of image data from central (a fill of the cache, a read
that passes the cache by, a range):

* ``remote_glance_max_fills`` reads at once. Each read takes a slot first:
  a lock ``remote-glance.<backend>.wan-slot-<k>`` of the site's coordinator
  when the site is coordinated (the cap is the site's), else a ``flock`` on
  ``locks/wan-slot-<k>`` in the node's cache directory (the node's cap,
  shared by its glance-api workers and the CLI). When the coordinator
  fails, each node falls back to its own slots: the site may then read up
  to that many images per node. A read that finds no free slot waits, up to
  ``remote_glance_fill_slot_wait`` seconds, then fails as central being
  unavailable (503): the client may retry, nothing was written.
* ``remote_glance_max_bandwidth`` bytes per second in all: each slot reads
  at most this divided by the number of slots (one slot: the whole of it),
  paced after each chunk. A share a slot leaves unused is not given to the
  others: simple, and the sum never exceeds the cap.

A slot is held at central's pace, never at a client's: a stream whose
reader does not ask for its next chunk within SLOT_IDLE seconds (a client
that stopped reading a range or a pass-through) gives its slot back at
once; when the reader asks again, the stream takes a slot again, waiting as
a new read would (``remote_glance_fill_slot_wait``), and ends short with an
IOError when none comes free (the client retries with a Range). The cap
holds at every moment, and one slow client does not hold the site's WAN.

The site's slots are bounded in time: the node that holds one says so in
its signed member entry (coordination.py) and renews that claim every
SLOT_RENEW seconds while it reads. A slot held for longer than
SLOT_UNCLAIMED_GRACE seconds by no node of the site (someone writing to
the coordinator), or whose claim was not renewed for SLOT_CLAIM_MAX_AGE
seconds, is broken by the next read that finds every slot taken (logged).

Reads from the site's peers are not limited: they cross the site's own
network, not the WAN.
"""

import collections
import fcntl
import logging
import os
import random
import threading
import time

from glance_store_remote import coordination
from glance_store_remote import exceptions
from glance_store_remote import streams

LOG = logging.getLogger(__name__)

# Seconds between two looks for a free slot: the node's (a flock) and the
# site's (each look makes the coordinator grant a lease).
POLL_INTERVAL = 0.2
SITE_POLL_INTERVAL = 0.5
# A slot's share of the bandwidth must bring a chunk within this many
# seconds: a fill that shows no progress for longer looks stalled to the
# readers that follow it (peers give up after 30 s).
MAX_CHUNK_SECONDS = 10
# A pacing that fell this many seconds behind (a slow central) starts
# again from now rather than catch up in a burst.
MAX_LAG = 1.0
SLOT_MODE = 0o640
# Seconds a stream's reader may leave it unread before its slot is given
# back, and how often that is looked at.
SLOT_IDLE = 1.0
IDLE_CHECK = 0.2
# A site slot's claim: renewed every SLOT_RENEW seconds while its stream
# reads; a slot no node claims for SLOT_UNCLAIMED_GRACE seconds, or whose
# claim is older than SLOT_CLAIM_MAX_AGE, is broken. Its holder is looked
# up at most every SLOT_CHECK_INTERVAL seconds per slot and process.
SLOT_RENEW = 20
SLOT_UNCLAIMED_GRACE = 15
SLOT_CLAIM_MAX_AGE = 120
SLOT_CHECK_INTERVAL = 5


# The idle watch's own clock (tests replace ``time`` for the pacing).
_monotonic = time.monotonic
_sleep = time.sleep


class Slots:
    """At most *count* reads from central at once.

    :param backend: the backend group name
    :param count: the number of slots (1 or more)
    :param lock_dir: the folder of this node's slot files
    :param site: a coordination.Site, whose locks are the slots while its
        coordinator works; None: this node's slots only

    A read that already holds a slot and starts another (a range read
    warming the cache) asks with no wait: it takes a slot only if one is
    free, never waiting for a second while holding the first. The
    site's slots are polled by one thread per process at a time (each try
    costs the coordinator a lease), trying one slot at random each time;
    the others of the process queue behind it, first come, first served.
    """

    def __init__(self, backend, count, lock_dir, site=None,
                 clock=time.monotonic):
        self.backend = backend
        self.count = count
        self.lock_dir = lock_dir
        self.site = site
        self._clock = clock
        self._queue = collections.deque()       # waiting threads, in order
        self._cond = threading.Condition()
        self._warned = False
        # Site slots found taken: {index: (first seen without a live
        # claim or None, last looked at)}.
        self._suspects = {}

    def acquire(self, timeout, on_wait=None):
        """Wait up to *timeout* seconds for a free slot, calling *on_wait()*
        after each look (a fill shows it is alive).

        :returns: the slot (call it to free it; renew() keeps a site
            claim alive), or None (none was free)
        """
        with self._cond:
            ticket = object()
            self._queue.append(ticket)
        deadline = self._clock() + timeout
        try:
            while True:
                with self._cond:
                    # Only the first in line looks (the site's slots cost
                    # a lease per try); the others wait their turn.
                    first = self._queue[0] is ticket
                    left = deadline - self._clock()
                    if not first and left > 0:
                        self._cond.wait(min(POLL_INTERVAL, left))
                        first = self._queue[0] is ticket
                release = self._try() if first else None
                if release is not None:
                    return release
                if self._clock() >= deadline:
                    return None
                if on_wait is not None:
                    on_wait()
                if first:
                    time.sleep(SITE_POLL_INTERVAL if self._site_up()
                               else POLL_INTERVAL)
        finally:
            with self._cond:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def _site_up(self):
        return self.site is not None and self.site.available

    def _try(self):
        """A free slot's release, or None. The site's slots while its
        coordinator works (one at random; all taken or not: None, the
        node's own must not be used), else the node's.
        """
        if self.site is not None:
            index = random.randrange(self.count)
            try:
                lock = self.site.try_lock('wan-slot-%d' % index, claim=True)
                if lock is not None:
                    self._suspects.pop(index, None)
                    return _SiteSlot(lock)
                self._check_holder(index)
                return None
            except coordination.Unavailable:
                pass
        for index in range(self.count):
            path = os.path.join(self.lock_dir, 'wan-slot-%d' % index)
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT, SLOT_MODE)
            except OSError as e:
                return self._unusable(e)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            except OSError as e:
                os.close(fd)
                return self._unusable(e)
            return _NodeSlot(lambda fd=fd: os.close(fd))
        return None

    def _check_holder(self, index):
        """Break site slot *index* when no node of the site has claimed it
        (or renewed its claim) for too long: whoever can write to the
        coordinator must not hold the site's WAN.

        :raises coordination.Unavailable
        """
        now = self._clock()
        first, looked = self._suspects.get(index, (None, None))
        if looked is not None and now - looked < SLOT_CHECK_INTERVAL:
            return
        name = 'wan-slot-%d' % index
        holder = self.site.holder(name)
        if holder is not None and holder['age'] <= SLOT_CLAIM_MAX_AGE:
            self._suspects[index] = (None, now)
            return
        if first is None:
            self._suspects[index] = (now, now)
            return
        self._suspects[index] = (first, now)
        if now - first < SLOT_UNCLAIMED_GRACE:
            return
        if self.site.break_lock(name):
            LOG.warning('remote-glance backend %s: the site\'s WAN slot %d '
                        'was held for %.0f s or more by %s: broken',
                        self.backend, index, now - first,
                        'no node of the site' if holder is None else
                        'a node that stopped renewing its claim (%s, '
                        'pid %s)' % (holder['host'], holder['pid']))
        self._suspects.pop(index, None)

    def _unusable(self, error):
        """The node's slot files cannot be used: the read goes on without
        a slot (the cap never fails a read central can serve); said once.
        """
        if not self._warned:
            self._warned = True
            LOG.error('remote-glance backend %s: the slot files in %s '
                      'cannot be used (%s): reads from central are not '
                      'capped until that is fixed', self.backend,
                      self.lock_dir, error)
        return _NodeSlot(lambda: None)


class Gate:
    """Central's image data as the cache and the site read it: open_data()
    behind the slots and the pacing (both optional: without either, the
    gate only passes central's streams on).

    :param central: the upstream.Central
    :param slots: a Slots, or None (no cap on reads at once)
    :param bandwidth: bytes per second in all, or 0 (no cap)
    :param wait: seconds a read waits for a slot
    """

    def __init__(self, central, slots=None, bandwidth=0, wait=0):
        self._central = central
        self.backend = central.backend
        self._slots = slots
        self._rate = bandwidth / (slots.count if slots else 1)
        self._wait = wait

    def open_data(self, record, offset=0, length=None, wait=True, **kwargs):
        """As upstream.Central.open_data; first takes a slot, which the
        returned stream holds while its reader reads (see the module
        docstring) and frees when closed.

        :param wait: wait for a slot (remote_glance_fill_slot_wait); False:
            take one only if one is free now
        :raises UpstreamUnavailable: no slot came free in time
        """
        slot = None
        if self._slots is not None:
            on_skip = kwargs.get('on_skip')
            slot = self._slots.acquire(
                self._wait if wait else 0,
                on_wait=on_skip and (lambda: on_skip(0)))
            if slot is None:
                raise self._busy(record)
        try:
            data = self._central.open_data(record, offset, length, **kwargs)
        except BaseException:
            if slot is not None:
                slot()
            raise
        if data is None:
            if slot is not None:
                slot()
            return None
        chunks = self._paced(data) if self._rate else data
        if slot is None:
            return streams.Chunks(chunks, data.close,
                                  name='image %s from central' % record.id)
        held = _SlotHolder(self, chunks, slot, record.id)
        return streams.Chunks(held, data.close, held.close,
                              name='image %s from central' % record.id)

    def _busy(self, record):
        return exceptions.UpstreamBusy(
            self._central.backend, 'image %s cannot be read now: this edge '
            'already reads %d images from central at once; try again later'
            % (record.id, self._slots.count))

    def _paced(self, data):
        """*data*'s chunks at no more than the slot's rate."""
        rate = self._rate
        start = time.monotonic()
        done = 0
        for chunk in data:
            yield chunk
            done += len(chunk)
            now = time.monotonic()
            ahead = start + done / rate - now
            if ahead > 0:
                time.sleep(ahead)
            elif ahead < -MAX_LAG:
                start, done = now, 0


class _NodeSlot:
    """A slot of this node: calling it frees it; it has no claim to
    renew (the flock lives as long as its descriptor).
    """

    def __init__(self, free):
        self._free = free

    def __call__(self):
        self._free()

    def renew(self):
        pass


class _SiteSlot:
    """A site slot: calling it frees it; renew() renews its claim."""

    def __init__(self, lock):
        self._lock = lock

    def __call__(self):
        self._lock.release()

    def renew(self):
        self._lock.renew()


class _SlotHolder:
    """The chunks of one read from central and its slot, held only while
    its reader reads: left unread for SLOT_IDLE seconds, the slot is given
    back (by the process's _IdleWatch); the next chunk asked for takes a
    slot again, waiting as a new read would, or ends the stream with an
    UpstreamStreamError.
    """

    def __init__(self, gate, chunks, slot, image_id):
        self._gate = gate
        self._chunks = chunks
        self._slot = slot
        self.image_id = image_id
        self._lock = threading.Lock()
        self._idle_since = None
        self._renewed = _monotonic()
        self._closed = False
        _WATCH.add(self)

    def __iter__(self):
        return self

    def __next__(self):
        with self._lock:
            self._idle_since = None
            slot = self._slot
        if slot is None:
            slot = self._gate._slots.acquire(self._gate._wait)
            if slot is None:
                raise exceptions.UpstreamStreamError(
                    self._gate._central.backend, 'image %s: the read from '
                    'central was left unread, and no WAN slot came free '
                    'when its reader came back (%d reads from central at '
                    'once)' % (self.image_id, self._gate._slots.count))
            with self._lock:
                self._slot = slot
        chunk = next(self._chunks)
        now = _monotonic()
        if now - self._renewed >= SLOT_RENEW:
            self._renewed = now
            slot.renew()
        with self._lock:
            self._idle_since = _monotonic()
        return chunk

    def give_back_if_idle(self, now):
        """Free the slot when the reader left the stream unread for
        SLOT_IDLE seconds (the watch's call).
        """
        with self._lock:
            if (self._slot is None or self._idle_since is None or
                    now - self._idle_since < SLOT_IDLE):
                return
            slot, self._slot = self._slot, None
        LOG.info('image %s from central: its reader is idle; its WAN slot '
                 'is given back (taken again when it reads on)',
                 self.image_id)
        slot()

    def close(self):
        _WATCH.discard(self)
        with self._lock:
            slot, self._slot = self._slot, None
            self._closed = True
        if slot is not None:
            slot()


class _IdleWatch:
    """One thread per process that gives back the slots of streams left
    unread (started at the first stream, again in a forked child).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._holders = set()
        self._pid = None

    def add(self, holder):
        with self._lock:
            if self._pid != os.getpid():
                self._pid = os.getpid()
                self._holders = set()
                threading.Thread(target=self._run, name='wan-idle-watch',
                                 daemon=True).start()
            self._holders.add(holder)

    def discard(self, holder):
        with self._lock:
            self._holders.discard(holder)

    def _run(self):
        pid = os.getpid()
        while self._pid == pid:
            _sleep(IDLE_CHECK)
            with self._lock:
                holders = list(self._holders)
            now = _monotonic()
            for holder in holders:
                try:
                    holder.give_back_if_idle(now)
                except Exception:
                    LOG.exception('giving back an idle WAN slot')


_WATCH = _IdleWatch()


def gate_from_conf(central, group, lock_dir, site=None):
    """The Gate of a backend group's options (one that only passes
    central's streams on when neither limit is set).

    :param lock_dir: the node's slot folder (the cache's locks folder), or
        None without a cache
    :raises ValueError: remote_glance_max_fills without a cache directory
        (where the node keeps its slots, also the fall-back of a site);
        a bandwidth share too small for remote_glance_chunk_size
    """
    count = group.remote_glance_max_fills
    bandwidth = group.remote_glance_max_bandwidth
    if not count and not bandwidth:
        return Gate(central)
    rate = bandwidth / (count or 1)
    if bandwidth and group.remote_glance_chunk_size / rate > (
            MAX_CHUNK_SECONDS):
        raise ValueError(
            'remote_glance_max_bandwidth %d over %d slot(s) gives each read '
            '%d bytes/s: a chunk of remote_glance_chunk_size (%d bytes) '
            'would take more than %d s, and the readers that follow a fill '
            'would take it for stalled; lower remote_glance_chunk_size or '
            'remote_glance_max_fills' % (
                bandwidth, count or 1, rate, group.remote_glance_chunk_size,
                MAX_CHUNK_SECONDS))
    slots = None
    if count:
        if lock_dir is None:
            raise ValueError('remote_glance_max_fills needs '
                             'remote_glance_cache_dir (where the node keeps '
                             'its slots)')
        slots = Slots(central.backend, count, lock_dir, site)
    LOG.info('remote-glance backend %s: at most %s reads from central at '
             'once%s, %s', central.backend, count or 'unlimited',
             ' per site' if site is not None and count else '',
             '%d bytes/s in all' % bandwidth if bandwidth
             else 'no bandwidth cap')
    return Gate(central, slots, bandwidth, group.remote_glance_fill_slot_wait)
