"""glance-remote run by another user than the cache directory's owner (root
while glance-api runs as glance): it refuses, names the owner, and creates
nothing that glance-api could not open. Tests run as root: the other user
is simulated by patching os.geteuid.
"""

import io
import os
import pwd

import fixtures
import testtools

from glance_store_remote.cmd import main


class TestCacheOwner(testtools.TestCase):

    def setUp(self):
        super().setUp()
        folder = self.useFixture(fixtures.TempDir()).path
        self.cache_dir = os.path.join(folder, 'cache')
        os.mkdir(self.cache_dir)
        self.config = os.path.join(folder, 'glance-api.conf')
        with open(self.config, 'w') as f:
            f.write('[DEFAULT]\nenabled_backends = c:remote-glance\n[c]\n'
                    'auth_type = none\nendpoint_override = http://127.0.0.1:9'
                    '\nremote_glance_cache_dir = %s\n' % self.cache_dir)
        self.stderr = self.useFixture(
            fixtures.MonkeyPatch('sys.stderr', io.StringIO())).new_value
        self.useFixture(fixtures.MonkeyPatch('sys.stdout', io.StringIO()))
        self.owner = os.stat(self.cache_dir).st_uid

    def run_as(self, uid, *args):
        with fixtures.MonkeyPatch('os.geteuid', lambda: uid):
            return main.main(['--config-file', self.config] + list(args))

    def test_another_user_is_refused_and_nothing_is_created(self):
        name = pwd.getpwuid(self.owner).pw_name
        for args in (('cache', 'list'), ('cache', 'stats'),
                     ('cache', 'pin', 'some-id'), ('prefetch', 'some-id')):
            self.assertEqual(2, self.run_as(self.owner + 4242, *args), args)
            self.assertEqual([], os.listdir(self.cache_dir))
        error = self.stderr.getvalue()
        self.assertIn('belongs to %s (uid %d)' % (name, self.owner), error)
        self.assertIn('sudo -u %s' % name, error)
        self.assertIn('remote_glance_cache_dir', error)

    def test_the_owner_may(self):
        self.assertEqual(0, self.run_as(self.owner, 'cache', 'list'))
        self.assertIn('index.sqlite', os.listdir(self.cache_dir))
