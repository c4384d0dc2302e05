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

"""Reading an image through the cache: the read path's decision table,
which source serves a read.

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
  recorded its success (following.py): a fill that fails verification, or
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

Each read is counted once (cache_index.REQUEST_COUNTERS), when its source
is known and before its first byte: a hit (a complete entry, counted by
cache.Cache.open_complete, or zero bytes), a miss (it started the fill it
follows), coalesced (it follows a fill that ran already), a peer read or a
pass-through (streamed uncached from a peer or from central). A read that
central cannot serve raises before any of these is counted: store.py
counts it as refused when central could not be reached or no WAN slot
came free (unavailable, busy); an image central lacks or a wrong answer
of central is an error, no result. What a stream does after it was
handed out (a follower falling back to central) is no new read.

Every iterator handed out is a delivery.Delivery, one of the kinds of
stream allowed to reach a client (delivery.py); read() returns nothing
else. What a read opened before its first chunk is released even if Glance
never starts it, and every error it raises is an IOError.

The fill itself (one image written, hashed, verified, committed) is
fill.py's; reading a fill's growing file with the hold-back rule is
following.py's; where a fill writes and how its file is found again is the
cache's (cache.Cache.begin_fill, open_fill_file).
"""

import functools
import hashlib
import logging
import os

from glance_store_remote import cache as cache_module
from glance_store_remote import delivery
from glance_store_remote import exceptions
from glance_store_remote import fill as fill_module
from glance_store_remote import following
from glance_store_remote import upstream

LOG = logging.getLogger(__name__)


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


class _Tally:
    """A running sum, for callbacks that report amounts."""

    __slots__ = ('total',)

    def __init__(self):
        self.total = 0

    def add(self, amount):
        self.total += amount


class ReadThrough:
    """The read path of one backend with a cache.

    :param cache: a cache.Cache
    :param central: an upstream.Central
    :param chunk_size: bytes per chunk handed to Glance
    :param stall_timeout: seconds a follower waits for a fill that makes no
        progress before giving up
    :param site: a site_source.SiteSource when the node belongs to a
        coordinated site: where fills read from, and the peers that hold an
        image complete
    """

    def __init__(self, cache, central, chunk_size, stall_timeout,
                 site=None):
        self._backoff = fill_module.Backoff(cache.root)
        self._filler = fill_module.Filler(cache, central, chunk_size,
                                          self._backoff, site)
        self.chunk_size = chunk_size
        self.stall_timeout = stall_timeout

    # The cache, central and the site are the fills' too: one place holds
    # them (the Filler), so that the read path and its fills never differ.

    @property
    def cache(self):
        return self._filler.cache

    @property
    def central(self):
        return self._filler.central

    @property
    def site(self):
        return self._filler.site

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
            # Served here without central: a hit.
            self.cache.count(hits=1)
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
            status = self._filler.start(expected, record)
        except exceptions.CacheError as e:
            self._backoff.failed(e)
            status = fill_module.NO_ROOM
        if status == fill_module.COMPLETE:
            # Committed by another reader since we looked.
            opened = self._open_complete(image_id)
            if opened is not None:
                return self._serve_file(opened[0], opened[1], offset, length)
            status = fill_module.NO_ROOM
        if status == fill_module.NO_ROOM:
            return self._passthrough(record, offset, length)
        self.cache.count(**{'misses' if status == fill_module.STARTED
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
        self._filler.wait(timeout)

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
        if status == fill_module.COMPLETE:
            opened = self._open_complete(record.id)
            if opened is not None:
                return self._serve_file(opened[0], opened[1], offset, length)
        elif status in (fill_module.STARTED, fill_module.RUNNING):
            self.cache.count(**{'misses' if status == fill_module.STARTED
                                else 'coalesced': 1})
            return self._following(record, expected, offset, length)
        return self._passthrough(record, offset, length)

    def _start_background_fill(self, expected, record, wait=True):
        """Filler.start for a read that does not depend on it: failures
        are logged, not raised (returns None then).
        """
        try:
            return self._filler.start(expected, record, wait)
        except exceptions.UpstreamError as e:
            LOG.debug('background fill of %s not started: %s', record.id, e)
        except exceptions.CacheError as e:
            self._backoff.failed(e)
        return None

    # -- pass-through --------------------------------------------------------

    def _cacheable(self, expected):
        if self._backoff.active():
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
            self.cache.count(peer_reads=1)
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
            raise upstream.stream_error(self.central.backend, record,
                                        e) from e
        if data is None:
            return None
        if not mid_stream:
            self.cache.count(passthrough=1)
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

    # -- followers -----------------------------------------------------------

    def _following(self, record, expected, offset, length):
        """A follower of the image's fill (following.Follower): the bytes
        of its file as they land, held back until its verdict.
        """
        return following.Follower(
            self._filler, record, expected, offset, length, self.chunk_size,
            self.stall_timeout, self._uncached,
            self._count_mismatch).delivery()
