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

"""Following a fill: reading an image's file while a fill writes it.

Two kinds of reader follow a fill, and both are here:

* a client's reader (Follower, for readthrough.py): streams the file as it
  grows, and keeps a wrong image from looking complete. It releases its
  last HOLD_BACK bytes, and a range its first byte, only on the verdict of
  the fill of the very file it reads (recorded in the fill's lock, or held
  by the fill of this process writing that file). It takes over a fill
  that stopped without a verdict (MAX_TAKEOVERS), gives up on a fill that
  makes no progress (the stall timeout), and when the cache fails under
  it, reads the rest past the cache, verifying what it already sent with
  it. Every stream it hands out is a delivery.Delivery (FOLLOWING).
* a peer's answer (follow_unverified, for the peer server): the bytes of
  a partial file as they land, until the fill writing it stops; nothing is
  held back there because the asking node verifies the whole image against
  central's record itself.

The file, its identity and its verdict come from the cache's fill-file API
(cache.Cache.open_fill_file, is_current_fill_file, fill_outcome); the fill
itself from fill.Filler.
"""

import hashlib
import os
import time

from glance_store_remote import cache as cache_module
from glance_store_remote import delivery
from glance_store_remote import exceptions
from glance_store_remote import fill as fill_module
from glance_store_remote import upstream

# Seconds between looks at a fill run by another process.
POLL_INTERVAL = 0.005
# Fills a reader may take over when the one it followed stopped.
MAX_TAKEOVERS = 1
# Seconds a peer's answer waits for a fill it streams that makes no
# progress, and between its looks at that fill.
PEER_STALL_TIMEOUT = 30
PEER_POLL_INTERVAL = 0.01


