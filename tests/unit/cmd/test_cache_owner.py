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

"""glance-remote run by another user than the cache directory's owner (root
while glance-api runs as glance): it refuses, names the owner, and creates
nothing that glance-api could not open. Tests run as root: the other user
is simulated by patching os.geteuid.
"""

import os
import pwd

import fixtures

from tests.unit.cmd import base


class TestCacheOwner(base.CliTestCase):

    def setUp(self):
        super().setUp()
        os.mkdir(self.cache_dir)
        self.owner = os.stat(self.cache_dir).st_uid

    def run_as(self, uid, *args):
        with fixtures.MonkeyPatch('os.geteuid', lambda: uid):
            return self.run_cli(*args)

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
