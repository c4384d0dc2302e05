"""Unit tests of coordination.py with tooz's file driver (a real tooz
coordinator on a temporary directory); the etcd driver is exercised in
tests/functional/test_site_coordination.py.
"""

import sys
from unittest import mock

import fixtures
import testtools

from glance_store_remote import coordination


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


class SiteTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.log = self.useFixture(fixtures.FakeLogger(level='DEBUG'))
        self.url = 'file://' + self.useFixture(fixtures.TempDir()).path
        self.clock = FakeClock()

    def site(self, peer_url, url=None):
        site = coordination.Site('central', url or self.url, peer_url,
                                 clock=self.clock)
        self.addCleanup(site.stop)
        return site


class TestLocksAndMembers(SiteTestCase):

    def test_one_node_holds_an_image_lock_at_a_time(self):
        a, b = self.site('http://a'), self.site('http://b')
        held = a.try_lock('img-1')
        self.assertIsNotNone(held)
        self.assertIsNone(b.try_lock('img-1'))
        # Another image is another lock.
        other = b.try_lock('img-2')
        self.assertIsNotNone(other)
        held.release()
        held.release()  # idempotent
        again = b.try_lock('img-1')
        self.assertIsNotNone(again)
        again.release()
        other.release()

    def test_peer_urls_are_the_other_members(self):
        a, b = self.site('http://a'), self.site('http://b')
        c = self.site('http://c')
        for site in (a, b, c):
            site.peer_urls()  # joins the site
        self.assertEqual(['http://b', 'http://c'], a.peer_urls())
        self.assertEqual(['http://a', 'http://b'], c.peer_urls())
        self.assertEqual(['http://a', 'http://c'], b.peer_urls())

    def test_a_filler_is_advertised_until_it_withdraws(self):
        a, b = self.site('http://a'), self.site('http://b')
        b.peer_urls()
        a.advertise('img-1')
        a.advertise('img-2')
        self.assertEqual({'http://a': {'img-1', 'img-2'}}, b.members())
        a.advertise('img-1', filling=False)
        self.assertEqual({'http://a': {'img-2'}}, b.members())

    def test_a_forked_child_starts_its_own_coordinator(self):
        a = self.site('http://a')
        a.try_lock('img').release()
        first = a._coordinator
        a._pid = -1  # as seen from a forked child
        a.try_lock('img').release()
        self.assertIsNot(first, a._coordinator)

    def test_a_node_joins_in_the_background_at_start(self):
        a, b = self.site('http://a'), self.site('http://b')
        thread = b.join_in_background()
        thread.join(30)
        self.assertFalse(thread.is_alive())
        # b is a member before it ever filled or asked anything.
        self.assertEqual(['http://b'], a.peer_urls())

    def test_repr_never_shows_the_url(self):
        site = self.site('http://a', url='etcd3+http://user:pw@h:2379')
        self.assertNotIn('pw', repr(site))


class TestFailures(SiteTestCase):

    def test_an_unreachable_coordinator_is_logged_once_and_recovers(self):
        a = self.site('http://a')
        real_start = a._start
        a._start = mock.Mock(side_effect=OSError('connection refused'))
        for _ in range(3):
            self.assertRaises(coordination.Unavailable, a.try_lock, 'img')
            self.assertRaises(coordination.Unavailable, a.peer_urls)
            self.assertRaises(coordination.Unavailable, a.advertise, 'img')
        # Within the retry interval, no new attempt.
        self.assertEqual(1, a._start.call_count)
        self.assertFalse(a.available)
        self.assertEqual(1, self.log.output.count('site coordinator failed'))
        self.clock.now += coordination.RETRY_INTERVAL + 1
        self.assertRaises(coordination.Unavailable, a.try_lock, 'img')
        self.assertEqual(2, a._start.call_count)
        self.assertEqual(1, self.log.output.count('site coordinator failed'))
        a._start = real_start
        self.clock.now += coordination.RETRY_INTERVAL + 1
        lock = a.try_lock('img')
        self.assertIsNotNone(lock)
        lock.release()
        self.assertTrue(a.available)
        self.assertIn('site coordinator is back', self.log.output)

    def test_a_failing_lock_call_degrades_and_drops_the_coordinator(self):
        a = self.site('http://a')
        a.try_lock('img').release()
        broken = mock.Mock()
        broken.get_lock.return_value.acquire.side_effect = RuntimeError(
            'etcd gone')
        a._coordinator = broken
        self.assertRaises(coordination.Unavailable, a.try_lock, 'img')
        self.assertIsNone(a._coordinator)
        self.assertIn('site coordinator failed (RuntimeError: etcd gone)',
                      self.log.output)

    def test_credentials_in_errors_are_redacted(self):
        a = self.site('http://a')
        a._start = mock.Mock(side_effect=OSError(
            'cannot reach etcd3+http://user:sekrit@h:2379'))
        self.assertRaises(coordination.Unavailable, a.try_lock, 'img')
        self.assertNotIn('sekrit', self.log.output)

    def test_a_release_that_fails_is_not_raised(self):
        lock = mock.Mock()
        lock.release.side_effect = RuntimeError('gone')
        coordination.SiteLock(None, lock, 'img').release()

    def test_check_installed_names_the_package(self):
        with mock.patch.dict(sys.modules, {'tooz': None,
                                           'tooz.coordination': None}):
            e = self.assertRaises(ImportError,
                                  coordination.check_installed)
        self.assertIn('needs the Python package tooz', str(e))
