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

"""Unit tests of site_source.py: where a fill of a coordinated site reads
from (fake peers, real tooz locks and groups through its file driver
standing in for etcd, which the functional site tier runs for real), how
the site asks central about an image once, readthrough's hook, and the
store's configuration of a site.
"""

import hashlib
import os
import sys
from unittest import mock

import fixtures
from glance_store import exceptions as gs_exceptions
from oslo_config import cfg
import testtools

from glance_store_remote import cache
from glance_store_remote import coordination
from glance_store_remote import exceptions
from glance_store_remote.peers import client
from glance_store_remote import readthrough
from glance_store_remote import site_source
from tests.unit import base
from tests.unit.peers import base as peers_base
from tests.unit import read_fakes as rt

SECRET = peers_base.SECRET
IMAGE = rt.IMAGE
KiB = 1024


class FakePeer:
    def __init__(self, url, state, data, fail_at=None, record=None):
        self.url = url
        self._state = state
        self.data = data
        self.fail_at = fail_at
        self.reads = []
        self.record = record
        self.asked = []

    def held_record(self, image_id):
        return self.record if self._state else None

    def central_record(self, image_id):
        self.asked.append(image_id)
        if self.record is None:
            raise client.PeerUnreachable(self.url, 'down')
        return self.record, 2.0

    def state(self, image_id):
        return self._state

    def open_data(self, record, offset=0, length=None):
        self.reads.append((offset, length))
        if self._state is None:
            raise exceptions.UpstreamUnavailable('central', 'not held')
        return self._chunks(offset, offset + length)

    def open_verified_range(self, record, offset, length):
        self.reads.append((offset, length))
        if self._state != 'complete':
            raise exceptions.UpstreamUnavailable('central', 'not held')
        digest = hashlib.sha256(self.data[offset:offset + length])
        return self._chunks(offset, offset + length), digest.hexdigest()

    def _chunks(self, pos, end):
        while pos < end:
            if self.fail_at is not None and pos >= self.fail_at:
                raise exceptions.UpstreamStreamError('central', 'peer died')
            stop = min(end, pos + 8 * KiB)
            if self.fail_at is not None:
                stop = min(stop, max(self.fail_at, pos + 1))
            yield self.data[pos:stop]
            pos = stop


