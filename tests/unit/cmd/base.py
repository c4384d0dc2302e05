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

"""A glance-remote command line test: a glance-api.conf with one
remote-glance backend ``c`` whose cache lives in a temp dir, and the
command's output captured."""

import io
import os
from unittest import mock

import fixtures
import testtools

from glance_store_remote.cmd import main


class CliTestCase(testtools.TestCase):

    def setUp(self):
        super().setUp()
        folder = self.useFixture(fixtures.TempDir()).path
        self.cache_dir = os.path.join(folder, 'cache')
        self.config = os.path.join(folder, 'glance-api.conf')
        with open(self.config, 'w') as f:
            f.write('[DEFAULT]\nenabled_backends = c:remote-glance\n[c]\n'
                    'auth_type = none\nendpoint_override = http://127.0.0.1:9'
                    '\nremote_glance_cache_dir = %s\n' % self.cache_dir)
        self.stdout = self.useFixture(
            fixtures.MonkeyPatch('sys.stdout', io.StringIO())).new_value
        self.stderr = self.useFixture(
            fixtures.MonkeyPatch('sys.stderr', io.StringIO())).new_value

    def run_cli(self, *args):
        return main.main(['--config-file', self.config] + list(args))

    def mock_central(self):
        """Make the command's central a mock (``self.central``) that fails
        the test if image data is asked of it.
        """
        self.central = mock.Mock(backend='c')
        self.central.open_data.side_effect = AssertionError('data asked')
        for where in ('glance_store_remote.cmd.config.central',
                      'glance_store_remote.backend._central'):
            self.useFixture(fixtures.MonkeyPatch(
                where, lambda *args, **kwargs: self.central))
