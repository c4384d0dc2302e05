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

"""``glance-remote readiness`` through the command line's parser: an edge
database with Glance's own tables, the backend's real cache; the site's
views and nova's server list are stand-ins (the peer path and openstacksdk
are tested where they are used: tests/unit/peers/, tests/functional/).
"""

import json
import os
from unittest import mock

import fixtures
from keystoneauth1 import exceptions as ks_exc
from openstack.compute.v2 import server as sdk_server

from glance_store_remote import cache as cache_module
from tests.unit.cmd import base
from tests.unit import edge_state

A = '3f1c4a0e-8a2b-4d7e-9c55-0a1b2c3d4e5f'
B = '0b9e7a6c-1d2e-4f30-8a4b-5c6d7e8f9a0b'
C = 'c0ffee00-1d2e-4f30-8a4b-5c6d7e8f9a0b'


def location(central_id):
    return 'remote-glance://c/%s' % central_id


class ReadinessCliTestCase(base.CliTestCase):

    def setUp(self):
        super().setUp()
        folder = os.path.dirname(self.config)
        self.db = edge_state.EdgeDatabase(folder)
        self.addCleanup(self.db.close)
        with open(self.config, 'a') as f:
            f.write('[database]\nconnection = %s\n' % self.db.url)
        self.cache = cache_module.Cache(self.cache_dir, 1024 * 1024)

    def run_json(self, *args):
        code = self.run_cli('--json', 'readiness', *args)
        return code, json.loads(self.stdout.getvalue())


class TestNode(ReadinessCliTestCase):

    def test_unready_images_exit_1_and_unpinned_are_listed_apart(self):
        unready = self.db.add_image(location(A), size=None)
        unpinned = self.db.add_image(location(B), size=10)
        self.db.add_image(location(C))
        edge_state.hold(self.cache, B)
        edge_state.hold(self.cache, C, pinned=True)
        self.assertEqual(1, self.run_cli('readiness'))
        lines = self.stdout.getvalue().splitlines()
        self.assertEqual(['EDGE', 'IMAGE', 'CENTRAL', 'IMAGE', 'STATE',
                          'SIZE'], lines[0].split())
        self.assertEqual([unready, A, 'unready', '-'], lines[1].split())
        self.assertEqual([unpinned, B, 'unpinned', '10'], lines[2].split())
        self.assertIn('3 edge images linked to backend c: 1 unready (this '
                      'node does not hold them), 1 held but not pinned, 1 '
                      'ready', lines[3])
        self.assertEqual(4, len(lines))

    def test_held_and_unpinned_only_exits_0(self):
        self.db.add_image(location(A))
        edge_state.hold(self.cache, A)
        self.assertEqual(0, self.run_cli('readiness'))

    def test_json_shape(self):
        unready = self.db.add_image(location(A), size=5)
        ready = self.db.add_image(location(B), size=6)
        edge_state.hold(self.cache, B, pinned=True)
        code, answer = self.run_json()
        self.assertEqual(1, code)
        self.assertEqual({
            'backend': 'c', 'scope': 'node', 'servers_only': False,
            'servers_without_image': 0, 'unreachable_nodes': [],
            'unready': [{'image_id': unready, 'central_image_id': A,
                         'size': 5, 'in_edge_store': False}],
            'unpinned': [],
            'ready': [{'image_id': ready, 'central_image_id': B,
                       'size': 6, 'in_edge_store': False}]}, answer)

    def test_nothing_linked_exits_0(self):
        code, answer = self.run_json()
        self.assertEqual(0, code)
        self.assertEqual(([], [], []), (answer['unready'],
                                        answer['unpinned'], answer['ready']))

    def test_an_unreadable_database_exits_1_and_says_why(self):
        os.unlink(self.db.path)
        self.assertEqual(1, self.run_cli('readiness'))
        self.assertIn('does not exist', self.stderr.getvalue())

    def test_a_backend_without_a_cache_holds_nothing(self):
        with open(self.config) as f:
            text = f.read()
        with open(self.config, 'w') as f:
            f.write(text.replace('remote_glance_cache_dir', '#'))
        unready = self.db.add_image(location(A))
        code, answer = self.run_json()
        self.assertEqual(1, code)
        self.assertEqual([unready],
                         [row['image_id'] for row in answer['unready']])