class TestSiteSource(testtools.TestCase):

    SIZE = 100 * KiB

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.log = self.useFixture(fixtures.FakeLogger(level='INFO'))
        self.url = 'file://' + self.useFixture(fixtures.TempDir()).path
        self.data = os.urandom(self.SIZE)
        self.record = rt.record_of(self.data)
        self.central = rt.FakeCentral(self.data)
        self.peers = {}
        self.useFixture(fixtures.MockPatchObject(site_source, 'FIND_TIMEOUT',
                                                 0.3))

    def site(self, peer_url):
        site = coordination.Site('central', self.url, peer_url,
                                 secret=SECRET)
        sorted(site.members())  # joins
        self.addCleanup(site.stop)
        return site

    def relay(self, site):
        return site_source.RecordRelay(site, lambda url: self.peers[url])

    def source(self, site):
        return site_source.SiteSource(
            site, self.central, SECRET, 64 * KiB, 10,
            make_peer=lambda url: self.peers[url])

    def test_the_lock_holder_reads_central_and_releases_at_close(self):
        me, other = self.site('http://me'), self.site('http://other')
        self.peers['http://other'] = FakePeer('http://other', None, b'')
        stream = self.source(me).open_fill(self.record, 0, self.SIZE)
        self.assertIsNone(other.try_lock(IMAGE))
        self.assertEqual(self.data, b''.join(stream))
        stream.close()
        self.assertEqual([(0, self.SIZE)], self.central.calls)
        lock = other.try_lock(IMAGE)
        self.assertIsNotNone(lock)
        lock.release()

    def test_a_node_without_the_lock_reads_the_filling_peer(self):
        me, other = self.site('http://me'), self.site('http://other')
        self.peers['http://other'] = peer = FakePeer(
            'http://other', 'filling', self.data)
        held = other.try_lock(IMAGE)
        self.addCleanup(held.release)
        other.advertise(IMAGE)
        stream = self.source(me).open_fill(self.record, 10, self.SIZE - 10)
        self.assertEqual(self.data[10:], b''.join(stream))
        stream.close()
        self.assertEqual([], self.central.calls)
        self.assertEqual([(10, self.SIZE - 10)], peer.reads)

    def test_a_member_not_signed_by_the_site_is_never_read(self):
        # Whoever can write to the coordinator adds a "node" that says it
        # fills the image, and holds the image's site lock.
        me = self.site('http://me')
        intruder = coordination.Site('central', self.url, 'http://evil',
                                     secret='not-the-site-key-0123')
        self.addCleanup(intruder.stop)
        held = intruder.try_lock(IMAGE)
        self.addCleanup(held.release)
        intruder.advertise(IMAGE)
        self.peers['http://evil'] = evil = FakePeer(
            'http://evil', 'complete', b'x' * self.SIZE,
            record=self.record)
        source = self.source(me)
        stream = source.open_fill(self.record, 0, self.SIZE)
        self.assertEqual(self.data, b''.join(stream))
        stream.close()
        self.assertEqual(([], 1), (evil.reads, len(self.central.calls)))
        self.assertIsNone(source.held_record(IMAGE))
        self.assertEqual([], evil.asked)

    def test_a_peer_filling_without_the_lock_is_not_read(self):
        # Both wait for a source: reading each other would only time out.
        me, other = self.site('http://me'), self.site('http://other')
        self.peers['http://other'] = peer = FakePeer(
            'http://other', 'filling', self.data)
        held = other.try_lock(IMAGE)
        held.release()
        third = self.site('http://third')
        held = third.try_lock(IMAGE)
        self.addCleanup(held.release)
        self.peers['http://third'] = FakePeer('http://third', None, b'')
        stream = self.source(me).open_fill(self.record, 0, self.SIZE)
        self.assertEqual(self.data, b''.join(stream))
        self.assertEqual([], peer.reads)
        self.assertEqual(1, len(self.central.calls))

    def test_the_filler_advertises_itself_until_the_stream_closes(self):
        me, other = self.site('http://me'), self.site('http://other')
        self.peers['http://other'] = FakePeer('http://other', None, b'')
        stream = self.source(me).open_fill(self.record, 0, self.SIZE)
        self.assertEqual({'http://me': {IMAGE}}, other.members())
        b''.join(stream)
        stream.close()
        self.assertEqual({'http://me': set()}, other.members())

    def test_the_lock_holder_prefers_a_complete_copy_of_a_peer(self):
        me, _ = self.site('http://me'), self.site('http://other')
        self.peers['http://other'] = FakePeer('http://other', 'complete',
                                              self.data)
        stream = self.source(me).open_fill(self.record, 0, self.SIZE)
        self.assertEqual(self.data, b''.join(stream))
        self.assertEqual([], self.central.calls)

    def test_a_peer_failing_part_way_leaves_the_rest_to_central(self):
        me, _ = self.site('http://me'), self.site('http://other')
        self.peers['http://other'] = FakePeer(
            'http://other', 'complete', self.data, fail_at=30 * KiB)
        stream = self.source(me).open_fill(self.record, 0, self.SIZE)
        self.assertEqual(self.data, b''.join(stream))
        self.assertEqual([(30 * KiB, self.SIZE - 30 * KiB)],
                         self.central.calls)
        self.assertIn('the rest comes from central', self.log.output)

    def test_a_lock_held_with_no_peer_showing_falls_back_to_central(self):
        me, other = self.site('http://me'), self.site('http://other')
        self.peers['http://other'] = FakePeer('http://other', None, b'')
        held = other.try_lock(IMAGE)
        self.addCleanup(held.release)
        stream = self.source(me).open_fill(self.record, 0, self.SIZE)
        self.assertEqual(self.data, b''.join(stream))
        self.assertEqual(1, len(self.central.calls))
        self.assertIn('no peer shows the image', self.log.output)

    def test_an_unavailable_coordinator_means_central(self):
        me = self.site('http://me')
        me.try_lock = mock.Mock(side_effect=coordination.Unavailable('x'))
        stream = self.source(me).open_fill(self.record, 0, self.SIZE)
        self.assertEqual(self.data, b''.join(stream))
        self.assertEqual(1, len(self.central.calls))

    def test_every_node_asks_central_about_an_image_through_one_node(self):
        urls = ['http://node-%d' % n for n in range(3)]
        sites = [self.site(url) for url in urls]
        for url in urls:
            self.peers[url] = FakePeer(url, None, b'', record=self.record)
        fetched = []

        def fetch(image_id):
            fetched.append(image_id)
            return self.record
        for site in sites:
            self.assertIs(self.record, self.relay(site).central_record(
                IMAGE, fetch)[0])
        asked = [url for url in urls if self.peers[url].asked]
        # The owner fetched itself; the other two asked the owner.
        self.assertEqual(1, len(fetched))
        self.assertEqual(1, len(asked))
        self.assertEqual(2, len(self.peers[asked[0]].asked))

    def test_an_owner_that_cannot_be_asked_means_central(self):
        me = self.site('http://me')
        others = [self.site('http://other-%d' % n) for n in range(4)]
        for site in others:
            self.peers[site.peer_url] = FakePeer(site.peer_url, None, b'')
        fetched = []
        relay = self.relay(me)
        for n in range(8):
            # Over several IDs the owner is sometimes another node.
            image_id = '%08d-0000-4000-8000-000000000000' % n
            record, age = relay.central_record(
                image_id, lambda i: fetched.append(i) or self.record)
            self.assertEqual((self.record, 0.0), (record, age))
        self.assertEqual(8, len(fetched))
        self.assertIn('cannot be asked', self.log.output)

    def test_the_record_of_an_image_another_node_holds(self):
        me, _, _ = (self.site('http://me'), self.site('http://a'),
                    self.site('http://b'))
        self.peers['http://a'] = FakePeer('http://a', None, b'')
        self.peers['http://b'] = FakePeer('http://b', 'complete', self.data,
                                          record=self.record)
        self.assertIs(self.record, self.source(me).held_record(IMAGE))
        self.peers['http://b']._state = None
        self.assertIsNone(self.source(me).held_record(IMAGE))
        me.members = mock.Mock(side_effect=coordination.Unavailable('x'))
        self.assertIsNone(self.source(me).held_record(IMAGE))

    def test_central_refusing_releases_the_lock(self):
        me, other = self.site('http://me'), self.site('http://other')
        self.peers['http://other'] = FakePeer('http://other', None, b'')
        self.central.down = True
        self.assertRaises(exceptions.UpstreamUnavailable,
                          self.source(me).open_fill, self.record, 0,
                          self.SIZE)
        lock = other.try_lock(IMAGE)
        self.assertIsNotNone(lock)
        lock.release()


