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

"""Reading an image through the cache.

* Hit: a complete, verified entry is streamed from disk; central is not
  contacted at all.
* Miss: exactly one fill per image across the threads AND the worker
  processes of an edge (flock on the image's fill lock). The fill runs in a
  thread of its own, so it does not depend on the client that started it:
  every reader, that one included, follows the partial file and streams
  bytes as they land. A second thread hashes the file as it grows, keeping
  sha512 off the network loop; the entry is committed only when central's
  size and hash match. Until then every whole-image reader holds back the
  last byte, and releases it only when the fill of the very file it reads
  recorded its success (see _follow): a fill that fails verification, or
  that cannot be verified any more, leaves its clients with a short body,
  never a complete-looking wrong image.
* Resume: a fill that central interrupted, or whose worker was killed,
  keeps its prefix; the next fill continues it with a Range request and
  still verifies the whole image. From a central that serves no ranges
  (its store cannot read from an offset, see upstream.Central.serves_ranges)
  the fill reads the image from byte 0 and drops what it holds already;
  its file's modification time shows followers it is alive meanwhile.
* Range: served from a complete entry; else central's own bytes for the
  range, while a fill of the whole image starts in the background to warm
  the cache. From a central that serves no ranges, the range is served
  from that fill once it verified the image (one read of the image from
  central, not two). A range is never served from a partial file, whose
  bytes nobody verified yet and may come from a peer.
* Pass-through: an image that cannot fit, a disk that refuses writes, or a
  hash algorithm this Python lacks or refuses (md5 under FIPS): the image
  streams from central uncached, still hashed with its last byte held
  back (a range: as central sent it); the cache never fails a read that
  central can serve.
* Zero bytes: an empty image reads as an empty stream; nothing is asked of
  central and nothing is cached (there is nothing to keep).

Every iterator handed out is a delivery.Delivery, one of the kinds of
stream allowed to reach a client (delivery.py); read() returns nothing
else. What a read opened before its first chunk is released even if Glance
never starts it, and every error it raises is an IOError.
"""

import functools
import hashlib
import logging
import os
import threading
import time
import typing

from glance_store_remote import cache as cache_module
from glance_store_remote import delivery
from glance_store_remote import exceptions
from glance_store_remote import streams
from glance_store_remote import upstream

LOG = logging.getLogger(__name__)

# Bytes of a whole-image read withheld until its fill is verified.
HOLD_BACK = delivery.HOLD_BACK
# Seconds between looks at a fill run by another process.
POLL_INTERVAL = 0.005
# How often a fill makes its prefix durable (fdatasync), in bytes.
CHECKPOINT_BYTES = 256 * 1024 * 1024
# Fills a reader may take over when the one it followed stopped.
MAX_TAKEOVERS = 1
# Seconds the cache is bypassed after the disk refused a write.
CACHE_BACKOFF = 60
# Seconds between touches of a fill's file while it makes progress that
# does not grow the file (skipping a prefix, hashing): followers in every
# process take a change of its (size, mtime) as a sign of life.
TOUCH_INTERVAL = 1.0

STARTED, RUNNING, COMPLETE, NO_ROOM = 'started', 'running', 'complete', \
    'no-room'


def _can_hash(algo):
    """Whether this Python computes *algo*: under FIPS, md5 is listed in
    algorithms_available and still refused by hashlib.new. Cost: one
    hasher object.
    """
    try:
        hashlib.new(algo)
    except (ValueError, TypeError):
        return False
    return True