class Follower:
    """A client's reader of the image's fill; see the module docstring.

    :param filler: the fill.Filler of the backend (the cache, the fills of
        this process, the cache's Backoff)
    :param record: central's upstream.ImageRecord
    :param expected: its cache.Expected
    :param offset, length: what the client asked for
    :param chunk_size: bytes read at a time
    :param stall_timeout: seconds it waits for a fill that makes no
        progress before giving up
    :param uncached: callable(record, offset, length) -> a Delivery of
        those bytes read past the cache (a peer that holds the image,
        else central), raising IOErrors only
    :param on_mismatch: callable() told once of bytes that failed
        verification (a counter)
    """

    def __init__(self, filler, record, expected, offset, length, chunk_size,
                 stall_timeout, uncached, on_mismatch):
        self.filler = filler
        self.cache = filler.cache
        self.record = record
        self.expected = expected
        self.offset = offset
        self.end = offset + length
        self.chunk_size = chunk_size
        self.stall_timeout = stall_timeout
        self._uncached = uncached
        self._on_mismatch = on_mismatch
        # The file it reads (None until it opens one; _follow closes it)
        # and where it stands.
        self.fd = None
        self.pos = offset

    def delivery(self):
        """The Delivery of this reader, which keeps the entry from eviction
        until its stream ends (a shared read lock, as a hit holds): once the
        fill committed, a cache under pressure would otherwise evict the
        entry under a reader still at its held-back byte, whose rest would
        then have to come from central.
        """
        return delivery.following(self._follow(), self.record.id,
                                  *self._keep_from_eviction())

    def _keep_from_eviction(self):
        """Release callables of a shared read lock on the image, or none
        when the lock cannot be had (an eviction of the image holds it this
        instant, or the cache failed): the reader goes on unprotected, as
        before a follower held one.
        """
        try:
            lock = self.cache.lock(self.record.id, 'read')
        except exceptions.CacheError:
            return ()
        if lock.try_lock(shared=True):
            return (lock.close,)
        lock.close()
        return ()

    def _follow(self):
        """Stream the image from the fill's file as it grows.

        The rule that keeps a wrong image from looking complete: this reader
        releases its last HOLD_BACK bytes only on a verified image, that is
        when the fill of the very file it reads recorded VERIFIED or
        COMMITTED, or a fill of this process writing that file (a takeover
        of its own included) verified, or, when the cache failed under it,
        it verified central's rest together with the bytes it had sent
        (_rest_uncached). Any other ending after its first byte raises
        an IOError: the client sees a short body.

        If the cache breaks under the reader (its directory removed, its
        disk gone) before its first byte, the image comes from central
        uncached, as any image the cache cannot take.
        """
        try:
            try:
                yield from self._follow_fill()
            except exceptions.CacheIntegrityError:
                raise
            except exceptions.CacheError as e:
                self.filler.backoff.failed(e)
                yield from self._rest_uncached()
        finally:
            if self.fd is not None:
                os.close(self.fd)

    def _follow_fill(self):
        """Stream the image from the fill's file as it grows (see _follow);
        the file it opens is left in self.fd for _follow to close.
        """
        expected, end = self.expected, self.end
        image_id = expected.image_id
        pos = self.pos
        fd = file = None
        verified = False
        takeovers = 0
        available = pos
        last_progress = time.monotonic()
        # The file's (size, mtime) when last looked at: a change is progress
        # even when this reader gets no new byte (a fill that re-reads from
        # byte 0 what it holds already touches the file, see fill.py).
        seen = None
        # Until the verdict a whole-image reader stops before the last
        # byte, and a range before its first (delivery.py: no range from
        # bytes nobody verified).
        unverified_limit = (min(end, expected.size - delivery.HOLD_BACK)
                            if (self.offset, end) == (0, expected.size)
                            else self.offset)
        while pos < end:
            limit = end if verified else unverified_limit
            if fd is None:
                fd = self.fd = self.cache.open_fill_file(image_id)
                if fd is None:
                    if self.filler.running(image_id):
                        # The filler holds the lock but has not created its
                        # file yet.
                        self._check_stall(last_progress)
                        time.sleep(POLL_INTERVAL)
                        continue
                    yield from self._after_discard(
                        self.cache.fill_outcome(image_id))
                    return
                stat = os.fstat(fd)
                file = cache_module.file_identity(stat)
                available = stat.st_size
            if available <= pos:
                # Ask the file how far the fill got only when this reader
                # has caught up with what it last saw.
                stat = os.fstat(fd)
                available = stat.st_size
                if seen != (stat.st_size, stat.st_mtime_ns):
                    seen = (stat.st_size, stat.st_mtime_ns)
                    last_progress = time.monotonic()
            available = min(available, limit)
            if available > pos:
                chunk = os.pread(fd, min(self.chunk_size, available - pos),
                                 pos)
                if not chunk:
                    # A resuming fill cut the file back: look again.
                    available = pos
                    continue
                pos += len(chunk)
                self.pos = pos
                last_progress = time.monotonic()
                yield chunk
                continue
            # Caught up with the fill: find out what it is doing.
            fill = self.filler.get(image_id)
            if fill is not None and not fill.done and fill.file == file:
                if fill.verified:
                    verified = True
                    continue
                with fill.cond:
                    # Wait for bytes, or, at the held-back byte, for the
                    # verdict (the fill notifies both).
                    if ((fill.written <= pos or pos >= limit) and
                            not fill.verified and not fill.done):
                        fill.cond.wait(0.5)
                self._check_stall(last_progress)
                continue
            stat = os.fstat(fd)
            outcome = self.cache.fill_outcome(image_id)
            if (outcome in (cache_module.VERIFIED, cache_module.COMMITTED) and
                    stat.st_size >= expected.size and
                    self.cache.is_current_fill_file(image_id, stat)):
                verified = True
                continue
            if stat.st_nlink == 0 or outcome in (
                    cache_module.WRITE_FAILED, cache_module.VERIFY_FAILED):
                yield from self._after_discard(outcome)
                return
            lock = self.cache.try_fill_lock(image_id)
            if lock is None:
                self._check_stall(last_progress)
                time.sleep(POLL_INTERVAL)
                continue
            # The fill stopped without a verdict: its worker died or
            # central failed. Take it over (resume) once.
            if takeovers >= MAX_TAKEOVERS:
                lock.unlock()
                lock.close()
                raise exceptions.UpstreamStreamError(
                    self.filler.central.backend, 'image %s: central failed '
                    'while the cache was filling it' % image_id)
            takeovers += 1
            try:
                status = self.filler.start_holding(lock, expected,
                                                   self.record)
            except exceptions.UpstreamError as e:
                raise upstream.stream_error(
                    self.filler.central.backend, self.record, e) from e
            if status == fill_module.NO_ROOM:
                yield from self._rest_uncached()
                return
            last_progress = time.monotonic()

    def _after_discard(self, outcome):
        """The fill this reader followed ended without verifying its file,
        or the file is gone.

        A failed verification is the client's error to see. Otherwise the
        disk refused the bytes, or the entry was committed and evicted
        before this reader opened it, or its fill was abandoned: the rest
        comes from central (_rest_uncached).
        """
        if outcome == cache_module.VERIFY_FAILED:
            raise exceptions.CacheIntegrityError(
                'image %s: the data central sent does not match its record; '
                'nothing was cached' % self.record.id)
        return self._rest_uncached()

    def _rest_uncached(self):
        """The rest of a read past the cache (a peer that holds the image,
        else central), when the cache failed under it or lost the file it
        read.

        Before the first byte this is a pass-through, as for any image the
        cache cannot take, and so is a range (a range follower sends no
        byte before its fill's verdict). After the first byte of a read up
        to the last, the rest cannot vouch for the cached bytes already
        sent (they may come from a fill that was about to fail
        verification): the reader verifies by itself (_verified_rest).
        """
        if self.pos == self.offset or self.end < self.expected.size:
            return self._uncached(self.record, self.pos, self.end - self.pos)
        return self._verified_rest()

    def _verified_rest(self):
        """Hash the file's bytes up to where the reader stands (for a
        range, the ones before it too) and central's rest as it passes;
        release the last HOLD_BACK bytes only if the whole matches central's
        size and hash, else raise CacheIntegrityError.

        Cost: one hash of the image on this thread and a second read of
        what was sent, on this failure path only.
        """
        hasher = hashlib.new(self.expected.algo)
        pos = 0
        while pos < self.pos:
            block = os.pread(self.fd, min(self.chunk_size, self.pos - pos),
                             pos)
            if not block:
                raise exceptions.StreamError(
                    'image %s: its cache file shrank under the reader at '
                    'byte %d; the read ends short' % (self.record.id, pos))
            hasher.update(block)
            pos += len(block)
        data = self._uncached(self.record, pos, self.end - pos)
        yield from delivery.hold_back_until_verified(
            data, self.expected, hasher, pos, on_mismatch=self._on_mismatch)

    def _check_stall(self, last_progress):
        if time.monotonic() - last_progress > self.stall_timeout:
            raise exceptions.UpstreamStreamError(
                self.filler.central.backend, 'image %s: the fill made no '
                'progress for %g s' % (self.record.id, self.stall_timeout))


