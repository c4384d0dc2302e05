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

"""Functional tests of ``glance-remote import``, ``prefetch`` and ``sync``
(catalog.py, cmd/) against the REAL lab. The CLI reaches the edge with a
clouds.yaml, as an operator's openstackclient would, and central with the
backend group of the edge's glance-api.conf.
"""

import json
import os
import pty
import subprocess

import fixtures

from tests.functional import base
from tests.harness import lab as lab_module

PROPS = {'os_distro': 'cirros', 'hw_disk_bus': 'virtio'}


class CatalogTestCase(base.LabTestCase):

    LAB = {'edge_flavor': 'trusted'}

    def setUp(self):
        super().setUp()
        folder = self.useFixture(fixtures.TempDir()).path
        self.env = dict(os.environ,
                        OS_CLIENT_CONFIG_FILE=self.lab.edge.clouds_yaml(
                            folder), OS_CLOUD='edge')

    def cli(self, *args):
        return subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             self.lab.edge.config_file] + list(args),
            capture_output=True, text=True, timeout=300, env=self.env)

    def cli_json(self, *args, code=0):
        result = self.cli('--json', *args)
        self.assertEqual(code, result.returncode, result.stderr)
        return {r['image_id']: r for r in json.loads(result.stdout)}

    def edge(self, image_id):
        return self.lab.edge.glance().images.get(image_id)

    def shared_image(self, **extra):
        central, data = self.make_central_image(
            size=512 * 1024, visibility='shared', owner='project-a',
            protected=False, min_disk=1, min_ram=128, tags=['gold', 'linux'],
            **dict(PROPS, **extra))
        self.central_glance.image_members.create(central.id, 'project-b')
        self.central_glance.image_members.update(central.id, 'project-b',
                                                 'accepted')
        self.central_glance.image_members.create(central.id, 'project-c')
        return self.central_glance.images.get(central.id), data


class TestImport(CatalogTestCase):

    def test_import_creates_the_same_id_with_the_full_record(self):
        central, data = self.shared_image()
        results = self.cli_json('import', central.id)
        self.assertEqual('created', results[central.id]['result'])
        edge = self.edge(central.id)
        for field in ('name', 'owner', 'visibility', 'protected', 'min_disk',
                      'min_ram', 'disk_format', 'container_format', 'size',
                      'checksum', 'os_hash_algo', 'os_hash_value'):
            self.assertEqual(central[field], edge[field], field)
        self.assertEqual(sorted(central.tags), sorted(edge.tags))
        for key, value in PROPS.items():
            self.assertEqual(value, edge[key])
        members = {m.member_id: m.status for m in
                   self.lab.edge.glance().image_members.list(central.id)}
        self.assertEqual({'project-b': 'accepted', 'project-c': 'pending'},
                         members)
        self.assertEqual('active', edge.status)
        self.assertEqual(data, self.download(central.id, central))

    def test_import_is_idempotent_and_reports_changes(self):
        central, _ = self.shared_image()
        self.cli_json('import', central.id)
        again = self.cli_json('import', central.id)
        self.assertEqual('unchanged', again[central.id]['result'])
        self.central_glance.images.update(central.id, name='renamed',
                                          os_distro='ubuntu')
        changed = self.cli_json('import', central.id)
        self.assertEqual('updated', changed[central.id]['result'])
        self.assertIn('name', changed[central.id]['details'])
        self.assertEqual(('renamed', 'ubuntu'), (
            self.edge(central.id).name, self.edge(central.id).os_distro))

    def test_selection_by_tag_and_property_and_a_failure_exits_1(self):
        tagged, _ = self.make_central_image(size=4096, tags=['edge-site-7'])
        flavored, _ = self.make_central_image(size=4096,
                                              site_class='far-edge')
        missing = '00000000-0000-4000-8000-00000000dead'
        results = self.cli_json('import', missing, '--tag', 'edge-site-7',
                                '--property', 'site_class=far-edge', code=1)
        self.assertEqual('failed', results[missing]['result'])
        self.assertEqual('created', results[tagged.id]['result'])
        self.assertEqual('created', results[flavored.id]['result'])

    def test_nothing_selected_is_a_usage_error(self):
        result = self.cli('import')
        self.assertEqual(2, result.returncode)
        self.assertIn('--all-public', result.stderr)


