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

"""Unit tests of glance_edge.py against a sqlite database shaped like the
edge Glance's image_locations table, and (the read from outside
glance-api) one made with Glance's own models."""

import os

import fixtures
from oslo_config import cfg
from oslo_db import options as db_options
import sqlalchemy
import testtools

from glance_store_remote import exceptions
from glance_store_remote import glance_edge
from tests.unit import edge_state

URI = 'remote-glance://central/3f1c4a0e-8a2b-4d7e-9c55-0a1b2c3d4e5f'


class TestLiveLocations(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.engine = sqlalchemy.create_engine('sqlite://')
        with self.engine.begin() as connection:
            connection.execute(sqlalchemy.text(
                'CREATE TABLE image_locations (id INTEGER PRIMARY KEY, '
                'image_id TEXT, value TEXT, deleted INTEGER, status TEXT)'))
            for image, uri, deleted, status in (
                    ('a', URI, 0, 'active'),
                    ('b', URI, 0, 'active'),
                    ('c', URI, 1, 'deleted'),
                    ('d', URI, 0, 'pending_delete'),
                    ('e', URI + 'x', 0, 'active')):
                connection.execute(sqlalchemy.text(
                    'INSERT INTO image_locations (image_id, value, deleted, '
                    'status) VALUES (:i, :v, :d, :s)'),
                    {'i': image, 'v': uri, 'd': deleted, 's': status})
        self.useFixture(fixtures.MockPatch(
            'glance_store_remote.glance_edge._engine',
            return_value=self.engine))

    def test_counts_only_live_locations_of_that_uri(self):
        self.assertEqual(2, glance_edge.count_live_locations(URI))

    def test_unknown_uri_counts_zero(self):
        self.assertEqual(
            0, glance_edge.count_live_locations('remote-glance://x'))

    def test_an_unreadable_database_answers_none(self):
        self.useFixture(fixtures.MockPatch(
            'glance_store_remote.glance_edge._engine',
            side_effect=RuntimeError('no engine here')))
        self.assertIsNone(glance_edge.count_live_locations(URI))

    def test_the_live_images_at_a_location(self):
        self.assertEqual(['a', 'b'], glance_edge.live_images_at(URI))
        self.assertEqual([], glance_edge.live_images_at('remote-glance://x'))
        self.useFixture(fixtures.MockPatch(
            'glance_store_remote.glance_edge._engine',
            side_effect=RuntimeError('no engine here')))
        self.assertEqual([], glance_edge.live_images_at(URI))


CENTRAL_A = '3f1c4a0e-8a2b-4d7e-9c55-0a1b2c3d4e5f'
CENTRAL_B = '0b9e7a6c-1d2e-4f30-8a4b-5c6d7e8f9a0b'


def _conf(folder, connection=None, oslo_db=False):
    """A ConfigOpts that read a glance-api.conf with *connection*; with
    *oslo_db*, oslo.db's options registered first, as in glance-api.
    """
    path = os.path.join(folder, 'glance-api.conf')
    with open(path, 'w') as f:
        f.write('[database]\nconnection = %s\n' % connection
                if connection else '[DEFAULT]\n')
    conf = cfg.ConfigOpts()
    if oslo_db:
        db_options.set_defaults(conf)
    conf(args=[], default_config_files=[path])
    return conf


class TestLinkedImages(testtools.TestCase):
    """linked_images and database_engine on an SQLite file with Glance's
    own tables.
    """

    def setUp(self):
        super().setUp()
        self.folder = self.useFixture(fixtures.TempDir()).path
        self.db = edge_state.EdgeDatabase(self.folder)
        self.addCleanup(self.db.close)

    def linked(self, backend='central'):
        engine = glance_edge.database_engine(_conf(self.folder, self.db.url))
        self.addCleanup(engine.dispose)
        return glance_edge.linked_images(backend, engine)

    def test_active_images_with_a_live_location_of_the_backend(self):
        a = self.db.add_image('remote-glance://central/' + CENTRAL_A,
                              size=7)
        b = self.db.add_image('remote-glance://central/' + CENTRAL_B,
                              size=None)
        self.assertEqual(sorted([
            glance_edge.LinkedImage(a, CENTRAL_A, 7),
            glance_edge.LinkedImage(b, CENTRAL_B, None)]), self.linked())

    def test_images_and_locations_that_do_not_count(self):
        uri = 'remote-glance://central/' + CENTRAL_A
        self.db.add_image(uri, status='queued')
        self.db.add_image(uri, status='deactivated')
        self.db.add_image(uri, status='deleted', deleted=True)
        self.db.add_image(uri, location_status='deleted',
                          location_deleted=True)
        self.db.add_image(uri, location_status='pending_delete')
        self.db.add_image('file:///var/lib/glance/images/x')
        self.db.add_image('remote-glance://other/' + CENTRAL_A)
        # '_' of a LIKE pattern matches any character: parsed again.
        self.db.add_image('remote-glance://centra1/' + CENTRAL_A)
        self.db.add_image('remote-glance://central/not-a-uuid')
        self.assertEqual([], self.linked())
        self.assertEqual([], self.linked('centra_'))

    def test_one_row_per_edge_image_and_central_image(self):
        uri = 'remote-glance://central/' + CENTRAL_A
        first = self.db.add_image(uri, uri)
        second = self.db.add_image(uri)
        self.assertEqual(sorted([
            glance_edge.LinkedImage(first, CENTRAL_A, 1024),
            glance_edge.LinkedImage(second, CENTRAL_A, 1024)]),
            self.linked())

    def test_a_live_location_in_a_store_of_the_edge_marks_it_stored(self):
        uri = 'remote-glance://central/' + CENTRAL_A
        copied = self.db.add_image(uri, 'rbd://fsid/images/x/snap')
        gone = self.db.add_image(uri)
        self.db.add_location(gone, 'rbd://fsid/images/y/snap',
                             status='deleted', deleted=True)
        elsewhere = self.db.add_image(uri)
        # Another remote-glance backend needs a WAN too: not a copy here.
        self.db.add_location(elsewhere, 'remote-glance://other/' + CENTRAL_A)
        self.assertEqual(sorted([
            glance_edge.LinkedImage(copied, CENTRAL_A, 1024, True),
            glance_edge.LinkedImage(gone, CENTRAL_A, 1024, False),
            glance_edge.LinkedImage(elsewhere, CENTRAL_A, 1024, False)]),
            self.linked())

    def test_a_database_without_glances_tables_is_unreadable(self):
        engine = sqlalchemy.create_engine('sqlite://')
        error = self.assertRaises(glance_edge.DatabaseUnreadable,
                                  glance_edge.linked_images, 'central',
                                  engine)
        self.assertIn('no such table', str(error))
        self.assertIsInstance(error, exceptions.RemoteGlanceError)

    def test_no_connection_is_unreadable(self):
        error = self.assertRaises(glance_edge.DatabaseUnreadable,
                                  glance_edge.database_engine,
                                  _conf(self.folder))
        self.assertIn('[database] connection is not set', str(error))

    def test_a_missing_sqlite_file_is_not_created(self):
        path = os.path.join(self.folder, 'absent.sqlite')
        error = self.assertRaises(glance_edge.DatabaseUnreadable,
                                  glance_edge.database_engine,
                                  _conf(self.folder, 'sqlite:///' + path))
        self.assertIn('does not exist', str(error))
        self.assertFalse(os.path.exists(path))

    def test_the_url_and_its_password_are_never_told(self):
        for url in ('not a url:// secret-pw', 'nosuchdb://u:secret-pw@h/d',
                    'mysql+nosuchdriver://u:secret-pw@h/d'):
            error = self.assertRaises(glance_edge.DatabaseUnreadable,
                                      glance_edge.database_engine,
                                      _conf(self.folder, url))
            self.assertNotIn('secret-pw', str(error))

    def test_an_unreachable_server_is_unreadable_without_its_password(self):
        engine = glance_edge.database_engine(_conf(
            self.folder,
            'mysql+pymysql://glance:secret-pw@127.0.0.1:9/glance'))
        self.addCleanup(engine.dispose)
        error = self.assertRaises(glance_edge.DatabaseUnreadable,
                                  glance_edge.linked_images, 'central',
                                  engine)
        self.assertIn("Can't connect", str(error))
        self.assertNotIn('secret-pw', str(error))

    def test_oslo_dbs_own_option_is_used_when_registered(self):
        conf = _conf(self.folder, self.db.url, oslo_db=True)
        engine = glance_edge.database_engine(conf)
        self.addCleanup(engine.dispose)
        self.assertEqual([], glance_edge.linked_images('central', engine))
