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
edge Glance's image_locations table."""

import fixtures
import sqlalchemy
import testtools

from glance_store_remote import glance_edge

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
