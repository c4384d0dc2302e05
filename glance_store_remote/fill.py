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

"""A fill: one image written into the cache, verified, then committed.

A fill runs in a thread of its own, so it does not depend on the client
that started it. It holds the image's fill lock (exactly one fill per image
across the threads AND the worker processes of a node), writes the partial
file the cache opened for it (cache.Cache.begin_fill), and a second thread
hashes that file as it grows, keeping sha512 off the network loop. The
entry is committed only when central's size and hash match; the verdict is
recorded in the lock file first, where followers in every process read it
(following.py), and in the Fill, where followers in this process wait
for it.

A resumed fill keeps the partial file's prefix and reads the rest: with a
Range request, or, from a central that serves no ranges, from byte 0,
dropping what it holds already while it touches its file so that followers
see it alive (TOUCH_INTERVAL).

What this module owns: the running fill's state (Fill), the per-process
registry of running fills (Filler), the writer and hasher threads, the
verdict and the end of a fill (its bytes and its duration counted once:
'verified' when it committed its entry, else 'failed'), and the bypass of
a cache that refused a write (Backoff). Where a read is served from is
readthrough.py's; reading a fill's growing file is following.py's.
"""

import functools
import hashlib
import logging
import os
import threading
import time
import typing

from glance_store_remote import cache as cache_module
from glance_store_remote import exceptions
from glance_store_remote import streams

LOG = logging.getLogger(__name__)

# How often a fill makes its prefix durable (fdatasync), in bytes.
CHECKPOINT_BYTES = 256 * 1024 * 1024
# Seconds the cache is bypassed after the disk refused a write.
CACHE_BACKOFF = 60
# Seconds between touches of a fill's file while it makes progress that
# does not grow the file (skipping a prefix, hashing): followers in every
# process take a change of its (size, mtime) as a sign of life.
TOUCH_INTERVAL = 1.0

# What starting a fill found (Filler.start).
STARTED, RUNNING, COMPLETE, NO_ROOM = 'started', 'running', 'complete', \
    'no-room'


class FillSource(typing.Protocol):
    """What a fill reads: central's stream (CentralSource) or the site's
    choice between a peer and central (site_source.SiteSource.open_fill).
    """

    #: bytes of it that came from a peer of the site
    bytes_from_peer: int

    def __iter__(self):
        ...

    def __next__(self):
        ...

    def close(self):
        """Release it (the response, the site's lock); idempotent."""

    def verify_failed(self):
        """Its bytes did not match central's record."""


class CentralSource:
    """A FillSource of central's bytes: no peer to count or to blame."""

    bytes_from_peer = 0

    def __init__(self, data):
        self._data = data

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._data)

    def close(self):
        self._data.close()

    def verify_failed(self):
        pass


class Backoff:
    """The cache bypassed for CACHE_BACKOFF seconds after it refused a
    write: reads stream uncached meanwhile, and the error is logged once
    per episode.
    """

    def __init__(self, root):
        self.root = root
        self._until = 0.0

    def active(self):
        """Whether the cache is bypassed now. Cost: one clock read."""
        return time.monotonic() < self._until

    def failed(self, error):
        """The cache refused a write (*error*): bypass it for a while; say
        so once per episode.
        """
        first = time.monotonic() >= self._until
        self._until = time.monotonic() + CACHE_BACKOFF
        if first:
            LOG.error('cache %s refused a write; images stream from central '
                      'uncached for %d s: %s', self.root, CACHE_BACKOFF,
                      error)
        else:
            LOG.debug('cache still failing: %s', error)


