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

"""The Keystone tier: a REAL Keystone (the keystone package, sqlite,
fernet) on loopback; central in RegionOne and the edge in RegionTwo, both
behind keystonemiddleware. The driver authenticates with a password or an
application credential and finds central's image endpoint in the catalog
by region; users get real tokens in real projects.
"""

import json
import os
import subprocess

import fixtures
from glanceclient import exc as glance_exc

from tests.functional import base
from tests.harness import keystone
from tests.harness import lab as lab_module


class KeystoneTestCase(base.LabTestCase):

    LAB_CLASS = keystone.KeystoneLab

    @property
    def central_glance(self):
        return self.lab.glance('operator', self.lab.central)

    def edge_as(self, user):
        return self.lab.glance(user, self.lab.edge)

    def link(self, central_id, user):
        client = self.edge_as(user)
        image = client.images.create(name='linked', disk_format='raw',
                                     container_format='bare')
        client.images.add_location(image.id, self.location_of(central_id),
                                   {})
        return client.images.get(image.id)

    def data_of(self, image_id, user='operator'):
        return b''.join(self.edge_as(user).images.data(image_id))

    def use_driver_options(self, **options):
        """Restart the edge with these [central] options."""
        self.lab.edge.set_options({'central': options})
        self.lab.edge.restart()

    def use_driver_auth(self, **auth):
        """Restart the edge with [central] authenticating by *auth* alone
        (an application credential must not carry a project scope).
        """
        group = {key: value for key, value in
                 self.lab.edge.config['central'].items()
                 if key.startswith('remote_glance_') or key in (
                     'auth_url', 'region_name', 'timeout')}
        self.lab.edge.config['central'] = dict(group, **auth)
        self.lab.edge.write_config()
        self.lab.edge.restart()


class TestKeystone(KeystoneTestCase):

    def test_password_auth_and_the_catalog_find_central(self):
        self.assertNotIn('endpoint_override', self.lab.edge.config['central'])
        central, data = self.make_central_image(size=1024 * 1024)
        edge = self.link(central.id, 'operator')
        self.assertEqual(central.os_hash_value, edge.os_hash_value)
        self.assertEqual(data, self.data_of(edge.id))

    def test_two_projects_with_real_tokens(self):
        central, _ = self.make_central_image(
            size=4096, visibility='private',
            owner=self.lab.projects['project-a'])
        self.assertEqual('active', self.link(central.id, 'alice').status)
        # Refused like an unknown image: nobody learns it exists.
        self.assertRaises(glance_exc.HTTPBadRequest, self.link, central.id,
                          'bob')
        self.assertIn('may not link central image %s' % central.id,
                      self.lab.edge.log_text())

    def test_application_credential_then_its_revocation(self):
        credential_id, secret = self.lab.application_credential()
        self.use_driver_auth(
            auth_type='v3applicationcredential',
            application_credential_id=credential_id,
            application_credential_secret=secret)
        try:
            central, data = self.make_central_image(size=4096)
            edge = self.link(central.id, 'operator')
            self.assertEqual(data, self.data_of(edge.id))
            uncached, _ = self.make_central_image(size=4096)
            other = self.link(uncached.id, 'operator')
            self.lab.delete_application_credential(credential_id)
            response = self.lab.session('operator').get(
                '%s/v2/images/%s/file' % (self.lab.edge.url, other.id),
                raise_exc=False, timeout=60)
            self.assertEqual(503, response.status_code)
            self.assertIn('cannot authenticate to central: the identity '
                          'service refused the credentials of [central]',
                          self.lab.edge.log_text())
            self.assertNotIn(secret, self.lab.edge.log_text())
            # What was cached still serves.
            self.assertEqual(data, self.data_of(edge.id))
        finally:
            self.use_driver_auth(**self.lab.driver_options())

    def test_a_region_without_central_is_a_clear_503(self):
        central, _ = self.make_central_image(size=4096)
        self.use_driver_options(region_name='RegionNowhere')
        try:
            image = self.edge_as('operator').images.create(
                name='x', disk_format='raw', container_format='bare')
            self.assertRaises(
                glance_exc.HTTPServiceUnavailable,
                self.edge_as('operator').images.add_location, image.id,
                self.location_of(central.id), {})
            self.assertIn("central's image endpoint is not in the catalog",
                          self.lab.edge.log_text())
        finally:
            self.use_driver_options(region_name='RegionOne')

    def test_import_cli_with_a_clouds_yaml(self):
        central, _ = self.make_central_image(size=4096, os_distro='cirros')
        folder = self.useFixture(fixtures.TempDir()).path
        password, project, _ = keystone.USERS['operator']
        with open(os.path.join(folder, 'clouds.yaml'), 'w') as f:
            f.write('clouds:\n  edge:\n    auth:\n      auth_url: %s\n'
                    '      username: operator\n      password: %s\n'
                    '      project_name: %s\n'
                    '      user_domain_name: Default\n'
                    '      project_domain_name: Default\n'
                    '    region_name: RegionTwo\n'
                    % (self.lab.keystone.url, password, project))
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=os.path.join(
            folder, 'clouds.yaml'))
        result = subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             self.lab.edge.config_file, '--json', 'import', '--os-cloud',
             'edge', central.id], capture_output=True, text=True,
            timeout=120, env=env)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual('created', json.loads(result.stdout)[0]['result'])
        shown = self.edge_as('operator').images.get(central.id)
        self.assertEqual(('cirros', central.os_hash_value),
                         (shown.os_distro, shown.os_hash_value))
        self.assertNotIn(password, result.stdout + result.stderr)


class TestKeystoneChain(KeystoneTestCase):
    """A far edge (RegionThree) whose driver signs in to Keystone and finds
    the edge (RegionTwo) in the catalog, as the edge finds central
    (RegionOne); users hold real tokens at the far edge.
    """

    LAB = {'chain': True}

    def far_as(self, user):
        return self.lab.glance(user, self.lab.far)

    def test_a_boot_by_id_at_the_far_edge_with_real_tokens(self):
        central, data = self.make_central_image(size=1024 * 1024 + 3,
                                                visibility='public',
                                                os_distro='cirros')
        shown = self.far_as('alice').images.get(central.id)
        self.assertEqual((central.os_hash_value, 'cirros', 'regional'),
                         (shown.os_hash_value, shown.os_distro,
                          shown.stores))
        self.assertEqual(data, b''.join(
            self.far_as('alice').images.data(central.id)))
        far_log = self.lab.far.log_text()
        self.assertNotIn(keystone.USERS['far-driver'][0], far_log)
        self.assertIn('asked for by project %s'
                      % self.lab.projects['project-a'], far_log)

    def test_visibility_holds_down_the_chain(self):
        central, data = self.make_central_image(
            size=4096, visibility='private',
            owner=self.lab.projects['project-b'])
        self.assertRaises(glance_exc.HTTPNotFound,
                          self.far_as('alice').images.get, central.id)
        self.assertEqual(data, b''.join(
            self.far_as('bob').images.data(central.id)))
        self.assertRaises(glance_exc.HTTPNotFound,
                          self.far_as('alice').images.get, central.id)
