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

"""Unit tests of record_rules.py: who may use a central image, what of its
record is copied. Applied by real edge Glance servers in
tests/functional/test_record_copy.py and test_link_authorization.py."""

from oslo_config import cfg
from oslo_config import fixture as config_fixture
import testtools

from glance_store_remote import opts
from glance_store_remote import record_rules
from tests.unit.base import Context

CENTRAL_ID = '6a1b0c5e-39a4-4b27-9b0f-3f5b1d1f0a11'
EDGE_ID = '0b8e5d4c-7b7a-4a4e-8b51-1f6a2d3c4e5f'
URI = 'remote-glance://central/' + CENTRAL_ID
RULES = record_rules.CopyRules()


def record(**fields):
    base = {'id': CENTRAL_ID, 'size': 10, 'checksum': 'c', 'status':
            'active', 'os_hash_algo': 'sha512', 'os_hash_value': 'h',
            'disk_format': 'raw', 'container_format': 'bare',
            'min_disk': 1, 'min_ram': 0, 'virtual_size': None,
            'visibility': 'private', 'owner': 'p1', 'tags': ['t'],
            'os_distro': 'cirros', 'os_glance_import_task': 'x',
            'locations': [], 'direct_url': 'file:///x'}
    base.update(fields)
    return base


def edge(**fields):
    base = {'size': None, 'checksum': None, 'os_hash_algo': None,
            'os_hash_value': None, 'disk_format': 'raw',
            'container_format': 'bare', 'min_disk': 0, 'min_ram': 0,
            'virtual_size': None, 'properties': {}}
    base.update(fields)
    return base


class TestMayUse(testtools.TestCase):

    def may_use(self, context, central, status=None, **kw):
        return record_rules.may_use(context, central, lambda project: status,
                                    **kw)

    def test_owner_public_and_community(self):
        self.assertTrue(self.may_use(Context('p1'), record()))
        self.assertFalse(self.may_use(Context('p2'), record()))
        for visibility in ('public', 'community'):
            self.assertTrue(self.may_use(Context('p2'),
                                         record(visibility=visibility)))

    def test_linking_needs_an_accepted_membership_seeing_any(self):
        shared = record(visibility='shared')
        for status, link, see in (('accepted', True, True),
                                  ('pending', False, True),
                                  ('rejected', False, True),
                                  (None, False, False)):
            self.assertEqual(link, self.may_use(Context('p2'), shared,
                                                status), status)
            self.assertEqual(see, self.may_use(
                Context('p2'), shared, status,
                member_statuses=record_rules.ANY_MEMBERSHIP), status)

    def test_admin_links_anything_the_service_role_nothing_more(self):
        self.assertTrue(self.may_use(Context('p2', is_admin=True), record()))
        # Glance's visibility ignores the service role, and every compute
        # node holds a service user's credentials.
        self.assertFalse(self.may_use(Context('p2', roles=['service']),
                                      record()))

    def test_a_service_token_beside_a_user_token_grants_nothing(self):
        # nova sends its service token with the user's: X-Service-Roles.
        context = Context('p2', service_roles=['service', 'admin'])
        self.assertFalse(self.may_use(context, record()))

    def test_no_project_sees_only_public_and_ownerless_images(self):
        self.assertFalse(self.may_use(Context(None), record(), 'accepted'))
        self.assertFalse(self.may_use(None, record()))
        # Glance shows an image without an owner to everyone.
        self.assertTrue(self.may_use(Context(None), record(owner=None)))
        # An empty owner is an owner, as in Glance (``owner is None``).
        self.assertFalse(self.may_use(None, record(owner='')))