# -- a peer's answer ---------------------------------------------------------


def fill_running(cache, image_id):
    """Whether a process of this node holds the image's fill lock; False
    when the cache cannot tell. Never raises.
    """
    try:
        return cache.fill_locked(image_id)
    except exceptions.CacheError:
        return False


def follow_unverified(cache, image_id, fd, pos, end, chunk_size, growing):
    """The bytes [pos, end) of an image's file open as *fd*; a *growing*
    (partial) file is followed until the fill writing it stops or makes no
    progress for PEER_STALL_TIMEOUT: then the stream ends short. Nothing is
    held back: this is for a peer's answer, whose reader verifies the whole
    image itself (the peer server signs no digest for a partial file).

    :returns: (as the generator's value) the position it ended at
    """
    last_progress = time.monotonic()
    while pos < end:
        available = os.fstat(fd).st_size
        if available > pos:
            chunk = os.pread(fd, min(chunk_size, available - pos, end - pos),
                             pos)
            if chunk:
                pos += len(chunk)
                last_progress = time.monotonic()
                yield chunk
                continue
        if not growing:
            break
        if not fill_running(cache, image_id):
            if os.fstat(fd).st_size > pos:
                continue
            break
        if time.monotonic() - last_progress > PEER_STALL_TIMEOUT:
            break
        time.sleep(PEER_POLL_INTERVAL)
    return pos
