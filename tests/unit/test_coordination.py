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

"""Unit tests of coordination.py with tooz's file driver (a real tooz
coordinator on a temporary directory); the etcd driver is exercised in
tests/functional/test_site_coordination.py.
"""

import os
import signal
import sys
import threading
import time
from unittest import mock

import fixtures
import testtools

from glance_store_remote import coordination

SECRET = 'a-site-secret-0123456789'


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

    def site(self, peer_url, url=None, secret=SECRET):
        site = coordination.Site('central', url or self.url, peer_url,
                                 clock=self.clock, secret=secret)
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
            sorted(site.members())  # joins the site
        self.assertEqual(['http://b', 'http://c'], sorted(a.members()))
        self.assertEqual(['http://a', 'http://b'], sorted(c.members()))
        self.assertEqual(['http://a', 'http://c'], sorted(b.members()))

    def test_a_filler_is_advertised_until_it_withdraws(self):
        a, b = self.site('http://a'), self.site('http://b')
        sorted(b.members())
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
        self.assertEqual(['http://b'], sorted(a.members()))

    def test_repr_never_shows_the_url(self):
        site = self.site('http://a', url='etcd3+http://user:pw@h:2379')
        self.assertNotIn('pw', repr(site))


class TestTrust(SiteTestCase):
    """Only members signed with the site key count: whoever can write to
    the coordinator cannot add a node nor claim a lock for one.
    """

    def intruder(self, member, capabilities):
        """A member written by someone who can write to the coordinator,
        not by a node of the site.
        """
        from tooz import coordination as tooz_coordination
        raw = tooz_coordination.get_coordinator(self.url, member.encode())
        raw.start()
        self.addCleanup(raw.stop)
        try:
            raw.create_group(b'remote-glance.central').get()
        except tooz_coordination.GroupAlreadyExist:
            pass
        raw.join_group(b'remote-glance.central',
                       capabilities=capabilities).get()
        return raw

    def test_unsigned_forged_or_copied_members_are_ignored(self):
        a, b = self.site('http://a'), self.site('http://b')
        sorted(b.members())
        self.assertEqual(['http://b'], sorted(a.members()))
        b_caps = [c for c in a.signed_members()
                  if c['peer_url'] == 'http://b'][0]
        self.intruder('evil-1', {'peer_url': 'http://evil', 'filling': []})
        forged = {'peer_url': 'http://evil2', 'filling': [],
                  'held': {}, 'member': 'evil-2'}
        forged['sig'] = coordination.member_mac('another-key-0123456789',
                                                'central', forged)
        self.intruder('evil-2', forged)
        # b's own signed entry, copied under another member ID.
        self.intruder('evil-3', dict(b_caps, peer_url='http://b'))
        self.assertEqual(['http://b'], sorted(a.members()))
        for member in ('evil-1', 'evil-2', 'evil-3'):
            self.assertIn("site member '%s' is not signed" % member,
                          self.log.output)
        # Logged once each.
        sorted(a.members())
        self.assertEqual(3, self.log.output.count('is not signed'))

    def test_a_site_without_the_key_trusts_no_member(self):
        a = self.site('http://a', secret=None)
        b = self.site('http://b')
        sorted(b.members())
        self.assertEqual([], sorted(a.members()))
        # Nor do the others trust it.
        self.assertEqual([], sorted(b.members()))

    def test_a_claimed_lock_names_its_holder(self):
        a, b = self.site('http://a'), self.site('http://b')
        lock = a.try_lock('sync', claim=True)
        self.assertIsNone(b.try_lock('sync'))
        holder = b.holder('sync')
        self.assertEqual(('http://a', os.getpid()),
                         (holder['peer_url'], holder['pid']))
        self.assertLess(holder['age'], 5)
        lock.release()
        self.assertIsNone(b.holder('sync'))
        # A lock taken without a claim (or by an intruder) has no holder
        # (breaking it is etcd's: test_site_wan).
        plain = a.try_lock('wan-slot-0')
        self.assertIsNone(b.try_lock('wan-slot-0'))
        self.assertIsNone(b.holder('wan-slot-0'))
        plain.release()

    def test_a_renewed_claim_is_young_again(self):
        a, b = self.site('http://a'), self.site('http://b')
        lock = a.try_lock('wan-slot-1', claim=True)
        with mock.patch.object(coordination.time, 'time',
                               return_value=time.time() + 100):
            self.assertGreater(b.holder('wan-slot-1')['age'], 90)
            lock.renew()
            self.assertLess(b.holder('wan-slot-1')['age'], 5)
        lock.release()


class TestFork(SiteTestCase):

    def test_a_worker_forked_during_a_slow_join_does_not_hang(self):
        # A slow coordinator: the join at start takes 3 s in the parent.
        site = self.site('http://a')
        real_start = site._start
        parent = os.getpid()
        joining = threading.Event()

        def slow_start(*args):
            if os.getpid() == parent:
                joining.set()
                time.sleep(3)
            return real_start(*args)
        site._start = slow_start
        thread = site.join_in_background()
        self.assertTrue(joining.wait(10))
        # The site's lock is not held across the call to the coordinator.
        started = time.monotonic()
        with site._lock:
            pass
        self.assertLess(time.monotonic() - started, 1)
        child = os.fork()
        if child == 0:  # the forked worker
            code = 1
            try:
                lock = site.try_lock('img')
                code = 0 if lock is not None else 2
                lock.release()
                site.stop()
            finally:
                os._exit(code)
        deadline = time.monotonic() + 20
        status = None
        while time.monotonic() < deadline:
            pid, status = os.waitpid(child, os.WNOHANG)
            if pid:
                break
            time.sleep(0.05)
        else:
            os.kill(child, signal.SIGKILL)
            os.waitpid(child, 0)
            self.fail('the forked worker hangs on the site lock')
        self.assertEqual(0, os.waitstatus_to_exitcode(status))
        thread.join(10)


class TestFailures(SiteTestCase):

    def test_an_unreachable_coordinator_is_logged_once_and_recovers(self):
        a = self.site('http://a')
        real_start = a._start
        a._start = mock.Mock(side_effect=OSError('connection refused'))
        for _ in range(3):
            self.assertRaises(coordination.Unavailable, a.try_lock, 'img')
            self.assertRaises(coordination.Unavailable, a.members)
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