class Fill:
    """A fill running in this process; followers here wait on ``cond``.

    ``file`` is the identity of the file it writes (cache.file_identity): a
    follower trusts its verdict only for that file.
    """

    def __init__(self, expected, record, lock, start, file, began):
        self.expected = expected
        self.record = record
        self.lock = lock
        self.start = start
        self.file = file
        # When it began in this process (Filler.clock): a resumed fill
        # counts its duration from its own start.
        self.began = began
        self.written = start
        self.resent = 0
        # The stream it reads (site_source._FillStream counts a peer's bytes).
        self.source = None
        self.touched_at = 0.0
        self.touch_failed = False
        self.fetch_done = False
        self.done = False
        self.digest = None
        self.verified = False
        self.thread = None
        self.cond = threading.Condition()

    def advance(self, written=None, fetch_done=False):
        with self.cond:
            if written is not None:
                self.written = written
            self.fetch_done = self.fetch_done or fetch_done
            self.cond.notify_all()

    def touch(self, fd):
        """Show followers in every process that the fill is alive though
        its file does not grow: change the file's mtime, at most every
        TOUCH_INTERVAL seconds (see following.py).
        """
        now = time.monotonic()
        if now - self.touched_at < TOUCH_INTERVAL:
            return
        self.touched_at = now
        try:
            os.utime(fd)
        except OSError as e:
            if not self.touch_failed:
                self.touch_failed = True
                LOG.debug('touching the fill of %s failed: %s',
                          self.expected.image_id, e)
        self.advance()