class _NodeWithOnePeer(testtools.TestCase):
    """A coordinated node reading through readthrough.py, with one peer."""

    SIZE = 200 * KiB

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.log = self.useFixture(fixtures.FakeLogger(level='INFO'))
        url = 'file://' + self.useFixture(fixtures.TempDir()).path
        self.data = os.urandom(self.SIZE)
        self.record = rt.record_of(self.data)
        self.central = rt.FakeCentral(self.data)
        lie = bytearray(self.data)
        lie[1234] ^= 0xff
        self.liar = FakePeer('http://liar', 'complete', bytes(lie))
        me = coordination.Site('central', url, 'http://me', secret=SECRET)
        liar_site = coordination.Site('central', url, 'http://liar',
                                      secret=SECRET)
        for site in (liar_site, me):
            sorted(site.members())  # joins (the liar first: me sees it)
            self.addCleanup(site.stop)
        self.source = site_source.SiteSource(
            me, self.central, SECRET, 64 * KiB, 10,
            make_peer=lambda url: self.liar)
        self.cache = cache.Cache(self.useFixture(fixtures.TempDir()).path,
                                 4 * 1024 * KiB)
        self.reader = readthrough.ReadThrough(
            self.cache, self.central, chunk_size=16 * KiB, stall_timeout=5,
            site=self.source)

    def read(self):
        return rt.drain(self.reader.read(self.record, 0, self.SIZE))

    def wait_fill_threads(self):
        """Join the fill threads: a fill leaves wait_for_fills' list before
        it releases its lock, and a reader arriving in between would follow
        the failed fill (and share its verdict).
        """
        self.reader.wait_for_fills(10)
        rt.open_fds()


