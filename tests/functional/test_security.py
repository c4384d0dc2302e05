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

"""Functional security tests against the REAL lab: credentials never leak,
and TLS to central is verified unless the operator says otherwise."""

import base64
import os
import subprocess

from glanceclient import exc as glance_exc

from tests.functional import base
from tests.harness import lab as lab_module

USER = 'sentinel-user-7f3a'
SECRET = 'S3NTINEL-pw-91c2e'


class TestCredentialsNeverLeak(base.LabTestCase):
    """The edge authenticates to central with HTTP basic credentials that
    are sentinels; everything the edge, central and the CLI write or answer
    is searched for them, raw and base64-encoded.
    """

    LAB = {'edge_options': {'central': {
        'auth_type': 'http_basic', 'username': USER, 'password': SECRET}}}

    def test_no_secret_in_any_log_answer_record_or_cache_file(self):
        seen = []
        central, data = self.make_central_image(size=2 * 1024 * 1024)
        edge = self.link_with_post(central.id)
        self.assertEqual(data, self.download(edge.id, central))
        seen.append(repr(self.edge_glance().images.get(edge.id)))
        missing = self.make_edge_image()
        self.assertRaises(glance_exc.HTTPBadRequest,
                          self.edge_glance().images.add_location, missing.id,
                          self.location_of('00000000-0000-4000-8000-'
                                           '000000000000'), {})
        for args in (('check',), ('--json', 'show', central.id),
                     ('cache', 'stats')):
            result = self.cli(*args)
            seen += [result.stdout, result.stderr]
        uncached, _ = self.make_central_image(size=4096)
        other = self.link_with_patch(uncached.id)
        self.lab.central.stop()
        response, body, _ = self.fetch(other.id)
        self.assertEqual(503, response.status_code)
        seen.append(body.decode('utf-8', 'replace'))
        for args in (('check',), ('show', central.id)):
            result = self.cli(*args)
            self.assertNotEqual(0, result.returncode)
            seen += [result.stdout, result.stderr]
        for server in (self.lab.edge, self.lab.central):
            seen.append(server.log_text())
            with open(server.access_log) as f:
                seen.append(f.read())
        for folder, _, names in os.walk(self.lab.cache_dir):
            for name in names:
                if name.endswith(('.json', '.fill')):
                    with open(os.path.join(folder, name), 'rb') as f:
                        seen.append(f.read().decode('utf-8', 'replace'))
        everything = '\n'.join(seen)
        self.assertIn('glance_store_remote', everything)  # we looked
        basic = base64.b64encode(
            ('%s:%s' % (USER, SECRET)).encode()).decode()
        for secret in (SECRET, basic, basic[:20]):
            self.assertNotIn(secret, everything)


class TestTLS(base.LabTestCase):
    """Central served over HTTPS with a test CA."""

    LAB = {'central_tls': True, 'cache_max_size': None}

    def relink(self, **options):
        """Restart the edge with these [central] options; link an image."""
        self.lab.edge.set_options({'central': options})
        self.lab.edge.restart()
        central, _ = self.make_central_image(size=4096)
        image = self.make_edge_image()
        try:
            self.edge_glance().images.add_location(
                image.id, self.location_of(central.id), {})
        except glance_exc.HTTPException as e:
            return e.code
        return 200

    def test_verified_by_default_with_the_operators_ca(self):
        self.assertTrue(self.lab.central.url.startswith('https://'))
        self.assertEqual(200, self.relink(cafile=self.lab.ca_file,
                                          insecure=False))

    def test_an_unknown_ca_is_refused(self):
        self.assertNotEqual(200, self.relink(cafile='', insecure=False))
        self.assertIn('SSLError', self.lab.edge.log_text())

    def test_a_wrong_ca_is_refused(self):
        self.assertNotEqual(200, self.relink(cafile=self.lab.other_ca_file,
                                             insecure=False))

    def test_insecure_must_be_said_explicitly(self):
        self.assertEqual(200, self.relink(cafile='', insecure=True))

    def test_the_cli_verifies_too(self):
        self.lab.edge.set_options({'central': {'cafile': '',
                                               'insecure': False}})
        result = subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             self.lab.edge.config_file, 'check'],
            capture_output=True, text=True, timeout=60)
        self.assertEqual(1, result.returncode)
        self.assertIn('SSL', result.stderr)