class TestPlanCopy(testtools.TestCase):

    def test_copies_what_the_edge_lacks_and_only_allowed_properties(self):
        values, properties = record_rules.plan_copy(
            record(), edge(), 'sha512', RULES)
        self.assertEqual({'size': 10, 'checksum': 'c', 'min_disk': 1,
                          'os_hash_algo': 'sha512', 'os_hash_value': 'h'},
                         values)
        self.assertEqual({'os_distro': 'cirros'}, properties)

    def test_keeps_what_the_edge_has(self):
        values, properties = record_rules.plan_copy(
            record(min_ram=64), edge(min_disk=5, properties={
                'os_distro': 'ubuntu'}), 'sha512', RULES)
        self.assertNotIn('min_disk', values)
        self.assertEqual(64, values['min_ram'])
        self.assertEqual({}, properties)

    def test_data_disagreements_are_conflicts(self):
        self.assertEqual([], record_rules.data_conflicts(record(), edge()))
        for field, value in (('size', 11), ('checksum', 'x'),
                             ('disk_format', 'qcow2'),
                             ('container_format', 'ovf'),
                             ('os_hash_value', 'other')):
            conflicts = record_rules.data_conflicts(
                record(), edge(**{field: value}))
            self.assertEqual(1, len(conflicts), field)
            self.assertIn(field, conflicts[0])

    def test_hash_of_another_algorithm_is_left_to_glance(self):
        values, _ = record_rules.plan_copy(record(), edge(), 'sha256', RULES)
        self.assertNotIn('os_hash_value', values)
        self.assertEqual('c', values['checksum'])


class TestCopyRules(testtools.TestCase):

    CENTRAL = {
        'hw_disk_bus': 'virtio', 'os_distro': 'cirros',
        'trait:CUSTOM_X': 'required', 'img_config_drive': 'mandatory',
        'architecture': 'x86_64', 'hypervisor_type': 'qemu',
        'vm_mode': 'hvm', 'auto_disk_config': 'true',
        'os_glance_import_task': 'x', 'os_glance_failed_import': '',
        'cinder_encryption_key_id': 'k',
        'cinder_encryption_key_deletion_policy': 'on_image_deletion',
        'os_encrypt_key_id': 'k', 'os_encrypt_format': 'luks',
        'img_signature': 's', 'img_signature_certificate_uuid': 'c',
        'img_signature_hash_method': 'SHA-256',
        'img_signature_key_type': 'RSA-PSS', 'kernel_id': 'k1',
        'site_note': 'central only', 'direct_url': 'file:///x',
        'os_hash_value': 'h', 'owner': 'p1', 'min_ram': 1}
    DEFAULT = {'hw_disk_bus', 'os_distro', 'trait:CUSTOM_X',
               'img_config_drive', 'architecture', 'hypervisor_type',
               'vm_mode', 'auto_disk_config'}
    SIGNATURE = {'img_signature', 'img_signature_certificate_uuid',
                 'img_signature_hash_method', 'img_signature_key_type'}

    def copied(self, rules):
        return set(rules.properties(self.CENTRAL))

    def test_default_set_is_what_nova_reads(self):
        self.assertEqual(self.DEFAULT, self.copied(RULES))

    def test_extra_patterns_add_and_signatures_are_opt_in(self):
        rules = record_rules.CopyRules(
            record_rules.DEFAULT_COPIED_PROPERTIES + ('kernel_id', 'site_*'),
            signatures=True)
        self.assertEqual(self.DEFAULT | self.SIGNATURE | {
            'kernel_id', 'site_note'}, self.copied(rules))

    def test_no_pattern_reenables_the_deny_list_or_core_fields(self):
        rules = record_rules.CopyRules(('*',), signatures=True)
        copied = self.copied(rules)
        for name in ('os_glance_import_task', 'cinder_encryption_key_id',
                     'cinder_encryption_key_deletion_policy',
                     'os_encrypt_key_id', 'os_encrypt_format', 'direct_url',
                     'os_hash_value', 'owner'):
            self.assertNotIn(name, copied)
        self.assertTrue(self.SIGNATURE <= copied)

    def test_from_the_backend_options(self):
        conf = cfg.ConfigOpts()
        fixture = self.useFixture(config_fixture.Config(conf))
        conf.register_opts(opts.store_opts, group='central')
        fixture.config(group='central',
                       remote_glance_extra_properties=['kernel_id'],
                       remote_glance_copy_signatures=True)
        self.assertEqual(self.DEFAULT | self.SIGNATURE | {'kernel_id'},
                         self.copied(record_rules.CopyRules.from_conf(
                             conf, 'central')))

    def test_edge_row_has_the_allowed_properties_and_the_location(self):
        row = record_rules.edge_row(record(hw_disk_bus='virtio'), URI,
                                    'central', RULES)
        self.assertEqual({'os_distro': 'cirros', 'hw_disk_bus': 'virtio'},
                         row['properties'])
        self.assertEqual([{'url': URI, 'metadata': {'store': 'central'},
                           'status': 'active'}], row['locations'])
        self.assertEqual(('active', CENTRAL_ID, 'h'),
                         (row['status'], row['id'], row['os_hash_value']))
