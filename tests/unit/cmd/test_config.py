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

"""Unit tests of cmd/config.py: how the command line finds its backend in
the edge's glance-api.conf, and how it fails."""

import io
import os

import fixtures
from oslo_config import cfg
import testtools

from glance_store_remote.cmd import config
from glance_store_remote.cmd import main


class ConfigFileTestCase(testtools.TestCase):
    """A temporary folder for a glance-api.conf, stderr captured."""

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.stderr = self.useFixture(
            fixtures.MonkeyPatch('sys.stderr', io.StringIO())).new_value

    def write(self, text):
        path = os.path.join(self.dir, 'glance-api.conf')
        with open(path, 'w') as f:
            f.write(text)
        return path


class TestLoadBackend(ConfigFileTestCase):

    def test_the_only_remote_backend_is_chosen(self):
        path = self.write('[DEFAULT]\nenabled_backends = local:file, '
                          'central:remote-glance\n[central]\n'
                          'auth_type = none\n')
        conf, backend = config.load_backend(path)
        self.assertEqual('central', backend)
        self.assertEqual('none', conf.central.auth_type)

    def test_two_remote_backends_need_a_name(self):
        path = self.write('[DEFAULT]\nenabled_backends = a:remote-glance, '
                          'b:remote-glance\n')
        error = self.assertRaises(config.UsageError, config.load_backend, path)
        self.assertIn('--backend', str(error))
        self.assertEqual('b', config.load_backend(path, 'b')[1])

    def test_a_backend_of_another_kind_is_refused(self):
        path = self.write('[DEFAULT]\nenabled_backends = local:file\n')
        error = self.assertRaises(config.UsageError, config.load_backend, path,
                                  'local')
        self.assertIn("'local'", str(error))

    def test_missing_file_exits_2_with_a_message(self):
        code = main.main(['--config-file', os.path.join(self.dir, 'nope'),
                          'check'])
        self.assertEqual(2, code)
        self.assertIn('cannot read', self.stderr.getvalue())

    def test_group_that_cannot_reach_central_exits_2_naming_it(self):
        path = self.write('[DEFAULT]\nenabled_backends = c:remote-glance\n'
                          '[c]\nauth_type = no-such-plugin\n')
        self.assertEqual(2, main.main(['--config-file', path, 'check']))
        self.assertIn('[c]', self.stderr.getvalue())


class TestLoadBackends(ConfigFileTestCase):
    """load_backends: every remote-glance backend of the node (metrics)."""

    def test_every_remote_backend_with_its_options(self):
        path = self.write('[DEFAULT]\nenabled_backends = b:remote-glance, '
                          'local:file, a:remote-glance\n[a]\n'
                          'remote_glance_cache_dir = /a\n[b]\n'
                          'auth_type = none\n')
        conf, backends = config.load_backends(path)
        self.assertEqual(['a', 'b'], backends)
        self.assertEqual('/a', conf.a.remote_glance_cache_dir)
        self.assertIsNone(conf.b.remote_glance_cache_dir)
        self.assertEqual('none', conf.b.auth_type)

    def test_the_one_named(self):
        path = self.write('[DEFAULT]\nenabled_backends = a:remote-glance, '
                          'b:remote-glance\n')
        conf, backends = config.load_backends(path, 'b')
        self.assertEqual(['b'], backends)
        # a's options are not registered: nothing of it is read.
        self.assertRaises(cfg.NoSuchOptError, getattr, conf, 'a')

    def test_none_at_all_is_refused(self):
        path = self.write('[DEFAULT]\nenabled_backends = local:file\n')
        error = self.assertRaises(config.UsageError, config.load_backends,
                                  path)
        self.assertIn('no remote-glance backend', str(error))

    def test_a_backend_of_another_kind_is_refused(self):
        path = self.write('[DEFAULT]\nenabled_backends = local:file, '
                          'a:remote-glance\n')
        error = self.assertRaises(config.UsageError, config.load_backends,
                                  path, 'local')
        self.assertIn("'local'", str(error))

    def test_an_unreadable_file_is_refused(self):
        error = self.assertRaises(config.UsageError, config.load_backends,
                                  os.path.join(self.dir, 'nope'))
        self.assertIn('cannot read', str(error))
