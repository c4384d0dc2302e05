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

"""glance-remote's ``--store``: after a prefetch, the edge Glance is asked
for a copy into one of its stores and the cache entry is released. The
edge's API is a fake here (the functional tier test_ceph_edge drives a real
one); the cache is real.
"""

import argparse
import hashlib
import json
from unittest import mock

import fixtures

from glance_store_remote import cache
from glance_store_remote.cmd import catalog as cmd_catalog
from glance_store_remote import glance_edge
from glance_store_remote import store_copy
from glance_store_remote import upstream
from tests.unit.cmd import base as cli_base

DATA = b'd' * 2048
IMAGE_ID = '11111111-2222-4333-8444-555555555555'


def central_record():
    return {'id': IMAGE_ID, 'size': len(DATA), 'status': 'active',
            'disk_format': 'raw', 'container_format': 'bare',
            'checksum': hashlib.md5(DATA).hexdigest(),
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(DATA).hexdigest()}


def edge_image(**fields):
    image = dict(central_record(), stores='c', locations=[
        {'url': 'remote-glance://c/' + IMAGE_ID, 'metadata': {'store': 'c'}}])
    image.update(fields)
    return image


class FakeEdge:
    """EdgeCopies' surface: a copy asked for has succeeded at the next
    look; another import (the lock held) has ended after one look.
    """

    def __init__(self, image, others=()):
        self.record = image
        self.others = list(others)
        self.started = []

    def image(self, image_id):
        if not self.record:
            return None
        shown = dict(self.record)
        self.record.pop(glance_edge.IMPORT_LOCK, None)
        return shown

    def images(self):
        return [dict(self.record)] + self.others

    def start_copy(self, image_id, target):
        if self.record.get(glance_edge.IMPORT_LOCK):
            raise store_copy.CopyBusy('edge image %s: another import runs'
                                      % image_id)
        self.started.append((image_id, target))
        self.record['stores'] += ',' + target
        self.record['locations'].append(
            {'url': 'rbd://f/images/%s/snap' % image_id,
             'metadata': {'store': target}})

    def last_task_message(self, image_id):
        return ''


class TestCopyOne(cli_base.CliTestCase):

    def setUp(self):
        super().setUp()
        self.store = cache.Cache(self.cache_dir, 1 << 20)
        record = central_record()
        self.store.reserve(cache.expected_from_record(record), record)
        with open(self.store.data_path(IMAGE_ID, partial=True), 'wb') as f:
            f.write(DATA)
        self.store.commit(IMAGE_ID, record)
        self.central = mock.Mock()
        self.central.fetch_record.side_effect = AssertionError(
            'the record kept with the cache is used')

    def copy(self, edge, keep_cache=False):
        args = argparse.Namespace(store='ceph', keep_cache=keep_cache,
                                  copy_timeout=60)
        return cmd_catalog._copy_one(args, edge, self.store, self.central,
                                     'c', IMAGE_ID)

    def test_a_copy_is_asked_then_the_cache_released(self):
        edge = FakeEdge(edge_image())
        result, details = self.copy(edge)
        self.assertEqual('copied', result)
        self.assertEqual([(IMAGE_ID, 'ceph')], edge.started)
        self.assertIn('rbd://f/images/%s/snap' % IMAGE_ID, details)
        self.assertIn('cache entry evicted', details)
        self.assertIsNone(self.store.entry(IMAGE_ID))

    def test_keep_cache_keeps_the_entry(self):
        result, details = self.copy(FakeEdge(edge_image()), keep_cache=True)
        self.assertIn('cache entry kept (--keep-cache)', details)
        self.assertIsNotNone(self.store.entry(IMAGE_ID))

    def test_another_edge_image_without_a_copy_keeps_the_entry(self):
        other = edge_image(id='other-edge-image')
        result, details = self.copy(FakeEdge(edge_image(), [other]))
        self.assertEqual('copied', result)
        self.assertIn('edge images other-edge-image use it', details)
        self.assertIsNotNone(self.store.entry(IMAGE_ID))

    def test_an_image_held_already_is_not_copied_again(self):
        edge = FakeEdge(edge_image(stores='c,ceph'))
        result, details = self.copy(edge)
        self.assertEqual('held', result)
        self.assertEqual([], edge.started)

    def test_another_import_running_is_waited_for_first(self):
        edge = FakeEdge(edge_image(os_glance_import_task='hashing'))
        self.assertEqual('copied', self.copy(edge)[0])
        self.assertEqual([(IMAGE_ID, 'ceph')], edge.started)

    def test_no_edge_image_is_an_error_that_says_what_to_do(self):
        e = self.assertRaises(store_copy.CopyError, self.copy,
                              FakeEdge(None))
        self.assertIn('import it first', str(e))

    def test_an_edge_record_without_centrals_hash_is_not_copied(self):
        edge = FakeEdge(edge_image(os_hash_value='0' * 128))
        e = self.assertRaises(store_copy.CopyError, self.copy, edge)
        self.assertIn("does not carry central's os_hash_value", str(e))
        self.assertEqual([], edge.started)

    def test_a_qcow2_image_is_copied_with_a_note_for_nova(self):
        result, details = self.copy(FakeEdge(edge_image(disk_format='qcow2')))
        self.assertEqual('copied', result)
        self.assertIn('disk_format qcow2: nova clones raw images only',
                      details)


class TestStoreCommandLine(cli_base.CliTestCase):

    def setUp(self):
        super().setUp()
        self.mock_central()
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.cmd.config.edge_adapter',
            lambda args: mock.Mock()))

    def test_import_store_without_prefetch_exits_2(self):
        self.assertEqual(2, self.run_cli('import', '--store', 'ceph',
                                         IMAGE_ID))
        self.assertIn('--store needs --prefetch', self.stderr.getvalue())

    def test_an_empty_image_is_prefetched_and_not_copied(self):
        self.central.fetch_record.return_value = upstream.ImageRecord(dict(
            central_record(), size=0,
            os_hash_value=hashlib.sha512(b'').hexdigest(),
            checksum=hashlib.md5(b'').hexdigest()))
        self.assertEqual(0, self.run_cli('--json', 'prefetch', '--store',
                                         'ceph', IMAGE_ID))
        [row] = json.loads(self.stdout.getvalue())
        self.assertEqual({'result': 'skipped',
                          'details': 'an empty image: nothing to copy'},
                         row['copy'])

    def test_a_failed_prefetch_is_not_copied_and_exits_1(self):
        self.central.fetch_record.side_effect = \
            upstream.exceptions.UpstreamUnavailable('c', 'central is down')
        self.assertEqual(1, self.run_cli('--json', 'prefetch', '--store',
                                         'ceph', IMAGE_ID))
        [row] = json.loads(self.stdout.getvalue())
        self.assertEqual('failed', row['result'])
        self.assertEqual('skipped', row['copy']['result'])

    def test_a_refused_copy_exits_1_with_the_reason(self):
        store = cache.Cache(self.cache_dir, 1 << 20)
        record = central_record()
        store.reserve(cache.expected_from_record(record), record)
        with open(store.data_path(IMAGE_ID, partial=True), 'wb') as f:
            f.write(DATA)
        store.commit(IMAGE_ID, record)
        with mock.patch.object(cmd_catalog, '_copy_one',
                               side_effect=store_copy.CopyError(
                                   'edge image x is queued')):
            self.assertEqual(1, self.run_cli('prefetch', '--store', 'ceph',
                                             IMAGE_ID))
        self.assertIn('%s already cached\n%s store ceph: failed: edge image '
                      'x is queued' % (IMAGE_ID, IMAGE_ID),
                      self.stdout.getvalue())
