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

"""Unit tests of cmd/cache.py and the prefetch: what prefetch and cache
verify report for the odd image (with a fake central). Their talk with
central is proven against the real lab in tests/functional/test_cmd.py."""

import hashlib
import json
from unittest import mock

import fixtures

from glance_store_remote import cache
from glance_store_remote import coordination
from glance_store_remote.peers import client
from glance_store_remote import upstream
from tests.unit.cmd import base as cli_base


class TestCacheCommands(cli_base.CliTestCase):
    """prefetch and cache verify on a real cache directory; central is a
    mock that fails the test if data is asked of it.
    """

    def setUp(self):
        super().setUp()
        self.mock_central()

    def test_prefetch_of_an_empty_image_succeeds_with_nothing_to_cache(self):
        self.central.fetch_record.return_value = upstream.ImageRecord({
            'id': 'empty', 'size': 0, 'status': 'active',
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(b'').hexdigest(),
            'checksum': hashlib.md5(b'').hexdigest()})
        self.assertEqual(0, self.run_cli('prefetch', 'empty'))
        self.assertEqual('empty empty image: nothing to cache\n',
                         self.stdout.getvalue())
        self.stdout.seek(0)
        self.stdout.truncate()
        self.assertEqual(0, self.run_cli('--json', 'prefetch', 'empty'))
        self.assertEqual([{'image_id': 'empty', 'result': 'empty',
                           'details': 'nothing to cache'}],
                         json.loads(self.stdout.getvalue()))
        self.assertEqual([], cache.Cache(self.cache_dir, 1).entries())

    def test_verify_lists_an_md5_entry_it_cannot_hash_and_keeps_it(self):
        data = b'o' * 1024
        record = {'id': 'old', 'size': len(data), 'status': 'active',
                  'checksum': hashlib.md5(data).hexdigest()}
        store = cache.Cache(self.cache_dir, 1 << 20)
        store.reserve(cache.expected_from_record(record), record)
        with open(store.data_path('old', partial=True), 'wb') as f:
            f.write(data)
        store.commit('old', record)
        with mock.patch('hashlib.new', side_effect=ValueError('FIPS')):
            self.assertEqual(0, self.run_cli('--json', 'cache', 'verify',
                                             '--fix'))
        report = json.loads(self.stdout.getvalue())
        self.assertEqual(([], [], 0), (report['bad'], report['removed'],
                                       report['checked']))
        self.assertEqual(['old'], [u['image_id'] for u in report['unchecked']])
        self.assertIn('cannot hash md5 here',
                      report['unchecked'][0]['problem'])
        self.assertEqual('complete', store.entry('old').state)


class TestSiteViews(cli_base.CliTestCase):
    """cache list --site: every member asked (peers.client.cache_views),
    and what the command says of a node or a coordinator it cannot use.
    """

    def setUp(self):
        super().setUp()
        with open(self.config, 'a') as f:
            f.write('remote_glance_coordination_url = etcd3+http://x:2379\n'
                    'remote_glance_peer_secret = a-site-secret-0123456789\n')
        self.members = {'http://n1': set(), 'http://n2': set()}
        self.site = mock.Mock()
        self.site.members.side_effect = lambda: self.members
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.cmd.config.site',
            lambda group, backend: self.site))

        def cache_view(peer, verify=False):
            if peer.url == 'http://n2':
                raise client.PeerUnreachable(peer.url, 'down')
            return {'entries': [{'image_id': 'i1', 'size': 5,
                                 'state': 'complete', 'pinned': False,
                                 'last_access': 0.0}], 'stats': {}}
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.peers.client.Peer.cache_view', cache_view))

    def test_a_node_not_reachable_is_said_and_fails(self):
        self.assertEqual(1, self.run_cli('cache', 'list', '--site'))
        self.assertIn('glance-remote: peer http://n2 cannot be asked: down',
                      self.stderr.getvalue())
        out = self.stdout.getvalue()
        self.assertIn('http://n2: not reachable', out)
        self.assertIn('i1', out)
        self.site.stop.assert_called_once_with()

    def test_no_node_running(self):
        self.members = {}
        self.assertEqual(1, self.run_cli('cache', 'list', '--site'))
        self.assertIn('no node of the site is running',
                      self.stderr.getvalue())

    def test_the_coordinator_cannot_be_used(self):
        self.site.members.side_effect = coordination.Unavailable('refused')
        self.assertEqual(1, self.run_cli('cache', 'list', '--site'))
        self.assertIn('the site coordinator cannot be used: refused',
                      self.stderr.getvalue())