class TestReadThroughHook(_NodeWithOnePeer):
    """A fill of a coordinated node through readthrough.py."""

    def test_a_lying_peer_is_caught_then_central_serves(self):
        received, error = self.read()
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        # Never complete-looking: at most all but the held-back byte (none
        # when the fill was discarded before the reader's first byte).
        self.assertLess(len(received), self.SIZE)
        self.wait_fill_threads()
        self.assertFalse(os.path.exists(self.cache.data_path(IMAGE)))
        self.assertIn('that peer is not read from', self.log.output)
        self.assertEqual([], self.central.calls)
        # The next read skips the liar: central's bytes, committed.
        received, error = self.read()
        self.assertEqual(None, error)
        self.assertTrue(received == self.data)
        self.reader.wait_for_fills(10)
        self.assertEqual([(0, self.SIZE)], self.central.calls)
        with open(self.cache.data_path(IMAGE), 'rb') as f:
            self.assertEqual(hashlib.sha512(self.data).hexdigest(),
                             hashlib.sha512(f.read()).hexdigest())

    def test_an_honest_peer_fills_the_cache_without_central(self):
        self.liar.data = self.data
        received, error = self.read()
        self.assertEqual((self.data, None), (received, error))
        self.reader.wait_for_fills(10)
        self.assertTrue(os.path.exists(self.cache.data_path(IMAGE)))
        self.assertEqual([], self.central.calls)


class TestReadsPastTheCacheAskTheSiteFirst(_NodeWithOnePeer):
    """A pass-through (no room) and a range of an image another node holds
    complete come from that node, also while central is down; its bytes are
    checked (the whole image against central's record, a range against the
    hash the peer signed).
    """

    def setUp(self):
        super().setUp()
        self.holder = self.liar
        self.holder.data = self.data
        self.central.down = True

    def test_a_range_comes_from_the_node_that_holds_the_image(self):
        chunks = self.reader.read(self.record, 1000, 5000)
        self.assertEqual('peer-range', chunks.kind)
        self.assertEqual(self.data[1000:6000], b''.join(chunks))
        self.assertIn((1000, 5000), self.holder.reads)
        self.assertEqual([], self.central.calls)
        # The fill that warms the cache meanwhile reads the peer too.
        self.reader.wait_for_fills(10)
        self.assertTrue(os.path.exists(self.cache.data_path(IMAGE)))
        self.assertEqual(5000 + self.SIZE,
                         self.cache.counters()['bytes_from_peers'])

    def test_no_room_passes_through_from_the_node_that_holds_it(self):
        self.useFixture(fixtures.MockPatchObject(
            self.cache, 'reserve', return_value=False))
        chunks = self.reader.read(self.record, 0, self.SIZE)
        self.assertEqual('hashed', chunks.kind)
        self.assertEqual(self.data, b''.join(chunks))
        self.assertEqual([], self.central.calls)

    def test_a_range_whose_bytes_do_not_match_ends_short(self):
        honest = self.holder.open_verified_range

        def altered(record, offset, length):
            chunks, digest = honest(record, offset, length)
            return (bytes([b ^ 1]) for chunk in chunks for b in chunk), digest
        self.holder.open_verified_range = altered
        received, error = rt.drain(self.reader.read(self.record, 1000, 50))
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        self.assertLess(len(received), 50)
        self.assertIn('that peer is not read from', self.log.output)

    def test_no_holder_is_remembered_for_a_few_seconds(self):
        self.holder._state = None
        asked = []
        state = self.holder.state
        self.holder.state = lambda image_id: asked.append(1) or state(
            image_id)
        for _ in range(3):
            self.assertIsNone(self.source.open_held(self.record, 10, 10))
        self.assertEqual(1, len(asked))

    def test_a_range_too_large_to_hash_first_is_not_asked_of_a_peer(self):
        self.useFixture(fixtures.MockPatchObject(site_source,
                                                 'MAX_PEER_RANGE', 100))
        self.assertIsNone(self.source.open_held(self.record, 0, 101))
        self.assertIsNotNone(self.source.open_held(self.record, 0, 100))
        self.assertEqual([(0, 100)], self.holder.reads)

    def test_nobody_holds_it_and_central_down_is_unavailable(self):
        self.holder._state = None
        self.assertRaises(exceptions.UpstreamUnavailable, self.reader.read,
                          self.record, 1000, 5000)


