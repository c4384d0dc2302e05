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

"""Unit tests of opts.py: every option is documented, prefixed and bounded,
and the sample-config listing carries keystoneauth1's standard options."""

import os

import fixtures
from oslo_config import cfg
from oslo_config import generator
import testtools

from glance_store_remote import opts


class TestStoreOpts(testtools.TestCase):

    def test_our_options_are_prefixed_documented_and_bounded(self):
        for opt in opts.store_opts:
            self.assertTrue(opt.name.startswith('remote_glance_'), opt.name)
            self.assertIn('Possible values:', opt.help, opt.name)
            self.assertIn('default', opt.help, opt.name)
            if isinstance(opt, cfg.IntOpt):
                self.assertIsNotNone(opt.type.min, opt.name)

    def test_units_are_named_in_the_summary_line(self):
        summaries = {opt.name: opt.help.strip().splitlines()[0]
                     for opt in opts.store_opts}
        self.assertIn('in bytes', summaries['remote_glance_chunk_size'])
        self.assertIn('in seconds', summaries['remote_glance_record_ttl'])
        self.assertIn('in bytes', summaries['remote_glance_cache_max_size'])
        self.assertIn('in seconds',
                      summaries['remote_glance_breaker_reset'])
        self.assertIn('as a count',
                      summaries['remote_glance_breaker_threshold'])


class TestListOpts(testtools.TestCase):

    def test_sample_group_has_keystoneauth_options_with_our_defaults(self):
        [(group, listed)] = opts.list_opts()
        self.assertEqual('central', group)
        by_name = {opt.dest: opt for opt in listed}
        for name in ('auth_type', 'auth_url', 'password', 'region_name',
                     'endpoint_override', 'valid_interfaces', 'cafile',
                     'insecure', 'timeout', 'remote_glance_chunk_size'):
            self.assertIn(name, by_name)
        self.assertEqual('image', by_name['service_type'].default)
        self.assertEqual(30, by_name['timeout'].default)
        self.assertFalse(by_name['insecure'].default)

    def test_listing_does_not_change_the_registered_options(self):
        opts.list_opts()[0][1][0].default = 1
        self.assertEqual(4 * 1024 * 1024, opts.store_opts[0].default)


class TestRegisterKeystoneauthOpts(testtools.TestCase):

    def test_registering_twice_is_harmless_and_keeps_defaults(self):
        conf = cfg.ConfigOpts()
        conf([], project='glance')
        opts.register_keystoneauth_opts(conf, 'central')
        opts.register_keystoneauth_opts(conf, 'central')
        self.assertEqual(30, conf.central.timeout)
        self.assertEqual(['public'], conf.central.valid_interfaces)
        self.assertEqual('image', conf.central.service_type)


class TestSampleFile(testtools.TestCase):

    def test_the_shipped_sample_is_what_the_options_generate(self):
        # `tox -e genconfig` writes it; a changed option or help text
        # without a new sample fails here.
        root = os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__))))
        out = os.path.join(self.useFixture(fixtures.TempDir()).path, 'conf')
        generator.main(['--config-file', os.path.join(
            root, 'etc', 'oslo-config-generator', 'glance-store-remote.conf'),
            '--output-file', out])
        with open(out) as generated, open(os.path.join(
                root, 'etc', 'glance-store-remote.conf.sample')) as shipped:
            self.assertEqual(generated.read(), shipped.read(),
                             'etc/glance-store-remote.conf.sample is stale: '
                             'run tox -e genconfig')
