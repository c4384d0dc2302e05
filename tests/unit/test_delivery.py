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

"""Unit tests of delivery.py: every read path of the driver, against a
central and a peer that lie, and the one rule they share.

A lie is other bytes of the same length (one in the middle, or the very
last byte), a truncated image, or an extended one. For every read path
(hit, miss, coalesced followers in this process and in another worker,
ranges before, during and after a fill and from a central without ranges,
pass-throughs for an image too large, no room, after a write error and
without a cache directory, a fill from a peer, a range and a pass-through
from a peer that holds the image, whose bytes arrive altered)
and every lie, what the client receives is either the right bytes in full,
or a short body ending in an IOError; and a range is either bytes of a
verified entry, bytes checked against the hash a peer signed for its own
verified entry, or the bytes central itself sent for that range, never
bytes of a partial file.

Central is scripted (tests.unit.test_readthrough.FakeCentral) because a
real one cannot be made to lie on demand; tests/functional/test_faults.py
makes a real central lie by overwriting its stored file.
"""

import concurrent.futures
import errno
import hashlib
import multiprocessing
import os
import threading

import fixtures
import testtools

from glance_store_remote import cache
from glance_store_remote import delivery
from glance_store_remote import exceptions
from glance_store_remote import readthrough
from glance_store_remote import upstream
from tests.unit import base
from tests.unit import read_fakes as rt

KiB = rt.KiB
IMAGE = rt.IMAGE


def _flip(data, at):
    return data[:at] + bytes([data[at] ^ 0xff]) + data[at + 1:]


