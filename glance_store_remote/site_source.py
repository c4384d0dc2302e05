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

"""Where a fill of a coordinated site reads an image from, and how the site
asks central about an image once.

* ``SiteSource.open_fill`` (the fill's one hook, fill.Filler.open_source):
  from central while holding the site's lock of the image
  (coordination.py), else from the node that holds or fills it
  (peers/client.py), falling back to central when that node fails or lied;
* ``RecordRelay.central_record``: central's record through the one node of
  the site that answers for the image (upstream.Central.record_relay);
* ``SiteSource.held_record``: central's record of an image another node
  holds, when central cannot be asked.
"""

import hashlib
import logging
import time

from glance_store_remote import coordination
from glance_store_remote import exceptions
from glance_store_remote.peers import client

LOG = logging.getLogger(__name__)

# Seconds a reader waits for a peer to show the image another node locked.
FIND_TIMEOUT = 5.0
# Seconds a peer whose bytes failed verification is not read from again.
DISTRUST_SECONDS = 600
# Seconds a node remembers that no peer holds an image complete: a burst
# of ranges or pass-throughs of one image asks the site once.
NOT_HELD_SECONDS = 5.0
NOT_HELD_MEMO_SIZE = 4096
# The largest range a peer serves with its digest (see Peer.open_verified_
# range): the peer hashes the range before its first byte, within the
# reader's read timeout; a larger range is read from central.
MAX_PEER_RANGE = 1024 * 1024 * 1024


def peer_maker(backend, secret, chunk_size, timeout, ca_file=None):
    """callable(url) -> the peers.client.Peer of the node at that peer URL."""
    return lambda url: client.Peer(backend, url, secret, chunk_size, timeout,
                                   ca_file)


class RecordRelay:
    """How the nodes of a site ask central about an image once: through
    the node that answers for it (upstream.Central's record_relay).

    :param site: the node's coordination.Site
    :param make_peer: callable(url) -> a peers.client.Peer (peer_maker)
    """

    def __init__(self, site, make_peer):
        self.site = site
        self._make_peer = make_peer

    def central_record(self, image_id, fetch):
        """Central's record of *image_id* asked once for the site, and its
        age in seconds: through the node that answers for the image
        (rendezvous hashing over the members, so every node picks the same
        one while they agree on the membership), or with *fetch*
        (callable(image_id) -> ImageRecord) when that is this node, the
        coordinator is down, or that node cannot be asked or cannot ask
        central itself (this node may still reach it).

        :raises UpstreamNotFound, UpstreamUnavailable, UpstreamProtocolError
        """
        try:
            urls = list(self.site.members()) + [self.site.peer_url]
        except coordination.Unavailable:
            return fetch(image_id), 0.0
        owner = max(urls, key=lambda url: hashlib.sha256(
            ('%s %s' % (url, image_id)).encode()).digest())
        if owner != self.site.peer_url:
            try:
                return self._make_peer(owner).central_record(image_id)
            except client.PeerUnreachable as e:
                LOG.info('cache: image %s: %s; asking central', image_id, e)
        return fetch(image_id), 0.0


