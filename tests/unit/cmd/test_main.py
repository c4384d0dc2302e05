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

"""Unit tests of cmd/main.py: the parser's and the options' refusals, with
a clear message naming the option and nothing created or changed."""

import io
import os

import fixtures
import testtools

from glance_store_remote.cmd import main


class TestHostileConfiguration(testtools.TestCase):
    """Nonsense values: a clear message naming the option, exit code 2,
    and nothing created or changed.
    """

    def setUp(self):
        super().setUp()
        self.dir = self.useFixture(fixtures.TempDir()).path
        self.stderr = self.useFixture(
            fixtures.MonkeyPatch('sys.stderr', io.StringIO())).new_value

    def run_with(self, group_lines, *args):
        path = os.path.join(self.dir, 'glance-api.conf')
        with open(path, 'w') as f:
            f.write('[DEFAULT]\nenabled_backends = c:remote-glance\n[c]\n'
                    'auth_type = none\nendpoint_override = http://127.0.0.1:9'
                    '\n' + group_lines)
        before = sorted(os.listdir(self.dir))
        code = main.main(['--config-file', path] + list(args))
        self.assertEqual(before, sorted(os.listdir(self.dir)))
        return code, self.stderr.getvalue()

    def test_negative_cap_names_the_option(self):
        cache = os.path.join(self.dir, 'cache')
        code, err = self.run_with(
            'remote_glance_cache_dir = %s\n'
            'remote_glance_cache_max_size = -5\n' % cache, 'cache', 'stats')
        self.assertEqual(2, code)
        self.assertIn('remote_glance_cache_max_size', err)
        self.assertFalse(os.path.exists(cache))

    def test_a_size_that_is_not_a_number_names_the_option(self):
        code, err = self.run_with('remote_glance_chunk_size = lots\n',
                                  'check')
        self.assertEqual(2, code)
        self.assertIn('remote_glance_chunk_size', err)

    def test_a_cache_dir_that_is_a_file_names_the_option(self):
        path = os.path.join(self.dir, 'a-file')
        open(path, 'w').close()
        code, err = self.run_with('remote_glance_cache_dir = %s\n' % path,
                                  'cache', 'list')
        self.assertEqual(2, code)
        self.assertIn('remote_glance_cache_dir', err)

    def test_no_cache_configured_says_so(self):
        code, err = self.run_with('', 'cache', 'stats')
        self.assertEqual(2, code)
        self.assertIn('remote_glance_cache_dir is not set', err)

    def test_a_missing_backend_group_names_it(self):
        code, err = self.run_with('', '--backend', 'nope', 'check')
        self.assertEqual(2, code)
        self.assertIn("'nope'", err)

    def test_nonsense_arguments_exit_2(self):
        for args in (('cache', 'pin'), ('import', '--property', 'novalue'),
                     ('frobnicate',)):
            try:
                code, err = self.run_with('', *args)
            except SystemExit as e:
                code = e.code
            self.assertEqual(2, code, args)

    def test_the_exporter_needs_an_address(self):
        try:
            code, err = self.run_with('', 'exporter')
        except SystemExit as e:
            code = e.code
        self.assertEqual(2, code)

    def test_metrics_of_a_backend_that_is_not_ours_names_it(self):
        code, err = self.run_with('', '--backend', 'nope', 'metrics')
        self.assertEqual(2, code)
        self.assertIn("'nope'", err)