class TestPrefetch(CatalogTestCase):

    def test_import_with_prefetch_in_json_is_one_document(self):
        central, _ = self.make_central_image(size=4096)
        results = self.cli_json('import', '--prefetch', central.id)
        self.assertEqual('created', results[central.id]['result'])
        self.assertEqual('cached', results[central.id]['prefetch']['result'])

    def test_import_with_prefetch_serves_offline(self):
        central, data = self.make_central_image(size=3 * 1024 * 1024 + 1,
                                                visibility='public')
        result = self.cli('import', '--prefetch', central.id)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertIn('%s cached and verified' % central.id, result.stdout)
        self.assertIn(central.id + '.data', self.cache_files())
        self.lab.central.stop()
        shown = self.edge(central.id)
        self.assertEqual(central.os_hash_value, shown.os_hash_value)
        self.assertEqual(data, self.download(central.id, central))

    def test_prefetch_on_a_terminal_draws_a_progress_bar(self):
        central, _ = self.make_central_image(size=8 * 1024 * 1024)
        leader, follower = pty.openpty()
        process = subprocess.Popen(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             self.lab.edge.config_file, 'prefetch', central.id],
            stdout=follower, stderr=follower, env=self.env)
        os.close(follower)
        output = b''
        while True:
            try:
                piece = os.read(leader, 4096)
            except OSError:
                break
            if not piece:
                break
            output += piece
        self.assertEqual(0, process.wait(60))
        os.close(leader)
        text = output.decode()
        self.assertIn('MiB/s', text)
        self.assertIn('cached and verified', text)
        self.assertIn('\r', text)

    def test_prefetch_of_an_unknown_image_exits_1(self):
        result = self.cli('prefetch', '00000000-0000-4000-8000-00000000beef')
        self.assertEqual(1, result.returncode)


class TestSync(CatalogTestCase):

    def test_sync_follows_central_changes(self):
        central, _ = self.shared_image()
        self.cli_json('import', '--prefetch', central.id)
        self.central_glance.images.update(central.id, name='v2',
                                          hw_disk_bus='scsi')
        self.central_glance.image_members.delete(central.id, 'project-b')
        results = self.cli_json('sync')
        self.assertEqual('updated', results[central.id]['result'])
        edge = self.edge(central.id)
        self.assertEqual(('v2', 'scsi'), (edge.name, edge.hw_disk_bus))
        members = [m.member_id for m in
                   self.lab.edge.glance().image_members.list(central.id)]
        self.assertEqual(['project-c'], members)

        self.central_glance.images.deactivate(central.id)
        self.assertEqual('deactivated',
                         self.cli_json('sync')[central.id]['result'])
        self.assertEqual('deactivated', self.edge(central.id).status)
        self.central_glance.images.reactivate(central.id)
        self.assertEqual('reactivated',
                         self.cli_json('sync')[central.id]['result'])
        self.assertEqual('active', self.edge(central.id).status)

    def test_deleted_at_central_is_marked_and_its_data_kept(self):
        central, data = self.make_central_image(size=1024 * 1024,
                                                visibility='public')
        self.cli_json('import', '--prefetch', central.id)
        self.central_glance.images.delete(central.id)
        results = self.cli_json('sync')
        self.assertEqual('marked', results[central.id]['result'])
        imported = self.cli_json('import', '--prefetch', central.id, code=1)
        self.assertEqual('failed', imported[central.id]['result'])
        edge = self.edge(central.id)
        self.assertEqual('true', edge.remote_glance_deleted_at_central)
        self.assertEqual('active', edge.status)
        self.assertIn(central.id + '.data', self.cache_files())
        listed = json.loads(self.cli('--json', 'cache', 'list').stdout)
        self.assertTrue([e for e in listed if e['image_id'] == central.id][
            0]['pinned'])
        self.assertEqual(data, b''.join(
            self.lab.edge.glance().images.data(central.id)))

    def test_sync_with_central_down_changes_nothing(self):
        central, _ = self.make_central_image(size=4096)
        self.cli_json('import', central.id)
        before = self.edge(central.id)
        self.lab.central.stop()
        result = self.cli('sync')
        self.assertEqual(1, result.returncode)
        self.assertIn('nothing was changed', result.stderr)
        self.assertEqual(before.updated_at, self.edge(central.id).updated_at)


class TestSyncOfOnDemandImports(CatalogTestCase):
    """Images imported on demand are ordinary imported images for sync."""

    LAB = dict(CatalogTestCase.LAB, edge_options={
        'central': {'remote_glance_import_on_demand': True}})

    def test_sync_follows_central_changes_of_an_on_demand_import(self):
        central, _ = self.shared_image()
        shown = self.edge(central.id)   # the edge imports it on demand
        self.assertEqual(central.name, shown.name)
        members = {m.member_id: m.status for m in
                   self.lab.edge.glance().image_members.list(central.id)}
        self.assertEqual({'project-b': 'accepted', 'project-c': 'pending'},
                         members)
        self.central_glance.images.update(central.id, name='v2',
                                          hw_disk_bus='scsi')
        results = self.cli_json('sync')
        self.assertEqual('updated', results[central.id]['result'])
        edge = self.edge(central.id)
        self.assertEqual(('v2', 'scsi'), (edge.name, edge.hw_disk_bus))
