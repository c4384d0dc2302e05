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

"""Remote-glance stores are read-only to Glance's API (store_info.py), on a
REAL edge Glance 33 with the store-info filter and two writable stores of
its own (``local`` and ``spare``) beside ``central``: what
``/v2/info/stores`` shows, where all-stores imports and copies land, and
what naming central is answered. The wrapper of Glance's all_stores
expansion is also run in Glance 30.2's own virtualenv.
"""

import io
import json
import os
import shutil
import subprocess
import tempfile
import time

from tests.functional import base
from tests.harness import lab as lab_module

OLDER = os.environ.get('GSR_OLDER_CENTRAL_PYTHON')
MEMBER = lab_module.Identity('edge-members', 'member-user',
                             ('member', 'reader'))


class TestStoreInfo(base.LabTestCase):

    @classmethod
    def setUpClass(cls):
        # The spare store's directory: made before the lab, removed after.
        cls.spare = tempfile.mkdtemp(prefix='gsr-spare-')
        cls.LAB = {'edge_flavor': 'headerauth+storeinfo', 'edge_options': {
            'DEFAULT': {'enabled_backends':
                        'local:file, spare:file, central:remote-glance'},
            'spare': {'filesystem_store_datadir': cls.spare,
                      'store_description': 'a second writable store'}}}
        try:
            super().setUpClass()
        except BaseException:
            shutil.rmtree(cls.spare, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            shutil.rmtree(cls.spare, ignore_errors=True)

    def info(self, path, identity=lab_module.ADMIN):
        return self.edge_session(identity).get(
            self.lab.edge.url + '/v2/info/stores' + path, raise_exc=False)

    def staged_image(self, identity=lab_module.ADMIN):
        client = self.edge_glance(identity)
        image = self.make_edge_image(identity)
        client.images.stage(image.id, io.BytesIO(os.urandom(4096)))
        return image

    def wait_active(self, image_id, stores, timeout=60):
        """Wait until the image is active in *stores* and Glance's import
        task has ended: the task writes the image's record after the image
        shows active, and on the lab's SQLite database a write at the same
        moment as the next test's request can make that one fail.
        """
        client = self.edge_glance()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            image = client.images.get(image_id)
            if image.get('os_glance_failed_import'):
                self.fail('import of %s failed in %s' % (
                    image_id, image['os_glance_failed_import']))
            if (image.status == 'active' and
                    sorted(image.get('stores', '').split(',')) == stores and
                    'os_glance_import_task' not in image and
                    self.tasks_ended(image_id)):
                return image
            time.sleep(0.3)
        self.fail('image %s: %s in %s, not in %s' % (
            image_id, image.status, image.get('stores'), stores))

    def tasks_ended(self, image_id):
        tasks = self.edge_session().get(
            '%s/v2/images/%s/tasks' % (self.lab.edge.url, image_id)).json()
        return all(task['status'] in ('success', 'failure')
                   for task in tasks['tasks'])

    def import_request(self, image_id, body, identity=lab_module.ADMIN):
        return self.edge_session(identity).post(
            '%s/v2/images/%s/import' % (self.lab.edge.url, image_id),
            json=body, raise_exc=False)

    def test_the_stores_list_marks_central_read_only(self):
        response = self.info('')
        self.assertEqual(200, response.status_code)
        stores = {store['id']: store for store in response.json()['stores']}
        self.assertEqual('true', stores['central'].get('read-only'))
        self.assertNotIn('read-only', stores['local'])
        self.assertNotIn('read-only', stores['spare'])
        self.assertEqual('true', stores['local'].get('default'))
        # As openstacksdk sees it.
        listed = {store.id: store for store in
                  self.lab.edge.sdk(lab_module.ADMIN).image.stores()}
        self.assertEqual(['central', 'local', 'spare'], sorted(listed))

    def test_the_detail_view_describes_every_store(self):
        response = self.info('/detail')
        self.assertEqual(200, response.status_code, response.text)
        stores = {store['id']: store for store in response.json()['stores']}
        self.assertEqual(['local', 'spare', 'central'],
                         [store['id'] for store in response.json()['stores']])
        self.assertEqual(('remote-glance', {}, 'true'), (
            stores['central']['type'], stores['central']['properties'],
            stores['central']['read-only']))
        self.assertEqual('file', stores['spare']['type'])
        self.assertIn('data_dir', stores['spare']['properties'])

    def test_the_detail_view_keeps_glances_policy(self):
        self.assertEqual(403, self.info('/detail', MEMBER).status_code)

    def test_an_all_stores_import_lands_in_every_writable_store(self):
        image = self.staged_image()
        sdk = self.lab.edge.sdk(lab_module.ADMIN)
        sdk.image.import_image(sdk.image.get_image(image.id),
                               method='glance-direct', all_stores=True)
        self.wait_active(image.id, ['local', 'spare'])

    def test_a_copy_to_all_stores_skips_central(self):
        image = self.make_edge_image()
        self.edge_glance().images.upload(image.id, io.BytesIO(b'x' * 8192))
        self.assertEqual(202, self.import_request(image.id, {
            'method': {'name': 'copy-image'}, 'all_stores': True
        }).status_code)
        self.wait_active(image.id, ['local', 'spare'])

    def test_naming_central_is_refused_before_anything_moves(self):
        image = self.staged_image()
        response = self.import_request(image.id, {
            'method': {'name': 'glance-direct'},
            'stores': ['local', 'central']})
        self.assertEqual(409, response.status_code)
        self.assertIn('Store central is read-only', response.text)
        self.assertEqual('uploading',
                         self.edge_glance().images.get(image.id).status)
        # The staged data is still there for an import that names the
        # edge's own stores.
        self.assertEqual(202, self.import_request(image.id, {
            'method': {'name': 'glance-direct'},
            'stores': ['local', 'spare']}).status_code)
        self.wait_active(image.id, ['local', 'spare'])

    def test_a_copy_naming_central_is_refused(self):
        image = self.make_edge_image()
        self.edge_glance().images.upload(image.id, io.BytesIO(b'y' * 8192))
        response = self.import_request(image.id, {
            'method': {'name': 'copy-image'}, 'stores': ['central']})
        self.assertEqual(409, response.status_code)

    def test_an_upload_naming_central_is_410_and_the_image_stays_queued(
            self):
        image = self.make_edge_image()
        response = self.edge_session().put(
            '%s/v2/images/%s/file' % (self.lab.edge.url, image.id),
            data=b'z' * 8192, raise_exc=False,
            headers={'X-Image-Meta-Store': 'central',
                     'Content-Type': 'application/octet-stream'})
        self.assertEqual(410, response.status_code)
        self.assertIn('Store central is read-only', response.text)
        self.assertEqual('queued',
                         self.edge_glance().images.get(image.id).status)


# Run by Glance 30.2's interpreter: the wrapper and the discovery
# controller against that release's own code.
_OLDER_CHECK = '''
import json
from oslo_config import cfg
import webob
from glance.common import config
from glance.common import utils
from glance_store_remote import store_info
backends = {"local": "file", "web": "http", "central": "remote-glance"}
cfg.CONF([], project="glance")
for group in backends:
    cfg.CONF.register_opts([cfg.StrOpt("store_description")], group)
cfg.CONF.register_opts([cfg.StrOpt("default_backend")], "glance_store")
cfg.CONF.set_override("enabled_backends", backends)
cfg.CONF.set_override("default_backend", "local", "glance_store")
wrapped = store_info.exclude_from_all_stores()
controller = store_info._info_controller_class()(policy_enforcer=object())
print(json.dumps({"wrapped": wrapped,
                  "all_stores": utils._get_available_stores(),
                  "info": controller.get_stores(webob.Request.blank("/"))}))
'''


class TestOlderGlance(base.testtools.TestCase):

    def test_glance_30_expands_all_stores_without_central(self):
        if not OLDER:
            self.skipTest('GSR_OLDER_CENTRAL_PYTHON is not set (tox -e '
                          'functional builds Glance 30.2.0)')
        result = subprocess.run(
            [OLDER, '-c', _OLDER_CHECK], capture_output=True, text=True,
            timeout=120, cwd=lab_module.PROJECT_ROOT,
            env=dict(os.environ, PYTHONPATH=lab_module.PROJECT_ROOT))
        self.assertEqual(0, result.returncode, result.stderr)
        seen = json.loads(result.stdout.splitlines()[-1])
        self.assertEqual((True, ['local']), (seen['wrapped'],
                                             seen['all_stores']))
        self.assertEqual(
            [{'id': 'local', 'default': 'true'},
             {'id': 'web', 'read-only': 'true'},
             {'id': 'central', 'read-only': 'true'}], seen['info']['stores'])