class TestStoreConfiguration(base.StoreTestCase):
    """store.py's hook: a coordinated site is configured, or refused with
    a clear reason.
    """

    def setUp(self):
        super().setUp()
        # No coordinator left running after the test (its files and threads
        # would outlive it in this process): coordination's tests join.
        self.joins = self.useFixture(fixtures.MockPatchObject(
            coordination.Site, 'join_in_background')).mock

    def site_store(self, **options):
        folder = self.useFixture(fixtures.TempDir()).path
        return self.make_store(
            auth_type='none', endpoint_override=base.CENTRAL,
            remote_glance_cache_dir=folder,
            remote_glance_coordination_url='file://' + folder, **options)

    def test_off_by_default(self):
        self.assertIsNone(self.make_cached_store()._readthrough.site)

    def test_a_site_reads_through_a_site_source(self):
        store_ = self.site_store(remote_glance_peer_secret=SECRET,
                                 remote_glance_peer_url='http://node-1:9292')
        source = store_._readthrough.site
        self.assertIsInstance(source, site_source.SiteSource)
        self.assertEqual('http://node-1:9292', source.site.peer_url)
        # It joins the site at start, signed with the site key, and asks
        # central through it.
        self.joins.assert_called_once_with()
        self.assertEqual(SECRET, source.site._secret)
        relay = store_.central.record_relay.__self__
        self.assertIsInstance(relay, site_source.RecordRelay)
        self.assertIs(source.site, relay.site)

    def test_the_peer_url_defaults_to_worker_self_reference_url(self):
        self.conf.register_opt(cfg.StrOpt('worker_self_reference_url'))
        self.config_fixture.config(
            worker_self_reference_url='http://node-2:9292')
        store_ = self.site_store(remote_glance_peer_secret=SECRET)
        self.assertEqual('http://node-2:9292',
                         store_._readthrough.site.site.peer_url)

    def test_refused_without_a_secret_a_long_enough_one_or_a_peer_url(self):
        for options, words in (
                ({}, 'needs remote_glance_peer_secret'),
                ({'remote_glance_peer_secret': 'short'},
                 'needs remote_glance_peer_secret'),
                ({'remote_glance_peer_secret': SECRET},
                 'needs remote_glance_peer_url')):
            e = self.assertRaises(gs_exceptions.BadStoreConfiguration,
                                  self.site_store, **options)
            self.assertIn(words, str(e))
            self.assertNotIn(SECRET, str(e))

    def test_refused_without_tooz(self):
        with mock.patch.dict(sys.modules, {'tooz': None,
                                           'tooz.coordination': None}):
            e = self.assertRaises(
                gs_exceptions.BadStoreConfiguration, self.site_store,
                remote_glance_peer_secret=SECRET,
                remote_glance_peer_url='http://node-1:9292')
        self.assertIn('needs the Python package tooz', str(e))
