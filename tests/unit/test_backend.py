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

"""Unit tests of backend.py: what glance-api's node and the CLI are built
from one configuration group.
"""

import fixtures

from glance_store_remote import backend
from glance_store_remote import wan
from tests.unit import base


class TestAssembly(base.StoreTestCase):

    def group(self, **options):
        self.config_fixture.config(group=base.BACKEND, **options)
        return self.conf[base.BACKEND]

    def test_a_node_without_a_cache_has_no_read_path(self):
        parts = backend.for_node(self.conf, base.BACKEND)
        self.assertIsNone(parts.cache)
        self.assertIsNone(parts.reader)
        self.assertIsInstance(parts.gate, wan.Gate)
        self.assertEqual(base.BACKEND, parts.gate.backend)

    def test_a_node_with_a_cache_reads_through_it(self):
        self.group(remote_glance_cache_dir=self.useFixture(
            fixtures.TempDir()).path, timeout=10)
        parts = backend.for_node(self.conf, base.BACKEND)
        self.assertIs(parts.cache, parts.reader.cache)
        self.assertIs(parts.gate, parts.reader.central)
        self.assertEqual(25, parts.reader.stall_timeout)
        self.assertIsNone(parts.site)
        self.assertIsNone(parts.central.record_relay)

    def test_prefetch_needs_a_cache_and_is_no_peer(self):
        self.assertRaises(backend.ConfigError, backend.for_prefetch,
                          self.conf, base.BACKEND)
        self.group(remote_glance_cache_dir=self.useFixture(
            fixtures.TempDir()).path)
        parts = backend.for_prefetch(self.conf, base.BACKEND)
        self.assertIsNone(parts.reader.site)
        self.assertIsNone(parts.site_source)

    def test_the_stall_timeout_is_two_of_centrals_and_a_margin(self):
        self.assertEqual(125, backend.stall_timeout(self.group(timeout=None)))
        self.assertEqual(65, backend.stall_timeout(self.group(timeout=30)))

    def test_metrics_are_counted_unless_turned_off(self):
        root = self.useFixture(fixtures.TempDir()).path
        self.group(remote_glance_cache_dir=root)
        self.assertTrue(backend.for_node(self.conf, base.BACKEND)
                        .cache.counting)
        self.assertTrue(backend.for_prefetch(self.conf, base.BACKEND)
                        .cache.counting)
        self.group(remote_glance_metrics=False)
        self.assertFalse(backend.for_node(self.conf, base.BACKEND)
                         .cache.counting)
        self.assertFalse(backend.for_prefetch(self.conf, base.BACKEND)
                         .cache.counting)
        self.assertFalse(backend.cli_cache(self.group(), base.BACKEND)
                         .counting)