class SiteSource:
    """Chooses the source of a fill for a node of a coordinated site.

    :param site: a coordination.Site
    :param central: the upstream.Central
    :param secret: the site's peer secret
    :param make_peer: callable(url) -> a Peer (for tests)
    """

    def __init__(self, site, central, secret, chunk_size, timeout,
                 make_peer=None, clock=time.monotonic, ca_file=None,
                 find_timeout=None):
        self.site = site
        # The site's key signs this member's entry and checks the others'
        # (coordination.py): the peer URLs read from come from signed
        # members only.
        set_secret = getattr(site, 'set_secret', None)
        if set_secret is not None and secret:
            set_secret(secret)
        self.central = central
        # How long a node waits for the lock holder to show the image: a
        # few seconds, plus the WAN slot wait the holder may spend first.
        self.find_timeout = (FIND_TIMEOUT if find_timeout is None
                             else find_timeout)
        self.backend = central.backend
        self._clock = clock
        self._make_peer = make_peer or (lambda url: client.Peer(
            self.backend, url, secret, chunk_size, timeout, ca_file))
        self._distrusted = {}
        # image ID -> when no peer held it complete (oldest first).
        self._not_held = {}

    def open_fill(self, record, offset, length, on_skip=None, wait=True):
        """The fill.FillSource a fill of *record* reads
        [offset, offset+length) from; its close() releases the site lock if
        this node took it.

        :param wait: wait for a WAN slot if central is read (wan.Gate)

        :raises UpstreamError: neither a peer nor central can serve
        """
        image_id = record.id
        try:
            lock = self.site.try_lock(image_id)
            locked = lock is not None
        except coordination.Unavailable:
            return _FillStream(self, record, offset, length, on_skip,
                               self.central.open_data(
                                   record, offset, length, on_skip=on_skip,
                                   wait=wait), None, None)
        # Holding the lock, look for a complete copy only; else another
        # node holds the lock: it fills, or has just filled (give it a few
        # seconds to show).
        deadline = self._clock() + (0 if locked else self.find_timeout)
        while True:
            peer = self._find(image_id, complete_only=locked)
            if peer is not None or self._clock() >= deadline:
                break
            if on_skip is not None:
                on_skip(0)  # alive, for the followers of this fill
            time.sleep(0.1)
        if peer is not None:
            if lock is not None:
                lock.release()
                lock = None
            try:
                data = peer.open_data(record, offset, length)
            except exceptions.UpstreamError as e:
                LOG.warning('cache: image %s: %s; reading it from central '
                            'instead', image_id, e)
            else:
                LOG.info('cache: image %s: filling from peer %s', image_id,
                         peer.url)
                return _FillStream(self, record, offset, length, on_skip,
                                   data, peer, None)
        if not locked:
            LOG.info('cache: image %s: the site lock is held but no peer '
                     'shows the image; reading it from central', image_id)
            try:
                lock = self.site.try_lock(image_id)
            except coordination.Unavailable:
                lock = None
        try:
            data = self.central.open_data(record, offset, length,
                                          on_skip=on_skip, wait=wait)
        except BaseException:
            if lock is not None:
                lock.release()
            raise
        if lock is not None:
            # The other nodes read the image from this one meanwhile.
            try:
                self.site.advertise(image_id)
            except coordination.Unavailable:
                pass
        return _FillStream(self, record, offset, length, on_skip, data, None,
                           lock)

    def open_held(self, record, offset, length):
        """A peer's bytes of an image that peer holds complete, for a read
        that would otherwise go to central (a pass-through, a range, the
        rest of a read whose cache failed): (stream, digest, peer), with
        *digest* the hex SHA-256 of a range as the peer signed it (None for
        the whole image, which the caller verifies against central's
        record), or None when no peer holds it (or can serve it now).

        Cost: one signed HEAD per member until one holds the image, and
        for a range, the peer's hash of it before its first byte.
        """
        whole = (offset, length) == (0, record.size)
        if not whole and length > MAX_PEER_RANGE:
            return None
        now = self._clock()
        if now - self._not_held.get(record.id, now - NOT_HELD_SECONDS) < (
                NOT_HELD_SECONDS):
            return None
        peer = self._find(record.id, complete_only=True)
        if peer is None:
            self._not_held[record.id] = now
            while len(self._not_held) > NOT_HELD_MEMO_SIZE:
                self._not_held.pop(next(iter(self._not_held)))
            return None
        self._not_held.pop(record.id, None)
        try:
            if whole:
                return peer.open_data(record, 0, length), None, peer
            stream, digest = peer.open_verified_range(record, offset, length)
        except exceptions.UpstreamError as e:
            LOG.info('cache: image %s: %s; asking central', record.id, e)
            return None
        return stream, digest, peer

    def held_record(self, image_id):
        """Central's record of an image some other node of the site holds
        or fills, or None: what lets any node serve, while central is cut,
        an image one node holds.

        Cost: one request per member, until one holds it.
        """
        try:
            members = self.site.members()
        except coordination.Unavailable:
            return None
        for url in sorted(members):
            record = self._make_peer(url).held_record(image_id)
            if record is not None:
                LOG.info('cache: image %s: record from peer %s (central '
                         'cannot be asked)', image_id, url)
                return record
        return None

    def _find(self, image_id, complete_only):
        """A Peer that holds the image complete, else (unless
        *complete_only*) the one that reads it from central, or None.

        Only a node that says it reads the image from central counts as
        filling: a node waiting for a source of its own also shows a
        partial file, and two of them reading each other would wait until
        their timeouts.
        """
        try:
            members = self.site.members()
        except coordination.Unavailable:
            return None
        now = self._clock()
        filling = None
        for url in sorted(members):
            if self._distrusted.get(url, 0) > now:
                continue
            peer = self._make_peer(url)
            state = peer.state(image_id)
            if state == 'complete':
                return peer
            if (state == 'filling' and filling is None and
                    image_id in members[url]):
                filling = peer
        return None if complete_only else filling

    def distrust(self, peer, image_id):
        """*peer* sent bytes of *image_id* that failed verification."""
        self._distrusted[peer.url] = self._clock() + DISTRUST_SECONDS
        LOG.error('cache: image %s read from peer %s does not match '
                  'central\'s record; that peer is not read from for %d s',
                  image_id, peer.url, DISTRUST_SECONDS)


class _FillStream:
    """A fill's source: a peer's bytes (the rest from central if the peer
    fails part way) or central's; releases the site lock at close.
    """

    def __init__(self, source, record, offset, length, on_skip, data, peer,
                 lock):
        self._source = source
        self._record = record
        self._on_skip = on_skip
        self._data = data
        self.peer = peer
        self._lock = lock
        self.bytes_from_peer = 0
        self._chunks = self._run(offset, offset + length)

    def __iter__(self):
        return self

    def __next__(self):
        return next(self._chunks)

    def _run(self, pos, end):
        from_peer = self.peer is not None
        try:
            for chunk in self._data:
                pos += len(chunk)
                if from_peer:
                    self.bytes_from_peer += len(chunk)
                yield chunk
            return
        except exceptions.UpstreamStreamError as e:
            if self.peer is None:
                raise
            LOG.warning('cache: %s; the rest comes from central', e)
        self._data.close()
        self._data = self._source.central.open_data(
            self._record, pos, end - pos, on_skip=self._on_skip)
        yield from self._data

    def verify_failed(self):
        """The fill's bytes did not match central's record."""
        if self.peer is not None:
            self._source.distrust(self.peer, self._record.id)

    def close(self):
        try:
            self._chunks.close()
            self._data.close()
        finally:
            if self._lock is not None:
                try:
                    self._source.site.advertise(self._record.id,
                                                filling=False)
                except coordination.Unavailable:
                    pass
                self._lock.release()
                self._lock = None