# name -> callable(true bytes) -> the bytes the liar sends for the image
LIES = {
    'other-bytes': lambda data: _flip(data, len(data) // 2),
    'last-byte': lambda data: _flip(data, len(data) - 1),
    'truncated': lambda data: data[:len(data) - 3 * KiB],
    'extended': lambda data: data + b'x' * (3 * KiB),
}


class LyingCentral(rt.FakeCentral):
    """A FakeCentral whose bytes are *sent* (not the record's): a stream
    ends where *sent* ends (truncated) or goes on past the image's end
    (extended), as a broken or hostile source might.
    """

    size = None  # the record's

    def _chunks(self, pos, end, on_skip=None):
        if end >= self.size:
            # A read to the image's end: as much as the liar has.
            end = len(self.data)
        yield from super()._chunks(pos, end, on_skip)


class LyingPeerSite:
    """A site_source.SiteSource stand-in whose peer sends *sent* (not the
    image): as a fill's source, and as a node that holds the image
    complete and signs the hash of the true bytes of a range (*truth*),
    which reach this node altered (a plain-http link).
    """

    def __init__(self, sent, truth):
        self.sent = sent
        self.truth = truth
        self.distrusted = 0

    def open_fill(self, record, offset, length, on_skip=None, wait=True):
        return _PeerStream(self, self.sent[offset:])

    def open_held(self, record, offset, length):
        stream = _PeerStream(self, self.sent[offset:offset + length])
        if (offset, length) == (0, record.size):
            return stream, None, 'peer'
        digest = hashlib.sha256(self.truth[offset:offset + length])
        return stream, digest.hexdigest(), 'peer'

    def distrust(self, peer, image_id):
        self.distrusted += 1

    def held_record(self, image_id):
        return None


class _PeerStream:

    def __init__(self, site, data):
        self.site = site
        self._chunks = iter([data[i:i + 8 * KiB]
                             for i in range(0, len(data), 8 * KiB)])
        self.bytes_from_peer = 0

    def __iter__(self):
        return self

    def __next__(self):
        chunk = next(self._chunks)
        self.bytes_from_peer += len(chunk)
        return chunk

    def verify_failed(self):
        self.site.distrusted += 1

    def close(self):
        pass


class ReadPaths(rt.ReadThroughTestCase):
    """Each read_* method takes a read path and returns the outcomes of
    its clients: a list of (kind, offset, length, received, error).
    """

    def setUp(self):
        super().setUp()
        self.central = LyingCentral(self.data)
        self.central.size = self.SIZE
        self.reader = self.reader_with(central=self.central)
        # Bytes nobody verified, planted where a careless path would read
        # them: a partial file and a peer both hold them.
        self.planted = bytes(len(self.data))

    def reader_with(self, cache=None, central=None, site=None):
        """A ReadThrough as the base class makes, with these parts."""
        return readthrough.ReadThrough(
            cache or self.cache, central or self.central,
            chunk_size=16 * KiB, stall_timeout=5, site=site)

    def outcome(self, stream, offset, length):
        received, error = rt.drain(stream)
        return (getattr(stream, 'kind', None), offset, length, received,
                error)

    def whole(self):
        return self.outcome(self.read(), 0, self.SIZE)

    def range_of(self, offset, length):
        return self.outcome(self.read(offset=offset, length=length), offset,
                            length)

    # -- the paths -----------------------------------------------------

    def read_hit(self):
        self.whole()
        self.reader.wait_for_fills(10)
        return [self.whole()]

    def read_miss(self):
        return [self.whole()]

    def read_coalesced_in_this_worker(self):
        self.central.gate = threading.Event()
        with concurrent.futures.ThreadPoolExecutor(3) as pool:
            readers = [pool.submit(self.whole) for _ in range(3)]
            self.central.gate.set()
            return [r.result() for r in readers]

    def read_coalesced_in_another_worker(self):
        # This worker fills, and holds at 100 KiB until a worker process
        # follows the fill.
        self.central.hold_at = 100 * KiB
        first = self.read()
        context = multiprocessing.get_context('spawn')
        results = context.Queue()
        worker = context.Process(target=_follow_in_a_worker, args=(
            self.cache.root, self.record.raw, results), daemon=True)
        worker.start()
        self.addCleanup(worker.join, 10)
        self.addCleanup(worker.terminate)
        self.assertEqual('following', results.get(timeout=30))
        self.central.resume.set()
        mine = self.outcome(first, 0, self.SIZE)
        theirs = results.get(timeout=30)
        self.assertEqual(delivery.FOLLOWING, theirs[0])
        return [mine, theirs]

    def read_range_before_a_fill(self):
        return [self.range_of(16 * KiB, 100 * KiB),
                self.range_of(self.SIZE - 10, 10)]

    def read_range_during_a_fill(self):
        self.central.hold_at = 150 * KiB
        first = self.read()
        ranges = [self.range_of(16 * KiB, 100 * KiB)]
        self.central.resume.set()
        return [self.outcome(first, 0, self.SIZE)] + ranges

    def read_range_after_a_fill(self):
        self.whole()
        self.reader.wait_for_fills(10)
        return [self.range_of(16 * KiB, 100 * KiB),
                self.range_of(self.SIZE - 10, 10)]

    def read_range_inside_a_kept_prefix(self):
        honest_until = 120 * KiB
        sent = self.central.data
        self.central.data = self.data[:honest_until]
        self.central.fail_at = honest_until
        self.assertIsNotNone(self.whole()[4])
        self.central.data, self.central.fail_at = sent, None
        self.plant_partial()
        return [self.range_of(16 * KiB, 100 * KiB)]

    def read_range_from_a_central_without_ranges(self):
        self.central.serves_ranges = False
        return [self.range_of(16 * KiB, 100 * KiB),
                self.range_of(self.SIZE - 10, 10)]

    def read_passthrough_too_large(self):
        self.reader = self.reader_with(cache=cache.Cache(
            self.useFixture(fixtures.TempDir()).path, 64 * KiB))
        return [self.whole(), self.range_of(16 * KiB, 100 * KiB)]

    def read_passthrough_no_room(self):
        self.useFixture(fixtures.MockPatchObject(
            self.cache, 'reserve', return_value=False))
        return [self.whole()]

    def read_passthrough_after_a_write_error(self):
        with fixtures.MonkeyPatch(
                'glance_store_remote.fill.os.write',
                lambda *a: (_ for _ in ()).throw(
                    OSError(errno.ENOSPC, 'full'))):
            first = self.whole()
        return [first, self.whole()]

    def read_fill_from_a_peer(self):
        self.reader = self.reader_with(
            site=LyingPeerSite(self.planted, self.data))
        return [self.whole()]

    def read_range_from_a_peer(self):
        self.reader = self.reader_with(
            site=LyingPeerSite(self.planted, self.data))
        outcomes = [self.range_of(16 * KiB, 100 * KiB),
                    self.range_of(self.SIZE - 10, 10)]
        # Each range, and the fills that warm the cache meanwhile (from the
        # same peer), are caught.
        self.reader.wait_for_fills(10)
        self.assertGreaterEqual(self.reader.site.distrusted, 2)
        return outcomes

    def read_passthrough_from_a_peer(self):
        self.useFixture(fixtures.MockPatchObject(
            self.cache, 'reserve', return_value=False))
        self.reader = self.reader_with(
            site=LyingPeerSite(self.planted, self.data))
        outcomes = [self.whole()]
        self.assertEqual(1, self.reader.site.distrusted)
        return outcomes

    def plant_partial(self):
        """Overwrite what a partial file holds with bytes nobody verified
        (a peer's, an attacker's).
        """
        path = self.cache.data_path(IMAGE, partial=True)
        try:
            with open(path, 'r+b') as f:
                size = os.fstat(f.fileno()).st_size
                f.write(self.planted[:size])
        except FileNotFoundError:
            pass


def _follow_in_a_worker(root, raw, results):
    central = rt.FakeCentral(b'')
    central.down = True   # a follower never reads central itself here
    reader = readthrough.ReadThrough(cache.Cache(root, 1024 * KiB), central,
                                     chunk_size=16 * KiB, stall_timeout=5)
    record = upstream.ImageRecord(raw)
    try:
        stream = reader.read(record, 0, record.size)
    except exceptions.UpstreamError as e:
        results.put((None, 0, record.size, b'', e))
        return
    first = next(stream, b'')
    results.put('following')
    received, error = rt.drain(stream)
    results.put((stream.kind, 0, record.size, first + received,
                 None if error is None else IOError(str(error))))


class TestEveryReadPathAgainstLies(ReadPaths):
    """Generated below: test_<path>_<lie>, and test_<path>_honest (the
    path still serves the right bytes).
    """

    # Paths whose peer lies whatever central does.
    PEER_LIES = ('fill_from_a_peer', 'range_from_a_peer',
                 'passthrough_from_a_peer')

    def check(self, path, lie):
        if lie is not None:
            self.central.data = LIES[lie](self.data)
        outcomes = getattr(self, 'read_' + path)()
        self.assertTrue(outcomes)
        for kind, offset, length, received, error in outcomes:
            what = '%s of [%d, %d)' % (kind, offset, offset + length)
            if kind == delivery.CENTRAL_RANGE:
                # Central's own bytes for a range, as it sent them: never a
                # partial file's, never a peer's.
                sent = self.central.data[offset:offset + length]
                self.assertEqual(sent, received, what)
                if len(sent) < length:
                    self.assertIsInstance(error, IOError, what)
                else:
                    self.assertIsNone(error, what)
                self.assertNotEqual((0, self.SIZE), (offset, length))
                continue
            if error is None:
                self.assertEqual(self.data[offset:offset + length],
                                 received, what)
                continue
            self.assertIsInstance(error, IOError, what)
            if lie is None and path not in self.PEER_LIES:
                self.fail('%s failed with nobody lying: %s' % (what, error))
            # A short body: the client can tell it is not the image.
            self.assertLess(len(received), length, what)
            if (offset, length) != (0, self.SIZE) and (
                    kind != delivery.PEER_RANGE):
                # A range gets no byte nobody verified.
                self.assertEqual(b'', received, what)


PATHS = [name[len('read_'):] for name in vars(ReadPaths)
         if name.startswith('read_')]
for _path in PATHS:
    for _lie in [None] + sorted(LIES):
        def _test(self, path=_path, lie=_lie):
            self.check(path, lie)
        _test.__name__ = 'test_%s_%s' % (_path, _lie or 'honest')
        setattr(TestEveryReadPathAgainstLies, _test.__name__, _test)
del _test, _path, _lie


class TestNothingElseLeavesTheDriver(testtools.TestCase):

    def test_a_stream_of_another_kind_is_refused_and_closed(self):
        closed = []

        class Raw:
            def __iter__(self):
                return iter([b'unverified'])

            def close(self):
                closed.append(True)
        self.assertRaises(TypeError, delivery.checked, Raw())
        self.assertEqual([True], closed)

    def test_only_this_module_builds_a_delivery(self):
        self.assertRaises(TypeError, delivery.Delivery, delivery.HASHED,
                          iter([b'unverified']))
        package = os.path.dirname(delivery.__file__)
        builders = []
        for folder, _, names in os.walk(package):
            for name in names:
                path = os.path.join(folder, name)
                if not name.endswith('.py') or path == delivery.__file__:
                    continue
                with open(path) as f:
                    text = f.read()
                if '_BUILDER' in text or '_delivery(' in text:
                    builders.append(path)
        self.assertEqual([], builders)

    def test_every_kind_is_a_delivery(self):
        expected = cache.Expected(IMAGE, 3, 'sha512', None)
        data = rt.FakeStream(rt.FakeCentral(b'abc'), (c for c in [b'abc']))
        for stream in (delivery.empty(),
                       delivery.from_central(data, expected, 0, 3),
                       delivery.from_central(data, expected, 1, 2),
                       delivery.following(iter(()), IMAGE)):
            self.assertIs(stream, delivery.checked(stream))


class TestHoldBack(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())
        self.data = os.urandom(100 * KiB)
        raw = rt.record_of(self.data).raw
        self.expected = cache.expected_from_record(raw)

    def stream(self, sent, expected=None):
        chunks = [sent[i:i + 7 * KiB] for i in range(0, len(sent), 7 * KiB)]
        data = rt.FakeStream(rt.FakeCentral(b''), (c for c in chunks))
        return delivery.whole_image(data, expected or self.expected)

    def test_the_right_image_passes_whole(self):
        self.assertEqual(self.data, b''.join(self.stream(self.data)))

    def test_a_wrong_last_byte_is_never_released(self):
        received, error = rt.drain(self.stream(_flip(self.data,
                                                     len(self.data) - 1)))
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        self.assertEqual(self.data[:-delivery.HOLD_BACK], received)

    def test_a_record_without_a_usable_hash_is_checked_by_size(self):
        unhashed = cache.Expected(IMAGE, len(self.data), 'md5', None)
        self.assertEqual(self.data, b''.join(self.stream(self.data,
                                                         unhashed)))
        received, error = rt.drain(self.stream(self.data[:-1], unhashed))
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        self.assertIn('cannot be verified by hash', self.log.output)

    def test_the_mismatch_is_counted_once(self):
        counted = []
        chunks = [self.data[:-1] + b'?']
        data = rt.FakeStream(rt.FakeCentral(b''), (c for c in chunks))
        stream = delivery.whole_image(data, self.expected,
                                      on_mismatch=lambda: counted.append(1))
        rt.drain(stream)
        self.assertEqual([1], counted)


class TestStoreWithoutACache(base.StoreTestCase):
    """The path without remote_glance_cache_dir: Store.get itself."""

    def test_every_lie_of_the_same_length_ends_short(self):
        data = os.urandom(64 * KiB)
        for lie in ('last-byte', 'other-bytes'):
            body = self.serve_record(size=len(data), **base.hashes_of(data))
            self.serve_data(body['id'], LIES[lie](data))
            chunks, size = self.store.get(self.location(body['id']))
            received, error = rt.drain(chunks)
            self.assertIsInstance(error, IOError, lie)
            self.assertLess(len(received), size, lie)
