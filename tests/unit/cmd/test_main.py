"""Unit tests of cmd/main.py: how the CLI finds its backend in the edge's
glance-api.conf and how it fails. Its talk with central is proven against
the real lab in tests/functional/test_cmd.py."""

import io
import os

import fixtures
import testtools

from glance_store_remote.cmd import main


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
        conf, backend = main.load_backend(path)
        self.assertEqual('central', backend)
        self.assertEqual('none', conf.central.auth_type)

    def test_two_remote_backends_need_a_name(self):
        path = self.write('[DEFAULT]\nenabled_backends = a:remote-glance, '
                          'b:remote-glance\n')
        error = self.assertRaises(main.UsageError, main.load_backend, path)
        self.assertIn('--backend', str(error))
        self.assertEqual('b', main.load_backend(path, 'b')[1])

    def test_a_backend_of_another_kind_is_refused(self):
        path = self.write('[DEFAULT]\nenabled_backends = local:file\n')
        error = self.assertRaises(main.UsageError, main.load_backend, path,
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