class TestSite(ReadinessCliTestCase):

    def views(self, views):
        self.useFixture(fixtures.MockPatch(
            'glance_store_remote.cmd.cache.site_views',
            return_value=views))

    @staticmethod
    def view(*entries):
        return {'entries': [{'image_id': i, 'state': s, 'pinned': p,
                             'size': 1, 'last_access': 0.0}
                            for i, s, p in entries], 'stats': {}}

    def test_an_image_held_by_another_node_is_ready(self):
        ready = self.db.add_image(location(A))
        self.views({'https://n1': self.view(),
                    'https://n2': self.view((A, 'complete', True))})
        code, answer = self.run_json('--site')
        self.assertEqual(0, code)
        self.assertEqual('site', answer['scope'])
        self.assertEqual([ready], [r['image_id'] for r in answer['ready']])

    def test_a_node_that_does_not_answer_makes_it_incomplete(self):
        self.db.add_image(location(A))
        self.views({'https://n1': self.view((A, 'complete', True)),
                    'https://n2': None})
        self.assertEqual(1, self.run_cli('readiness', '--site'))
        out = self.stdout.getvalue()
        self.assertIn('https://n2: not reachable: the answer is incomplete',
                      out)
        self.assertIn('0 unready (no node of the site holds them)', out)


class TestServers(ReadinessCliTestCase):

    def servers(self, *images, error=None):
        connection = mock.Mock()
        if error:
            connection.compute.servers.side_effect = error
        else:
            connection.compute.servers.return_value = [
                sdk_server.Server(id='s%d' % n, image=image)
                for n, image in enumerate(images)]
        self.useFixture(fixtures.MockPatch('openstack.connect',
                                           return_value=connection))
        return connection

    def test_only_images_of_servers_count(self):
        used = self.db.add_image(location(A))
        self.db.add_image(location(B))  # unready, but no server uses it
        ready = self.db.add_image(location(C))
        edge_state.hold(self.cache, C, pinned=True)
        connection = self.servers({'id': used}, {'id': ready},
                                  {'id': used}, '', {'id': 'not-linked'})
        code, answer = self.run_json('--servers', '--os-cloud', 'edge')
        self.assertEqual(1, code)
        connection.compute.servers.assert_called_once_with(
            all_projects=True)
        self.assertEqual([used], [r['image_id'] for r in answer['unready']])
        self.assertEqual([ready], [r['image_id'] for r in answer['ready']])
        self.assertEqual(1, answer['servers_without_image'])
        self.assertTrue(answer['servers_only'])

    def test_servers_on_held_images_exit_0_and_say_boot_from_volume(self):
        self.db.add_image(location(A))  # unready, but no server uses it
        self.servers('')
        self.assertEqual(0, self.run_cli('readiness', '--servers'))
        out = self.stdout.getvalue()
        self.assertIn("0 edge images linked to backend c and used by this "
                      "edge's servers", out)
        self.assertIn('1 servers boot from a volume (no image): not '
                      'counted', out)

    def test_missing_credentials_are_a_usage_error(self):
        self.servers(error=ks_exc.MissingRequiredOptions([]))
        self.assertEqual(2, self.run_cli('readiness', '--servers'))
        self.assertIn('cannot use nova', self.stderr.getvalue())

    def test_nova_unreachable_exits_1_and_says_why(self):
        self.servers(error=ks_exc.ConnectFailure('connection refused'))
        self.assertEqual(1, self.run_cli('readiness', '--servers'))
        self.assertIn("nova's server list cannot be read: connection "
                      'refused', self.stderr.getvalue())
