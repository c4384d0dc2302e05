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

"""Unit tests of readiness.py: an edge database with Glance's own tables
and a real cache in a temp dir, as ``glance-remote readiness`` and the
metrics exporter read them.
"""

import os

import fixtures
from oslo_config import cfg
import testtools

from glance_store_remote import cache as cache_module
from glance_store_remote import exceptions
from glance_store_remote import glance_edge
from glance_store_remote import readiness
from tests.unit import edge_state

A = '3f1c4a0e-8a2b-4d7e-9c55-0a1b2c3d4e5f'
B = '0b9e7a6c-1d2e-4f30-8a4b-5c6d7e8f9a0b'
C = 'c0ffee00-1d2e-4f30-8a4b-5c6d7e8f9a0b'


def location(central_id, backend='central'):
    return 'remote-glance://%s/%s' % (backend, central_id)


class ReadinessTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        folder = self.useFixture(fixtures.TempDir()).path
        self.db = edge_state.EdgeDatabase(folder)
        self.addCleanup(self.db.close)
        self.cache = cache_module.Cache(os.path.join(folder, 'cache'),
                                        1024 * 1024)
        config_file = os.path.join(folder, 'glance-api.conf')
        with open(config_file, 'w') as f:
            f.write('[database]\nconnection = %s\n' % self.db.url)
        self.conf = cfg.ConfigOpts()
        self.conf(args=[], default_config_files=[config_file])


class TestNodeReport(ReadinessTestCase):

    def test_each_image_is_unready_unpinned_or_ready(self):
        unready = self.db.add_image(location(A))
        unpinned = self.db.add_image(location(B))
        ready = self.db.add_image(location(C))
        edge_state.hold(self.cache, B)
        edge_state.hold(self.cache, C, pinned=True)
        report = readiness.node_report(self.conf, 'central', self.cache)
        self.assertEqual(([unready], [unpinned], [ready]), report[:3])
        self.assertEqual(
            glance_edge.LinkedImage(unready, A, 1024),
            report.images[unready])

    def test_a_partial_entry_is_not_held(self):
        edge_image = self.db.add_image(location(A))
        edge_state.hold(self.cache, A, pinned=True, complete=False)
        report = readiness.node_report(self.conf, 'central', self.cache)
        self.assertEqual([edge_image], report.unready)

    def test_an_entry_whose_data_is_gone_is_not_held(self):
        edge_image = self.db.add_image(location(A))
        edge_state.hold(self.cache, A, pinned=True)
        os.unlink(self.cache.data_path(A))
        report = readiness.node_report(self.conf, 'central', self.cache)
        self.assertEqual([edge_image], report.unready)

    def test_every_edge_image_of_a_central_image_is_listed(self):
        first = self.db.add_image(location(A))
        second = self.db.add_image(location(A))
        report = readiness.node_report(self.conf, 'central', self.cache)
        self.assertEqual(sorted([first, second]), report.unready)
        edge_state.hold(self.cache, A, pinned=True)
        report = readiness.node_report(self.conf, 'central', self.cache)
        self.assertEqual(([], [], sorted([first, second])), report[:3])

    def test_only_the_backends_images_count(self):
        self.db.add_image(location(A, backend='other'))
        self.db.add_image('file:///var/lib/glance/images/x')
        self.db.add_image(location(B), status='deactivated')
        report = readiness.node_report(self.conf, 'central', self.cache)
        self.assertEqual(([], [], [], {}), report)

    def test_without_a_cache_nothing_is_held(self):
        edge_image = self.db.add_image(location(A))
        report = readiness.node_report(self.conf, 'central', None)
        self.assertEqual([edge_image], report.unready)

    def test_an_unreadable_database_is_a_remote_glance_error(self):
        os.unlink(self.db.path)
        error = self.assertRaises(exceptions.RemoteGlanceError,
                                  readiness.node_report, self.conf,
                                  'central', self.cache)
        self.assertIsInstance(error, glance_edge.DatabaseUnreadable)


class TestClassify(testtools.TestCase):

    def test_an_edge_image_gets_the_worst_of_its_links(self):
        linked = [glance_edge.LinkedImage('e1', A, 1),
                  glance_edge.LinkedImage('e1', B, 1),
                  glance_edge.LinkedImage('e2', A, 1),
                  glance_edge.LinkedImage('e2', C, 1)]
        report = readiness.classify(linked, {A, C}, {A})
        self.assertEqual((['e1'], ['e2'], []), report[:3])

    def test_a_copy_in_a_store_of_the_edge_is_ready_held_or_not(self):
        linked = [glance_edge.LinkedImage('copied', A, 1, stored=True),
                  glance_edge.LinkedImage('cached', B, 1),
                  glance_edge.LinkedImage('neither', C, 1)]
        report = readiness.classify(linked, {B}, set())
        self.assertEqual((['neither'], ['cached'], ['copied']), report[:3])

    def test_restricted_keeps_only_the_named_edge_images(self):
        linked = [glance_edge.LinkedImage('e1', A, 1),
                  glance_edge.LinkedImage('e2', B, 1),
                  glance_edge.LinkedImage('e3', C, 1)]
        report = readiness.restricted(
            readiness.classify(linked, {B, C}, {C}), ['e1', 'e3', 'gone'])
        self.assertEqual((['e1'], [], ['e3']), report[:3])
        self.assertEqual({'e1', 'e3'}, set(report.images))


class TestSiteReport(ReadinessTestCase):

    @staticmethod
    def view(*entries):
        return {'entries': [
            {'image_id': image_id, 'state': state, 'pinned': pinned,
             'size': 1, 'last_access': 0.0}
            for image_id, state, pinned in entries], 'stats': {}}

    def test_an_image_held_by_any_node_is_ready_for_the_site(self):
        on_one = self.db.add_image(location(A))
        unpinned = self.db.add_image(location(B))
        nowhere = self.db.add_image(location(C))
        views = {'https://n1': self.view((A, 'complete', True),
                                         (C, 'partial', True)),
                 'https://n2': self.view((B, 'complete', False)),
                 'https://n3': None}
        report = readiness.site_report(self.conf, 'central', views)
        self.assertEqual(([nowhere], [unpinned], [on_one]), report[:3])

    def test_pinned_counts_only_where_the_image_is_complete(self):
        edge_image = self.db.add_image(location(A))
        views = {'https://n1': self.view((A, 'complete', False)),
                 'https://n2': self.view((A, 'partial', True))}
        report = readiness.site_report(self.conf, 'central', views)
        self.assertEqual([edge_image], report.unpinned)
