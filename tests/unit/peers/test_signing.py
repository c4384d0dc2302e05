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

"""Unit tests of peers/signing.py: the signatures of requests and the
nonces a node remembers.
"""

import os
import time

import fixtures
import testtools

from glance_store_remote.peers import signing
from tests.unit.peers import base

SECRET = base.SECRET
IMAGE = base.IMAGE
KiB = base.KiB


class TestSignature(testtools.TestCase):

    PATH = signing.peer_path('central', IMAGE)
    NODE = 'http://node-1:9292'

    def check(self, header, method='GET', path=PATH, target=NODE,
              range_header=None, secret=SECRET, **kw):
        return signing.check_auth(secret, method, target, path, range_header,
                                  header, **kw)

    def test_a_fresh_signature_is_accepted(self):
        header = signing.auth_header(SECRET, 'GET', self.PATH, self.NODE)
        self.assertTrue(self.check(header))
        # A trailing slash of the peer URL names the same node.
        self.assertTrue(self.check(header, target=self.NODE + '/'))

    def test_another_secret_method_or_path_is_refused(self):
        header = signing.auth_header(SECRET, 'GET', self.PATH, self.NODE)
        self.assertFalse(self.check(header, secret=SECRET + 'x'))
        self.assertFalse(self.check(header, method='HEAD'))
        self.assertFalse(self.check(header, path=self.PATH + 'x'))

    def test_a_signature_is_for_one_node_and_one_range(self):
        header = signing.auth_header(SECRET, 'GET', self.PATH, self.NODE,
                                     'bytes=0-99')
        self.assertTrue(self.check(header, range_header='bytes=0-99'))
        self.assertFalse(self.check(header, target='http://node-2:9292'))
        self.assertFalse(self.check(header, target='http://vip:9292'))
        self.assertFalse(self.check(header))
        self.assertFalse(self.check(header, range_header='bytes=0-'))

    def test_a_nonce_is_used_once(self):
        seen = signing.Nonces(None)
        header = signing.auth_header(SECRET, 'GET', self.PATH, self.NODE)
        self.assertTrue(self.check(header, first_use=seen.first_use))
        self.assertFalse(self.check(header, first_use=seen.first_use))
        # A forged header never reaches the nonces.
        forged = header[:-1] + ('0' if header[-1] != '0' else '1')
        self.assertFalse(self.check(forged, first_use=self.fail))

    def test_nonces_are_shared_by_the_processes_of_a_node(self):
        folder = self.useFixture(fixtures.TempDir()).path
        now = [1000.0]
        one = signing.Nonces(folder, clock=lambda: now[0])
        two = signing.Nonces(folder, clock=lambda: now[0])
        self.assertTrue(one.first_use('a' * 32, 1010))
        self.assertFalse(two.first_use('a' * 32, 1010))
        self.assertTrue(two.first_use('b' * 32, 1030))
        # Forgotten once expired (an expired request is refused anyway).
        now[0] = 1020.0
        self.assertTrue(one.first_use('c' * 32, 1040))
        self.assertEqual(['1030-' + 'b' * 32, '1040-' + 'c' * 32],
                         sorted(os.listdir(folder)))

    def test_expired_or_far_future_signatures_are_refused(self):
        self.assertLessEqual(signing.MAX_EXPIRY, 30)
        now = time.time()
        old = signing.auth_header(SECRET, 'GET', self.PATH, self.NODE,
                                  now=now - signing.SIGNATURE_TTL - 5)
        self.assertFalse(self.check(old, now=now))
        far = int(now + signing.MAX_EXPIRY + 10)
        nonce = 'f' * 32
        header = '%d:%s:%s' % (far, nonce, signing.sign(
            SECRET, 'GET', self.NODE, self.PATH, None, far, nonce))
        self.assertFalse(self.check(header, now=now))
        self.assertTrue(self.check(header, now=far - 5))

    def test_malformed_headers_and_no_secret_are_refused(self):
        good = signing.auth_header(SECRET, 'GET', self.PATH, self.NODE)
        for header in (None, '', 'x', '12', 'abc:def', ':', '1:\u00e9',
                       '\u00b2:x', '\u00b2' + good[1:], good + 'x',
                       good.upper(), ' ' + good):
            self.assertFalse(self.check(header), header)
        self.assertFalse(self.check(good, secret=None))
        self.assertFalse(self.check(good, target=None))
