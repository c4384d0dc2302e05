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

"""A project member plants an image under a central image's ID at the edge
(Glance lets any member choose the ID of an image it creates); the
operator's import, ``--all-public``, sync and the on-demand import must not
adopt it. End to end on REAL servers: Keystone, central and an edge behind
keystonemiddleware with Glance's default policy and default
``show_multiple_locations = false``, three projects with real tokens
(project-m the squatter's, project-t a third party's, edge-ops the
operator's) and the ``glance-remote`` command with a clouds.yaml.
"""

import io
import json
import os
import subprocess
import time
import uuid

import fixtures
from glanceclient import exc as glance_exc

from tests.functional import base
from tests.harness import keystone
from tests.harness import lab as lab_module

# name: (password, project, roles)
USERS = {
    'mallory': ('mallory-lab-pw', 'project-m', ('member', 'reader')),
    'trent': ('trent-lab-pw', 'project-t', ('member', 'reader')),
    # The operator as the docs ask for it: the service role lets the
    # command add and read locations through the API.
    'edge-ops': ('edge-ops-lab-pw', 'edge-ops', ('admin', 'member',
                                                 'service')),
}
HIDDEN = {'DEFAULT': {'show_multiple_locations': False},
          'central': {'remote_glance_import_on_demand': True}}
SQUAT_BYTES = b'not the image central holds under this ID\n' * 1000