class Filler:
    """Starts and runs the fills of one backend's cache in this process,
    and knows which run.

    :param cache: a cache.Cache
    :param central: an upstream.Central (or the wan.Gate in front of it)
    :param chunk_size: bytes the hasher reads at a time
    :param backoff: the Backoff of this cache, shared with the read path
    :param site: a site_source.SiteSource when the node belongs to a
        coordinated site: where fills read from (open_source)
    :param clock: monotonic seconds, for the fills' durations
    """

    def __init__(self, cache, central, chunk_size, backoff, site=None,
                 clock=time.monotonic):
        self.cache = cache
        self.central = central
        self.chunk_size = chunk_size
        self.backoff = backoff
        self.site = site
        self.clock = clock
        self._fills = {}
        self._fills_lock = threading.Lock()

    # -- the registry ------------------------------------------------------

    def get(self, image_id):
        """The fill of *image_id* this process runs, or None."""
        return self._fills.get(image_id)

    def running(self, image_id):
        """Whether a fill of the image runs, in this process or another.

        :raises CacheError: the lock file cannot be created or opened
        """
        fill = self._fills.get(image_id)
        if fill is not None and not fill.done:
            return True
        return self.cache.fill_locked(image_id)

    def fills(self):
        """The fills this process runs now."""
        with self._fills_lock:
            return list(self._fills.values())

    def wait(self, timeout=None):
        """Wait until the fills this process runs have ended (committed or
        not); for short-lived processes such as the CLI.
        """
        for fill in self.fills():
            fill.thread.join(timeout)

    # -- starting ----------------------------------------------------------

    def start(self, expected, record, wait=True):
        """Start a fill of the image unless one runs already.

        :param record: central's upstream.ImageRecord
        :param wait: wait for a WAN slot (wan.Gate.open_data); False: take
            one only if free now
        :returns: STARTED, RUNNING, COMPLETE or NO_ROOM
        :raises UpstreamError: central cannot serve (nothing was started)
        :raises CacheError: the fill lock cannot be opened
        """
        lock = self.cache.try_fill_lock(expected.image_id)
        if lock is None:
            return RUNNING
        return self.start_holding(lock, expected, record, wait)

    def start_holding(self, lock, expected, record, wait=True):
        """Start a fill while holding its *lock* (a follower taking over a
        fill that stopped, or start); the fill thread releases it. Same
        parameters, returns and raises as start.
        """
        image_id = expected.image_id
        started = False
        try:
            if self.cache.holds_complete(image_id):
                return COMPLETE
            try:
                opened = self.cache.begin_fill(lock, expected, record.raw)
            except (OSError, exceptions.CacheError) as e:
                self.backoff.failed(e)
                return NO_ROOM
            if opened is None:
                return NO_ROOM
            fd, start = opened.fd, opened.start
            try:
                fill = Fill(expected, record, lock, start, opened.file,
                            self.clock())
                stream = CentralSource(streams.empty())
                if start < expected.size:
                    stream = self.open_source(
                        record, start, expected.size - start,
                        functools.partial(self._skipped, fill, fd), wait)
            except BaseException as e:
                os.close(fd)
                if isinstance(e, OSError) and not isinstance(
                        e, exceptions.RemoteGlanceError):
                    self.backoff.failed(e)
                    return NO_ROOM
                if not start:
                    # Nothing to resume: release the reservation.
                    self.cache.discard_partial(image_id)
                raise
            if start:
                self.cache.count(resumes=1)
                LOG.info('cache: resuming image %s at byte %d of %d',
                         image_id, start, expected.size)
            # The thread before the registry: wait() joins what it finds.
            fill.thread = threading.Thread(
                target=self._run, args=(fill, fd, stream),
                name='fill-%s' % image_id, daemon=True)
            with self._fills_lock:
                self._fills[image_id] = fill
            try:
                fill.thread.start()
            except RuntimeError as e:
                # No thread to run the fill (the process has none left):
                # end it here, the prefix kept; the read passes through.
                LOG.error('cache: fill of image %s not started: %s',
                          image_id, e)
                self._abandon(fill, fd, stream)
                return NO_ROOM
            started = True
            return STARTED
        finally:
            if not started:
                lock.unlock()
                lock.close()

    def open_source(self, record, offset, length, on_skip, wait):
        """The FillSource of the bytes a fill needs: central's stream or,
        in a coordinated site, the site's choice between central and a
        peer (site_source.SiteSource.open_fill).
        """
        if self.site is None:
            return CentralSource(self.central.open_data(
                record, offset, length, on_skip=on_skip, wait=wait))
        return self.site.open_fill(record, offset, length, on_skip=on_skip,
                                   wait=wait)

    def _skipped(self, fill, fd, count):
        """A fill resuming from a central without ranges dropped *count*
        bytes it holds already; it is alive all the same (Fill.touch).
        """
        fill.resent += count
        fill.touch(fd)

    def _abandon(self, fill, fd, stream):
        """Undo a fill registered but never started; the caller releases
        its lock.
        """
        with self._fills_lock:
            self._fills.pop(fill.expected.image_id, None)
        for step in (stream.close, functools.partial(os.close, fd)):
            try:
                step()
            except Exception:
                LOG.exception('cache: abandoning the fill of %s',
                              fill.expected.image_id)
        fill.done = True
        fill.advance()
        self._record_duration(fill, cache_module.WRITE_FAILED)

    def _record_duration(self, fill, outcome):
        """Count the fill's duration under 'verified' when it committed
        its entry, else 'failed' (the cache got no verified entry from it).
        """
        self.cache.record_fill(
            'verified' if outcome == cache_module.COMMITTED else 'failed',
            max(0.0, self.clock() - fill.began))

    # -- running (the fill's own thread) -----------------------------------

    def _run(self, fill, fd, stream):
        expected = fill.expected
        image_id = expected.image_id
        fill.source = stream
        hasher = threading.Thread(target=self._hash, args=(fill, fd),
                                  name='hash-%s' % image_id, daemon=True)
        hasher.start()
        outcome = cache_module.FILLING
        try:
            try:
                self._fetch(fill, fd, stream)
            except exceptions.UpstreamError as e:
                outcome = cache_module.UPSTREAM_FAILED
                LOG.warning('cache: fill of image %s stopped at byte %d of '
                            '%d; the prefix is kept for a resume: %s',
                            image_id, fill.written, expected.size, e)
                self._checkpoint(fill, fd)
            except (OSError, exceptions.CacheError) as e:
                outcome = cache_module.WRITE_FAILED
                self.backoff.failed(e)
            finally:
                fill.advance(fetch_done=True)
                hasher.join()
            if outcome == cache_module.FILLING:
                outcome = self._verify_and_commit(fill, fd)
            if outcome == cache_module.VERIFY_FAILED:
                # A peer's bytes: the site reads that peer no more.
                stream.verify_failed()
        except Exception:
            LOG.exception('cache: fill of image %s failed', image_id)
            outcome = cache_module.WRITE_FAILED
        finally:
            self._end(fill, fd, outcome)

    def _end(self, fill, fd, outcome):
        """Record the outcome, then release everything; each step is
        guarded, so that the lock is always released.

        The verdict comes first: a follower in another process that finds
        the file gone reads it to tell a failed fill from an abandoned one,
        and the steps after it wait on the index (up to its busy timeout).
        Followers in this process wake at the end, when the partial is gone
        and counted.
        """
        image_id = fill.expected.image_id
        from_peers = fill.source.bytes_from_peer if fill.source else 0
        steps = [lambda: fill.lock.write_outcome(outcome)]
        if outcome in (cache_module.WRITE_FAILED,
                       cache_module.VERIFY_FAILED):
            steps.append(lambda: self.cache.discard_partial(image_id))
        steps += [lambda: os.close(fd),
                  lambda: self.cache.count(
                      bytes_from_central=max(
                          0, fill.written - fill.start - from_peers),
                      bytes_from_peers=from_peers,
                      bytes_resent=fill.resent,
                      verification_failures=int(
                          outcome == cache_module.VERIFY_FAILED)),
                  lambda: self._record_duration(fill, outcome)]
        for step in steps:
            try:
                step()
            except Exception:
                LOG.exception('cache: cleaning up the fill of image %s',
                              image_id)
        with self._fills_lock:
            self._fills.pop(image_id, None)
        fill.done = True
        fill.advance()
        fill.lock.unlock()
        fill.lock.close()

    def _fetch(self, fill, fd, stream):
        written = checkpoint = fill.start
        try:
            for chunk in stream:
                view = memoryview(chunk)
                while view:
                    view = view[os.write(fd, view):]
                written += len(chunk)
                fill.advance(written)
                if (written - checkpoint >= CHECKPOINT_BYTES and
                        written < fill.expected.size):
                    self._checkpoint(fill, fd)
                    checkpoint = written
        finally:
            stream.close()

    def _checkpoint(self, fill, fd):
        """Make the prefix written so far durable, and say so."""
        try:
            os.fdatasync(fd)
            self.cache.write_partial_meta(fill.expected.image_id,
                                          fill.record.raw, fill.written)
        except (OSError, exceptions.CacheError) as e:
            LOG.debug('checkpoint of %s failed: %s',
                      fill.expected.image_id, e)

    def _hash(self, fill, fd):
        """Hash the partial file as it grows (hashlib releases the GIL on
        large buffers, so this runs beside the fetch).
        """
        hasher = hashlib.new(fill.expected.algo)
        pos = 0
        try:
            while True:
                with fill.cond:
                    while fill.written <= pos and not fill.fetch_done:
                        fill.cond.wait(1.0)
                    limit = fill.written
                if limit <= pos:
                    break
                while pos < limit:
                    block = os.pread(fd, min(self.chunk_size, limit - pos),
                                     pos)
                    if not block:
                        break
                    hasher.update(block)
                    pos += len(block)
                    # Hashing may lag the network (a fast link, a large
                    # image): followers waiting for the verdict must see
                    # that it goes on.
                    fill.touch(fd)
        except OSError as e:
            LOG.warning('cache: hashing image %s failed: %s',
                        fill.expected.image_id, e)
            return
        fill.digest = (pos, hasher.hexdigest())

    def _verify_and_commit(self, fill, fd):
        expected = fill.expected
        got = fill.digest or (None, None)
        if got != (expected.size, expected.digest):
            # Counted once the verdict is recorded (_end): the count waits
            # on the index.
            LOG.error('cache: image %s from central does not match its '
                      'record (expected %d bytes with %s %s, got %s bytes '
                      'with %s); discarded', expected.image_id,
                      expected.size, expected.algo, expected.digest, got[0],
                      got[1])
            return cache_module.VERIFY_FAILED
        fill.lock.write_outcome(cache_module.VERIFIED)
        fill.verified = True
        fill.advance()
        try:
            os.fdatasync(fd)
            self.cache.commit(expected.image_id, fill.record.raw)
        except (OSError, exceptions.CacheError) as e:
            self.backoff.failed(e)
            return cache_module.WRITE_FAILED
        return cache_module.COMMITTED
