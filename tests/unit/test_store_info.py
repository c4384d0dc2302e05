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

"""Unit tests of store_info.py: which requests the filter refuses before
Glance sees them, and Glance's all_stores expansion with the wrapper.
Glance's discovery views through the filter, and all-stores imports, are
tested against real edge Glance servers in
tests/functional/test_store_info.py (Glance 33 and 30.2).
"""

import io
import json

import fixtures
from glance.common import config as glance_config  # noqa: F401 (options)
from glance.common import utils as glance_utils
from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools
import webob

from glance_store_remote import store_info

IMAGE = '/v2/images/6a1b0c5e-39a4-4b27-9b0f-3f5b1d1f0a11'
BACKENDS = {'local': 'file', 'web': 'http', 'central': 'remote-glance',
            'spare': 'file', 'os_glance_staging_store': 'file'}


class FakeGlance:
    """The rest of the pipeline: records what reached it."""

    def __init__(self):
        self.seen = []

    def __call__(self, environ, start_response):
        request = webob.Request(environ)
        self.seen.append((request.method, request.path_info, request.body))
        start_response('202 Accepted', [('Content-Length', '0')])
        return [b'']


class StoreInfoTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.config = self.useFixture(config_fixture.Config(cfg.CONF))
        self.config.config(enabled_backends=BACKENDS)
        # The wrapper replaces a module attribute of Glance: put it back.
        self.useFixture(fixtures.MonkeyPatch(
            'glance.common.utils._get_available_stores',
            glance_utils._get_available_stores))
        self.glance = FakeGlance()
        self.filter = store_info.StoreInfoFilter(self.glance)

    def call(self, method, path, body=None, headers=None):
        request = webob.Request.blank(path, method=method,
                                      headers=headers or {})
        if body is not None:
            request.body = json.dumps(body).encode()
            request.content_type = 'application/json'
        return request.get_response(self.filter)


class TestReadOnlyBackends(StoreInfoTestCase):

    def test_only_remote_glance_backends_are_read_only_here(self):
        # http stores Glance itself treats as read-only.
        self.assertEqual({'central'}, store_info.read_only_backends())


class TestAllStores(StoreInfoTestCase):

    def test_glance_expands_all_stores_to_its_writable_stores_only(self):
        self.assertIn('central', glance_utils._get_available_stores())
        self.assertTrue(store_info.exclude_from_all_stores())
        self.assertEqual(['local', 'spare'],
                         glance_utils._get_available_stores())
        request = webob.Request.blank('/')
        self.useFixture(fixtures.MockPatch(
            'glance_store.get_store_from_store_identifier'))
        self.assertEqual(['local', 'spare'],
                         glance_utils.get_stores_from_request(
                             request, {'all_stores': True}))

    def test_the_wrapper_is_installed_once(self):
        store_info.exclude_from_all_stores()
        wrapped = glance_utils._get_available_stores
        store_info.exclude_from_all_stores()
        self.assertIs(wrapped, glance_utils._get_available_stores)

    def test_the_wrapper_reads_the_backends_at_each_call(self):
        store_info.exclude_from_all_stores()
        self.config.config(enabled_backends={'local': 'file',
                                             'central': 'file'})
        self.assertEqual(['local', 'central'],
                         glance_utils._get_available_stores())

    def test_a_glance_without_the_function_is_logged_not_broken(self):
        log = self.useFixture(fixtures.FakeLogger())
        self.useFixture(fixtures.MonkeyPatch(
            'glance.common.utils._get_available_stores',
            fixtures.MonkeyPatch.delete))
        self.assertFalse(store_info.exclude_from_all_stores())
        self.assertIn("imports with all_stores will also target the "
                      "remote-glance stores ['central']", log.output)


class TestRefusals(StoreInfoTestCase):

    def test_an_import_naming_a_remote_glance_store_is_409_at_once(self):
        response = self.call('POST', IMAGE + '/import', {
            'method': {'name': 'glance-direct'},
            'stores': ['local', 'central']})
        self.assertEqual(409, response.status_int)
        self.assertIn('Store central is read-only', response.text)
        self.assertEqual([], self.glance.seen)

    def test_a_copy_naming_it_in_the_header_is_409(self):
        response = self.call('POST', IMAGE + '/import',
                             {'method': {'name': 'copy-image'}},
                             headers={'X-Image-Meta-Store': 'central'})
        self.assertEqual(409, response.status_int)
        self.assertEqual([], self.glance.seen)

    def test_an_upload_to_it_is_410_before_any_data_is_read(self):
        request = webob.Request.blank(
            IMAGE + '/file', method='PUT',
            headers={'X-Image-Meta-Store': 'central',
                     'Content-Type': 'application/octet-stream'})
        data = io.BytesIO(b'x' * 4096)
        request.body_file_raw = data
        request.content_length = 4096
        response = request.get_response(self.filter)
        self.assertEqual(410, response.status_int)
        self.assertEqual(0, data.tell())
        self.assertEqual([], self.glance.seen)

    def test_imports_to_writable_stores_reach_glance_with_their_body(self):
        for body in ({'method': {'name': 'glance-direct'},
                      'stores': ['local', 'spare']},
                     {'method': {'name': 'glance-direct'},
                      'all_stores': True},
                     {'method': {'name': 'web-download'}}):
            self.assertEqual(202, self.call('POST', IMAGE + '/import',
                                            body).status_int)
            self.assertEqual(json.dumps(body).encode(),
                             self.glance.seen[-1][2])

    def test_other_requests_naming_it_are_glances_to_answer(self):
        # Staging names no store; a malformed body is Glance's to refuse.
        self.call('PUT', IMAGE + '/stage',
                  headers={'X-Image-Meta-Store': 'central'})
        self.call('POST', IMAGE + '/import', {'stores': 'central'})
        self.call('GET', IMAGE, headers={'X-Image-Meta-Store': 'central'})
        self.assertEqual(['/stage', '/import', ''], [
            path[len(IMAGE):] for _, path, _ in self.glance.seen])

    def test_a_glance_without_remote_glance_stores_is_untouched(self):
        self.config.config(enabled_backends={'local': 'file',
                                             'central': 'file'})
        self.call('POST', IMAGE + '/import', {'stores': ['central']})
        self.call('GET', '/v2/info/stores')
        self.assertEqual(2, len(self.glance.seen))