class FillSource(typing.Protocol):
    """What a fill reads: central's stream (_CentralFill) or the site's
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


class _CentralFill:
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


class _Fill:
    """A fill running in this process; followers here wait on ``cond``.

    ``file`` is (st_dev, st_ino) of the file it writes: a follower trusts
    its verdict only for that file.
    """

    def __init__(self, expected, record, lock, start, file):
        self.expected = expected
        self.record = record
        self.lock = lock
        self.start = start
        self.file = file
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


class _Tally:
    """A running sum, for callbacks that report amounts."""

    __slots__ = ('total',)

    def __init__(self):
        self.total = 0

    def add(self, amount):
        self.total += amount


class _Follower:
    """Where a whole-image reader stands: the file it reads (None until it
    opens one) and its position. _follow owns the file.
    """

    __slots__ = ('fd', 'offset', 'pos')

    def __init__(self, offset):
        self.fd = None
        self.offset = offset
        self.pos = offset


class ReadThrough:
    """The read path of one backend with a cache.

    :param cache: a cache.Cache
    :param central: an upstream.Central
    :param chunk_size: bytes per chunk handed to Glance
    :param stall_timeout: seconds a follower waits for a fill that makes no
        progress before giving up
    """

    def __init__(self, cache, central, chunk_size, stall_timeout,
                 site=None):
        self.cache = cache
        self.central = central
        # A site_source.SiteSource when the node belongs to a coordinated site:
        # where fills read from (see _open_fill_source).
        self.site = site
        self.chunk_size = chunk_size
        self.stall_timeout = stall_timeout
        self._fills = {}
        self._fills_lock = threading.Lock()
        self._bypass_until = 0.0

    # -- entry point -------------------------------------------------------

    def read(self, record, offset, length):
        """An iterator of exactly *length* bytes of the image from *offset*.

        :param record: central's upstream.ImageRecord (from the cache's own
            copy when central is down)
        :returns: a delivery.Delivery (every path below builds one, and
            nothing else is returned); part way it raises IOErrors only
        :raises UpstreamNotFound, UpstreamUnavailable, UpstreamProtocolError:
            before any byte, when central is needed and cannot serve
            (exceptions.SizeMismatch: the range ends past central's size)
        """
        upstream.check_range(self.central.backend, record, offset, length)
        if not length:
            return delivery.empty()
        return delivery.checked(self._choose(record, offset, length))

    def _choose(self, record, offset, length):
        """The read path's decision table (see the module docstring)."""
        image_id = record.id
        opened = self._open_complete(image_id)
        if opened is not None:
            return self._serve_file(opened[0], opened[1], offset, length)
        expected = cache_module.expected_from_record(record.raw)
        if not self._cacheable(expected):
            return self._passthrough(record, offset, length)
        if not (offset == 0 and length == record.size):
            return self._read_range(record, expected, offset, length)
        try:
            status = self._start_fill(expected, record)
        except exceptions.CacheError as e:
            self._cache_failed(e)
            status = NO_ROOM
        if status == COMPLETE:
            # Committed by another reader since we looked.
            opened = self._open_complete(image_id)
            if opened is not None:
                return self._serve_file(opened[0], opened[1], offset, length)
            status = NO_ROOM
        if status == NO_ROOM:
            return self._passthrough(record, offset, length)
        self.cache.count(**{'misses' if status == STARTED
                            else 'coalesced': 1})
        return self._following(record, expected, offset, length)

    def stored_record(self, image_id):
        """Central's record kept in the cache, or None."""
        try:
            return self.cache.stored_record(image_id)
        except exceptions.CacheError:
            return None

    def wait_for_fills(self, timeout=None):
        """Wait until the fills this process runs have ended (committed or
        not); for short-lived processes such as the CLI.
        """
        with self._fills_lock:
            fills = list(self._fills.values())
        for fill in fills:
            fill.thread.join(timeout)

    # -- hits ----------------------------------------------------------------

    def _open_complete(self, image_id):
        try:
            opened = self.cache.open_complete(image_id)
        except exceptions.CacheError as e:
            LOG.debug('cache lookup of %s failed: %s', image_id, e)
            return None
        if opened is None:
            return None
        fd, lock, _ = opened
        return fd, lock

    def _serve_file(self, fd, lock, offset, length):
        """Stream [offset, offset+length) of a complete entry's open file;
        the stream owns the file and the read *lock* (or None), started or
        not.
        """
        release = [functools.partial(os.close, fd)]
        if lock is not None:
            release.append(lock.close)
        return delivery.entry(
            fd, release, offset, length, self.chunk_size,
            lambda count: self.cache.count(bytes_from_cache=count))

    # -- ranges --------------------------------------------------------------

    def _read_range(self, record, expected, offset, length):
        """Serve a range of an image not held complete: central's own bytes
        for it while a background fill warms the cache; from a central
        without ranges, the fill's bytes once it verified the image.

        Never from a partial file: its bytes may come from a peer, and no
        hash vouches for part of an image (delivery.py).
        """
        data = self._uncached(record, offset, length, mid_stream=False,
                              skip_to_offset=False)
        if data is None:
            status = self._start_background_fill(expected, record)
        else:
            # This read may hold a slot of the WAN limits: the fill takes a
            # second one only if free, never waits for it (wan.py).
            self._start_background_fill(expected, record, wait=False)
            return data
        # Central serves no ranges: rather than reading the image from byte
        # 0 twice, follow the fill.
        if status == COMPLETE:
            opened = self._open_complete(record.id)
            if opened is not None:
                return self._serve_file(opened[0], opened[1], offset, length)
        elif status in (STARTED, RUNNING):
            self.cache.count(**{'misses' if status == STARTED
                                else 'coalesced': 1})
            return self._following(record, expected, offset, length)
        return self._passthrough(record, offset, length)

    def _start_background_fill(self, expected, record, wait=True):
        """_start_fill for a read that does not depend on it: failures
        are logged, not raised (returns None then).
        """
        try:
            return self._start_fill(expected, record, wait)
        except exceptions.UpstreamError as e:
            LOG.debug('background fill of %s not started: %s', record.id, e)
        except exceptions.CacheError as e:
            self._cache_failed(e)
        return None

    def _fill_running(self, image_id):
        fill = self._fills.get(image_id)
        if fill is not None and not fill.done:
            return True
        return self.cache.fill_locked(image_id)

    # -- pass-through --------------------------------------------------------

    def _cacheable(self, expected):
        if time.monotonic() < self._bypass_until:
            return False
        if not expected.digest or not _can_hash(expected.algo):
            LOG.warning('image %s cannot be verified (%s %r): streamed '
                        'uncached', expected.image_id, expected.algo,
                        expected.digest)
            return False
        return True

    def _passthrough(self, record, offset, length):
        return self._uncached(record, offset, length, mid_stream=False)

    def _uncached(self, record, offset, length, mid_stream=True,
                  skip_to_offset=True):
        """Bytes read past this node's cache: from a peer of the site that
        holds the image complete (no WAN, and also while central is cut),
        else from central (_from_central, same parameters and raises).
        """
        held = self._from_peer(record, offset, length, mid_stream)
        if held is not None:
            return held
        return self._from_central(record, offset, length, mid_stream,
                                  skip_to_offset)

    def _from_peer(self, record, offset, length, mid_stream):
        """A peer's bytes as a client may get them (the whole image hashed
        against central's record, a range against the hash the peer
        signed), or None when no peer of the site holds the image.
        """
        if self.site is None:
            return None
        found = self.site.open_held(record, offset, length)
        if found is None:
            return None
        stream, digest, peer = found
        if not mid_stream:
            self.cache.count(passthrough=1, misses=1)
        counted = self._counted(stream, None)

        def lied():
            self._count_mismatch()
            self.site.distrust(peer, record.id)
        if digest is None:
            return delivery.whole_image(
                counted, cache_module.expected_from_record(record.raw),
                on_mismatch=lied, release=stream.close)
        return delivery.peer_range(counted, record.id, length, digest,
                                   on_mismatch=lied, release=stream.close)

    def _from_central(self, record, offset, length, mid_stream=True,
                      skip_to_offset=True):
        """Bytes from central, uncached and counted, as a client may get
        them (delivery.from_central: the whole image hashed with its last
        byte held back, a part of it as central sent it); the stream
        returned closes the response, started or not.

        :param mid_stream: inside a stream already handed to Glance, where
            every error must be an IOError; else the start of a
            pass-through
        :param skip_to_offset: see upstream.Central.open_data (False:
            None when central serves no ranges)
        """
        resent = _Tally()
        try:
            data = self.central.open_data(record, offset, length,
                                          on_skip=resent.add,
                                          skip_to_offset=skip_to_offset)
        except exceptions.UpstreamStreamError:
            raise
        except exceptions.UpstreamError as e:
            if not mid_stream:
                raise
            raise self._stream_error(record, e) from e
        if data is None:
            return None
        if not mid_stream:
            self.cache.count(passthrough=1, misses=1)
        return delivery.from_central(
            self._counted(data, resent),
            cache_module.expected_from_record(record.raw), offset, length,
            on_mismatch=self._count_mismatch, release=data.close)

    def _count_mismatch(self):
        self.cache.count(verification_failures=1)

    def _counted(self, data, resent):
        """*data* as it passes, its bytes counted at the end: central's,
        with the bytes it sent twice (*resent*), or a peer's (None).
        """
        received = 0
        try:
            for chunk in data:
                received += len(chunk)
                yield chunk
        finally:
            if resent is None:
                self.cache.count(bytes_from_peers=received)
            else:
                self.cache.count(bytes_from_central=received,
                                 bytes_resent=resent.total)

    def _stream_error(self, record, error):
        """The IOError to raise for *error*, an UpstreamError met after the
        stream was handed out.
        """
        prefix = "remote-glance backend '%s': " % error.backend
        return exceptions.UpstreamStreamError(
            self.central.backend, 'image %s: central cannot serve the rest '
            'of the image: %s' % (record.id,
                                  str(error).replace(prefix, '', 1)))

    def _cache_failed(self, error):
        """Bypass the cache for a while; say so once per episode."""
        first = time.monotonic() >= self._bypass_until
        self._bypass_until = time.monotonic() + CACHE_BACKOFF
        if first:
            LOG.error('cache %s refused a write; images stream from central '
                      'uncached for %d s: %s', self.cache.root,
                      CACHE_BACKOFF, error)
        else:
            LOG.debug('cache still failing: %s', error)

    # -- fills -------------------------------------------------------------

    def _start_fill(self, expected, record, wait=True):
        """Start a fill of the image unless one runs already.

        :param wait: wait for a WAN slot (wan.Gate.open_data); False: take
            one only if free now
        :returns: STARTED, RUNNING, COMPLETE or NO_ROOM
        :raises UpstreamError: central cannot serve (nothing was started)
        """
        lock = self.cache.lock(expected.image_id, 'fill')
        if not lock.try_lock():
            lock.close()
            return RUNNING
        return self._fill_holding(lock, expected, record, wait)

    def _fill_holding(self, lock, expected, record, wait=True):
        """Start a fill while holding its lock; the fill thread releases
        it. Same parameters, returns and raises as _start_fill.
        """
        image_id = expected.image_id
        started = False
        try:
            if os.path.exists(self.cache.data_path(image_id)):
                return COMPLETE
            # From here on the lock's outcome speaks of this fill.
            lock.write_outcome(cache_module.FILLING)
            try:
                if not self.cache.reserve(expected, record.raw):
                    return NO_ROOM
                start = self.cache.resumable_length(image_id)
                fd = os.open(self.cache.data_path(image_id, partial=True),
                             os.O_RDWR | os.O_CREAT, 0o640)
            except (OSError, exceptions.CacheError) as e:
                self._cache_failed(e)
                return NO_ROOM
            try:
                stat = os.fstat(fd)
                # Keep the resumable prefix and write after it.
                os.ftruncate(fd, start)
                os.lseek(fd, start, os.SEEK_SET)
                fill = _Fill(expected, record, lock, start,
                             (stat.st_dev, stat.st_ino))
                stream = _CentralFill(streams.empty())
                if start < expected.size:
                    stream = self._open_fill_source(
                        record, start, expected.size - start,
                        functools.partial(self._skipped, fill, fd), wait)
            except BaseException as e:
                os.close(fd)
                if isinstance(e, OSError) and not isinstance(
                        e, exceptions.RemoteGlanceError):
                    self._cache_failed(e)
                    return NO_ROOM
                if not start:
                    # Nothing to resume: release the reservation.
                    self.cache.discard_partial(image_id)
                raise
            if start:
                self.cache.count(resumes=1)
                LOG.info('cache: resuming image %s at byte %d of %d',
                         image_id, start, expected.size)
            with self._fills_lock:
                self._fills[image_id] = fill
            fill.thread = threading.Thread(
                target=self._run_fill, args=(fill, fd, stream),
                name='fill-%s' % image_id, daemon=True)
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

    def _open_fill_source(self, record, offset, length, on_skip, wait):
        """The FillSource of the bytes a fill needs: central's stream or,
        in a coordinated site, the site's choice between central and a
        peer (site_source.SiteSource.open_fill).
        """
        if self.site is None:
            return _CentralFill(self.central.open_data(
                record, offset, length, on_skip=on_skip, wait=wait))
        return self.site.open_fill(record, offset, length, on_skip=on_skip,
                                   wait=wait)

    def _skipped(self, fill, fd, count):
        """A fill resuming from a central without ranges dropped *count*
        bytes it holds already; it is alive all the same (_touch).
        """
        fill.resent += count
        self._touch(fill, fd)

    @staticmethod
    def _touch(fill, fd):
        """Show followers in every process that the fill is alive though
        its file does not grow: change the file's mtime, at most every
        TOUCH_INTERVAL seconds (see _follow_fill).
        """
        now = time.monotonic()
        if now - fill.touched_at < TOUCH_INTERVAL:
            return
        fill.touched_at = now
        try:
            os.utime(fd)
        except OSError as e:
            if not fill.touch_failed:
                fill.touch_failed = True
                LOG.debug('touching the fill of %s failed: %s',
                          fill.expected.image_id, e)
        fill.advance()

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

    def _run_fill(self, fill, fd, stream):
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
                self._cache_failed(e)
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
            self._end_fill(fill, fd, outcome)

    def _end_fill(self, fill, fd, outcome):
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
                          outcome == cache_module.VERIFY_FAILED))]
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
                    self._touch(fill, fd)
        except OSError as e:
            LOG.warning('cache: hashing image %s failed: %s',
                        fill.expected.image_id, e)
            return
        fill.digest = (pos, hasher.hexdigest())

    def _verify_and_commit(self, fill, fd):
        expected = fill.expected
        got = fill.digest or (None, None)
        if got != (expected.size, expected.digest):
            # Counted once the verdict is recorded (_end_fill): the count
            # waits on the index.
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
            self._cache_failed(e)
            return cache_module.WRITE_FAILED
        return cache_module.COMMITTED

    # -- followers -----------------------------------------------------------

    def _following(self, record, expected, offset, length):
        """A follower of the image's fill, which keeps the entry from
        eviction until its stream ends (a shared read lock, as a hit holds):
        once the fill committed, a cache under pressure would otherwise
        evict the entry under a reader still at its held-back byte, whose
        rest would then have to come from central.
        """
        return delivery.following(
            self._follow(record, expected, offset, length), record.id,
            *self._keep_from_eviction(record.id))

    def _keep_from_eviction(self, image_id):
        """Release callables of a shared read lock on the image, or none
        when the lock cannot be had (an eviction of the image holds it this
        instant, or the cache failed): the reader goes on unprotected, as
        before a follower held one.
        """
        try:
            lock = self.cache.lock(image_id, 'read')
        except exceptions.CacheError:
            return ()
        if lock.try_lock(shared=True):
            return (lock.close,)
        lock.close()
        return ()

    def _follow(self, record, expected, offset, length):
        """Stream a whole image from the fill's file as it grows.

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
        at = _Follower(offset)
        end = offset + length
        try:
            try:
                yield from self._follow_fill(record, expected, at, end)
            except exceptions.CacheIntegrityError:
                raise
            except exceptions.CacheError as e:
                self._cache_failed(e)
                yield from self._rest_uncached(record, expected, at, end)
        finally:
            if at.fd is not None:
                os.close(at.fd)

    def _follow_fill(self, record, expected, at, end):
        """Stream the image from the fill's file as it grows (see _follow);
        the file it opens is left in *at* for _follow to close.
        """
        image_id = expected.image_id
        pos = at.pos
        fd = file = None
        verified = False
        takeovers = 0
        available = pos
        last_progress = time.monotonic()
        # The file's (size, mtime) when last looked at: a change is progress
        # even when this reader gets no new byte (a fill that re-reads from
        # byte 0 what it holds already touches the file, see _skipped).
        seen = None
        # Until the verdict a whole-image reader stops before the last
        # byte, and a range before its first (delivery.py: no range from
        # bytes nobody verified).
        unverified_limit = (min(end, expected.size - HOLD_BACK)
                            if (at.offset, end) == (0, expected.size)
                            else at.offset)
        while pos < end:
            limit = end if verified else unverified_limit
            if fd is None:
                fd = at.fd = self._open_fill_file(image_id)
                if fd is None:
                    if self._fill_running(image_id):
                        # The filler holds the lock but has not created its
                        # file yet.
                        self._check_stall(image_id, last_progress)
                        time.sleep(POLL_INTERVAL)
                        continue
                    yield from self._after_discard(
                        record, expected, at, self._outcome(image_id), end)
                    return
                stat = os.fstat(fd)
                file = (stat.st_dev, stat.st_ino)
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
                at.pos = pos
                last_progress = time.monotonic()
                yield chunk
                continue
            # Caught up with the fill: find out what it is doing.
            fill = self._fills.get(image_id)
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
                self._check_stall(image_id, last_progress)
                continue
            stat = os.fstat(fd)
            outcome = self._outcome(image_id)
            if (outcome in (cache_module.VERIFIED, cache_module.COMMITTED) and
                    stat.st_size >= expected.size and
                    self._names(image_id, stat)):
                verified = True
                continue
            if stat.st_nlink == 0 or outcome in (
                    cache_module.WRITE_FAILED, cache_module.VERIFY_FAILED):
                yield from self._after_discard(record, expected, at,
                                               outcome, end)
                return
            lock = self.cache.lock(image_id, 'fill')
            if not lock.try_lock():
                lock.close()
                self._check_stall(image_id, last_progress)
                time.sleep(POLL_INTERVAL)
                continue
            # The fill stopped without a verdict: its worker died or
            # central failed. Take it over (resume) once.
            if takeovers >= MAX_TAKEOVERS:
                lock.unlock()
                lock.close()
                raise exceptions.UpstreamStreamError(
                    self.central.backend, 'image %s: central failed '
                    'while the cache was filling it' % image_id)
            takeovers += 1
            try:
                status = self._fill_holding(lock, expected, record)
            except exceptions.UpstreamError as e:
                raise self._stream_error(record, e) from e
            if status == NO_ROOM:
                yield from self._rest_uncached(record, expected, at, end)
                return
            last_progress = time.monotonic()

    def _names(self, image_id, stat):
        """Whether the open file *stat* describes is still the image's
        partial or complete file: a recorded outcome speaks of the fill of
        that file, not of a later one that started anew after it was
        discarded. Cost: one or two stat calls, once per read.
        """
        # Partial first: a commit renames it to the complete one.
        for partial in (True, False):
            try:
                named = os.stat(self.cache.data_path(image_id, partial))
            except OSError:
                continue
            if (named.st_dev, named.st_ino) == (stat.st_dev, stat.st_ino):
                return True
        return False

    def _open_fill_file(self, image_id):
        for partial in (True, False):
            try:
                return os.open(self.cache.data_path(image_id, partial),
                               os.O_RDONLY)
            except FileNotFoundError:
                continue
        return None

    def _outcome(self, image_id):
        lock = self.cache.lock(image_id, 'fill')
        try:
            return lock.read_outcome()
        finally:
            lock.close()

    def _after_discard(self, record, expected, at, outcome, end):
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
                'nothing was cached' % record.id)
        return self._rest_uncached(record, expected, at, end)

    def _rest_uncached(self, record, expected, at, end):
        """The rest of a read past the cache (a peer that holds the image,
        else central: _uncached), when the cache failed under it or lost
        the file it read.

        Before the first byte this is a pass-through, as for any image the
        cache cannot take, and so is a range (a range follower sends no
        byte before its fill's verdict). After the first byte of a read up
        to the last, the rest cannot vouch for the cached bytes already
        sent (they may come from a fill that was about to fail
        verification): the reader verifies by itself (_verified_rest).
        """
        if at.pos == at.offset or end < expected.size:
            return self._uncached(record, at.pos, end - at.pos)
        return self._verified_rest(record, expected, at, end)

    def _verified_rest(self, record, expected, at, end):
        """Hash the file's bytes up to where the reader stands (for a
        range, the ones before it too) and central's rest as it passes;
        release the last HOLD_BACK bytes only if the whole matches central's
        size and hash, else raise CacheIntegrityError.

        Cost: one hash of the image on this thread and a second read of
        what was sent, on this failure path only.
        """
        hasher = hashlib.new(expected.algo)
        pos = 0
        while pos < at.pos:
            block = os.pread(at.fd, min(self.chunk_size, at.pos - pos), pos)
            if not block:
                raise exceptions.StreamError(
                    'image %s: its cache file shrank under the reader at '
                    'byte %d; the read ends short' % (record.id, pos))
            hasher.update(block)
            pos += len(block)
        data = self._uncached(record, pos, end - pos)
        yield from delivery.hold_back_until_verified(
            data, expected, hasher, pos, on_mismatch=self._count_mismatch)

    def _check_stall(self, image_id, last_progress):
        if time.monotonic() - last_progress > self.stall_timeout:
            raise exceptions.UpstreamStreamError(
                self.central.backend, 'image %s: the fill made no progress '
                'for %g s' % (image_id, self.stall_timeout))
