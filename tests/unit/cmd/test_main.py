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

"""Unit tests of the command line through cmd/main.py: how it finds its
backend in the edge's glance-api.conf (cmd/config.py) and how it fails,
and what prefetch and cache verify report for the odd image (with a fake
central). Its talk with central is proven against the real lab in
tests/functional/test_cmd.py."""

import hashlib
import io
import json
import os
from unittest import mock

import fixtures
import testtools

from glance_store_remote import cache
from glance_store_remote.cmd import config
from glance_store_remote.cmd import main
from glance_store_remote import upstream
from tests.unit.cmd import base as cli_base


class TestLoadBackend(testtools.TestCase):

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


class TestCacheCommands(cli_base.CliTestCase):
    """prefetch and cache verify on a real cache directory; central is a
    mock that fails the test if data is asked of it.
    """

    def setUp(self):
        super().setUp()
        self.mock_central()

    def test_prefetch_of_an_empty_image_succeeds_with_nothing_to_cache(self):
        self.central.fetch_record.return_value = upstream.ImageRecord({
            'id': 'empty', 'size': 0, 'status': 'active',
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(b'').hexdigest(),
            'checksum': hashlib.md5(b'').hexdigest()})
        self.assertEqual(0, self.run_cli('prefetch', 'empty'))
        self.assertEqual('empty empty image: nothing to cache\n',
                         self.stdout.getvalue())
        self.stdout.seek(0)
        self.stdout.truncate()
        self.assertEqual(0, self.run_cli('--json', 'prefetch', 'empty'))
        self.assertEqual([{'image_id': 'empty', 'result': 'empty',
                           'details': 'nothing to cache'}],
                         json.loads(self.stdout.getvalue()))
        self.assertEqual([], cache.Cache(self.cache_dir, 1).entries())

    def test_verify_lists_an_md5_entry_it_cannot_hash_and_keeps_it(self):
        data = b'o' * 1024
        record = {'id': 'old', 'size': len(data), 'status': 'active',
                  'checksum': hashlib.md5(data).hexdigest()}
        store = cache.Cache(self.cache_dir, 1 << 20)
        store.reserve(cache.expected_from_record(record), record)
        with open(store.data_path('old', partial=True), 'wb') as f:
            f.write(data)
        store.commit('old', record)
        with mock.patch('hashlib.new', side_effect=ValueError('FIPS')):
            self.assertEqual(0, self.run_cli('--json', 'cache', 'verify',
                                             '--fix'))
        report = json.loads(self.stdout.getvalue())
        self.assertEqual(([], [], 0), (report['bad'], report['removed'],
                                       report['checked']))
        self.assertEqual(['old'], [u['image_id'] for u in report['unchecked']])
        self.assertIn('cannot hash md5 here',
                      report['unchecked'][0]['problem'])
        self.assertEqual('complete', store.entry('old').state)