class TestSquattedCentralId(base.LabTestCase):

    LAB_CLASS = keystone.KeystoneLab

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        lab = cls.lab
        admin = lab.keystone.admin()
        domain = admin.domains.find(name=keystone.DOMAIN)
        for name in ('project-m', 'project-t'):
            lab.projects[name] = admin.projects.create(name, domain).id
        lab.create_users(admin, domain, USERS)
        cls.show_locations(False)

    @classmethod
    def show_locations(cls, shown):
        """Restart the edge with locations *shown* in image records, or
        not (Glance's default); GET /v2/images/<id>/locations needs the
        service role, as Glance's service_api rule will once it drops the
        admin role (it says: 2026.2 or later).
        """
        policy = os.path.join(cls.lab.edge.root, 'policy.yaml')
        with open(policy, 'w') as f:
            f.write('"fetch_image_location": "role:service"\n')
        cls.lab.edge.set_options(dict(
            HIDDEN, DEFAULT={'show_multiple_locations': shown},
            oslo_policy={'policy_file': policy}))
        cls.lab.edge.restart()

    def setUp(self):
        super().setUp()
        self.folder = self.useFixture(fixtures.TempDir()).path

    # -- clients -------------------------------------------------------

    @property
    def central_glance(self):
        return self.lab.glance('operator', self.lab.central)

    def edge_as(self, user):
        """glanceclient at the edge as *user* (of USERS, or the lab's)."""
        from glanceclient import client
        if user in USERS:
            password, project, _ = USERS[user]
            session = self.lab.keystone.session(user, password, project)
        else:
            session = self.lab.session(user)
        return client.Client('2', session=session,
                             endpoint_override=self.lab.edge.url)

    def operator(self, *args, user='edge-ops'):
        """Run glance-remote as the edge's operator *user*."""
        password, project, _ = USERS.get(user) or keystone.USERS[user]
        path = os.path.join(self.folder, 'clouds.yaml')
        with open(path, 'w') as f:
            f.write('clouds:\n  edge:\n    auth:\n      auth_url: %s\n'
                    '      username: %s\n      password: %s\n'
                    '      project_name: %s\n'
                    '      user_domain_name: Default\n'
                    '      project_domain_name: Default\n'
                    '    region_name: RegionTwo\n'
                    % (self.lab.keystone.url, user, password, project))
        return subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             self.lab.edge.config_file, '--json'] + list(args) + [
                '--os-cloud', 'edge'],
            capture_output=True, text=True, timeout=300,
            env=dict(os.environ, OS_CLIENT_CONFIG_FILE=path))

    def results(self, run):
        return {r['image_id']: r for r in json.loads(run.stdout)}

    def wait_active(self, image_id, timeout=60):
        """Wait until Glance's location task made the image active."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            image = self.edge_as('edge-ops').images.get(image_id)
            if image.status == 'active' and image.os_hash_value:
                self.wait_for_record_copy(image_id)
                return
            time.sleep(0.2)
        self.fail('edge image %s still %s' % (image_id, image.status))

    # -- the squat -----------------------------------------------------

    def squat(self, central_id):
        """mallory creates an edge image with *central_id* and uploads
        bytes of her own; returns the image as the edge's admin sees it.
        """
        mallory = self.edge_as('mallory')
        mallory.images.create(id=central_id, name='mallory-own',
                              visibility='private', disk_format='raw',
                              container_format='bare')
        mallory.images.upload(central_id, io.BytesIO(SQUAT_BYTES))
        return self.edge_as('edge-ops').images.get(central_id)

    def assert_unchanged(self, before):
        after = self.edge_as('edge-ops').images.get(before.id)
        for field in ('name', 'visibility', 'owner', 'checksum',
                      'os_hash_value', 'size', 'status', 'updated_at'):
            self.assertEqual(before[field], after[field], field)
        if before.visibility == 'shared':   # others have no members
            self.assertEqual([], list(self.edge_as(
                'edge-ops').image_members.list(before.id)))

    def assert_third_party_gets_nothing(self, image_id):
        trent = self.edge_as('trent')
        self.assertRaises(glance_exc.HTTPNotFound, trent.images.get,
                          image_id)
        self.assertNotIn(image_id, [i.id for i in trent.images.list()])
        self.assertRaises(glance_exc.HTTPNotFound,
                          lambda: b''.join(trent.images.data(image_id)))

    def test_import_and_all_public_report_the_squat_and_change_nothing(self):
        central, _ = self.make_central_image(size=64 * 1024,
                                             visibility='public')
        before = self.squat(central.id)
        self.assertEqual(('private', 'local'), (before.visibility,
                                                before.stores))

        run = self.operator('import', central.id)
        self.assertEqual(1, run.returncode, run.stdout + run.stderr)
        result = self.results(run)[central.id]
        self.assertEqual('conflict', result['result'])
        self.assertIn("has central's ID but is not provably its import",
                      result['details'])
        self.assertIn('left alone', run.stderr)   # the command's log line
        self.assert_unchanged(before)

        run = self.operator('import', '--all-public')
        self.assertEqual(1, run.returncode, run.stdout + run.stderr)
        self.assertEqual('conflict',
                         self.results(run)[central.id]['result'])
        self.assert_unchanged(before)
        self.assert_third_party_gets_nothing(central.id)

        # The on-demand import does not adopt it either, and says why.
        self.assertIn('edge image %s (owner %s, private) has the ID of a '
                      'central image' % (
                          central.id, self.lab.projects['project-m']),
                      self.lab.edge.log_text())
        self.assert_unchanged(before)

    def test_sync_leaves_a_squatted_link_and_users_own_links_alone(self):
        taken, _ = self.make_central_image(size=64 * 1024,
                                           visibility='public')
        other, _ = self.make_central_image(size=32 * 1024,
                                           visibility='public')
        # Links need show_multiple_locations while they are made (PATCH).
        self.addCleanup(self.show_locations, False)
        self.show_locations(True)
        mallory = self.edge_as('mallory')
        # The next tests' syncs are not to meet these images.
        self.addCleanup(mallory.images.delete, taken.id)
        mallory.images.create(id=taken.id, name='mallory-link',
                              disk_format='raw', container_format='bare')
        mallory.images.add_location(taken.id, self.location_of(other.id), {})
        own_id = str(uuid.uuid4())
        self.addCleanup(mallory.images.delete, own_id)
        mallory.images.create(id=own_id, name='mallory-own-link',
                              disk_format='raw', container_format='bare')
        mallory.images.add_location(own_id, self.location_of(other.id), {})
        self.show_locations(False)
        squat = self.edge_as('edge-ops').images.get(taken.id)
        link = self.edge_as('edge-ops').images.get(own_id)
        self.assertEqual(('central', 'central'), (squat.stores, link.stores))
        self.assertNotIn('locations', squat)

        # An operator who cannot see locations: sync refuses to guess.
        run = self.operator('sync', '--on-central-delete', 'deactivate',
                            user='operator')
        self.assertEqual(1, run.returncode, run.stdout + run.stderr)
        self.assertIn('sync stopped', run.stderr)
        self.assert_unchanged(squat)
        self.assert_unchanged(link)

        # With the service role it sees them: the squat is a conflict, the
        # user's own link is none of its business.
        run = self.operator('sync', '--on-central-delete', 'deactivate')
        self.assertEqual(1, run.returncode, run.stdout + run.stderr)
        results = self.results(run)
        self.assertEqual('conflict', results[taken.id]['result'])
        self.assertNotIn(own_id, results)
        self.assert_unchanged(squat)
        self.assert_unchanged(link)
        self.assertNotIn('remote_glance_deleted_at_central',
                         self.edge_as('edge-ops').images.get(own_id))
        self.assert_third_party_gets_nothing(taken.id)

    def test_a_member_linking_centrals_own_image_under_its_id(self):
        # Central's bytes under central's ID, but the member's image: with
        # a kernel and a command line of the member's own. Publishing it
        # would boot every user's server the member's way.
        central, _ = self.make_central_image(size=64 * 1024,
                                             visibility='public')
        self.addCleanup(self.show_locations, False)
        self.show_locations(True)
        mallory = self.edge_as('mallory')
        self.addCleanup(mallory.images.delete, central.id)
        mallory.images.create(id=central.id, name='mallory-link',
                              disk_format='raw', container_format='bare',
                              visibility='private',
                              kernel_id=str(uuid.uuid4()),
                              os_command_line='init=/bin/mine')
        mallory.images.add_location(central.id,
                                    self.location_of(central.id), {})
        self.wait_active(central.id)
        self.show_locations(False)
        before = self.edge_as('edge-ops').images.get(central.id)
        self.assertEqual('private', before.visibility)

        for args in (('import', central.id), ('sync',)):
            run = self.operator(*args)
            self.assertEqual(1, run.returncode, run.stdout + run.stderr)
            result = self.results(run)[central.id]
            self.assertEqual('conflict', result['result'])
            self.assertIn("owns it, not central's owner", result['details'])
            self.assert_unchanged(before)
        self.assert_third_party_gets_nothing(central.id)
        self.assertEqual('init=/bin/mine', self.edge_as('edge-ops').images.get(
            central.id).os_command_line)

    def test_the_operators_own_import_is_still_synced(self):
        central, data = self.make_central_image(size=64 * 1024,
                                                visibility='public')
        run = self.operator('import', central.id)
        self.assertEqual(0, run.returncode, run.stdout + run.stderr)
        # 'unchanged' when the command's first look imported it on demand.
        self.assertIn(self.results(run)[central.id]['result'],
                      ('created', 'unchanged'))
        self.wait_active(central.id)
        self.central_glance.images.update(central.id, name='renamed')
        run = self.operator('sync')
        self.assertEqual(0, run.returncode, run.stdout + run.stderr)
        self.assertEqual('updated', self.results(run)[central.id]['result'])
        self.assertEqual('renamed', self.edge_as('trent').images.get(
            central.id).name)
        self.assertEqual(data, b''.join(self.edge_as('trent').images.data(
            central.id)))
