"""Functional tests of the metadata hook (metadata.py) in the REAL edge's
paste pipeline: record copy at location add, conflict refusal, and the
two-project authorization cases, with header identities at the edge.
"""

import hashlib
import io
import os
import uuid

from glanceclient import exc as glance_exc

from tests.functional import base
from tests import lab as lab_module

ALICE = lab_module.Identity('project-a', 'alice', ('member', 'reader'))
BOB = lab_module.Identity('project-b', 'bob', ('member', 'reader'))
PROPERTIES = {'os_distro': 'cirros', 'hw_disk_bus': 'virtio',
              'trait:CUSTOM_EDGE': 'required', 'hw_qemu_guest_agent': 'yes'}


class MetadataTestCase(base.LabTestCase):

    def central_image(self, visibility='public', owner=None, **properties):
        props = dict(PROPERTIES, **properties)
        if owner:
            props['owner'] = owner
        image, data = self.make_central_image(
            size=256 * 1024, visibility=visibility, min_disk=2, min_ram=512,
            **props)
        return image, data

    def add_location(self, edge_id, central_id, identity=lab_module.ADMIN):
        self.edge_glance(identity).images.add_location(
            edge_id, self.location_of(central_id), {})
        return self.edge_glance(identity).images.get(edge_id)

    def assert_matches_central(self, edge, central):
        for field in ('size', 'checksum', 'os_hash_algo', 'os_hash_value',
                      'disk_format', 'container_format', 'min_disk',
                      'min_ram'):
            self.assertEqual(central[field], edge[field], field)
        for key, value in PROPERTIES.items():
            self.assertEqual(value, edge.get(key), key)

    def file_gets(self, central_id):
        return [e for e in self.central_requests('GET', central_id)
                if e.path.endswith('/file')]


class TestRecordCopy(MetadataTestCase):

    def test_patch_location_makes_image_show_match_central(self):
        central, data = self.central_image()
        edge = self.add_location(self.make_edge_image().id, central.id)
        self.assertEqual('active', edge.status)
        self.assert_matches_central(edge, central)
        self.assertNotIn('os_glance_import_task', edge)
        # glanceclient now verifies the edge record's own os_hash, as nova.
        self.assertEqual(data, self.download(edge.id, central))

    def test_post_location_copies_the_hash_without_reading_the_data(self):
        central, _ = self.central_image()
        edge = self.link_with_post(central.id)
        self.assert_matches_central(edge, central)
        self.assertEqual([], self.file_gets(central.id))

    def test_same_id_at_the_edge_works_the_same(self):
        central, data = self.central_image()
        self.edge_glance().images.create(
            id=central.id, name='same', disk_format='raw',
            container_format='bare')
        edge = self.add_location(central.id, central.id)
        self.assertEqual(central.id, edge.id)
        self.assert_matches_central(edge, central)
        self.assertEqual(data, self.download(edge.id, central))

    def test_values_the_edge_already_has_are_kept(self):
        central, _ = self.central_image()
        mine = self.make_edge_image(min_ram=4096, os_distro='ubuntu')
        edge = self.add_location(mine.id, central.id)
        self.assertEqual(4096, edge.min_ram)
        self.assertEqual('ubuntu', edge.os_distro)
        self.assertEqual(2, edge.min_disk)
        self.assertEqual('virtio', edge.hw_disk_bus)

    def test_reserved_keys_are_not_copied(self):
        central, _ = self.central_image()
        edge = self.add_location(self.make_edge_image().id, central.id)
        self.assertEqual([], [key for key in edge
                              if key.startswith('os_glance_')])

    def test_a_conflicting_format_is_400_and_the_record_stays(self):
        central, _ = self.central_image()
        for formats in ({'disk_format': 'qcow2'},
                        {'container_format': 'ovf'}):
            mine = self.edge_glance().images.create(
                name='conflict', **dict({'disk_format': 'raw',
                                         'container_format': 'bare'},
                                        **formats))
            self.assertRaises(glance_exc.HTTPBadRequest, self.add_location,
                              mine.id, central.id)
            after = self.edge_glance().images.get(mine.id)
            self.assertEqual('queued', after.status)
            self.assertIsNone(after.size)
            self.assertIsNone(after.get('os_distro'))
        self.assertIn('does not match edge image', self.lab.edge.log_text())

    def test_a_patch_glance_refuses_leaves_no_copy_behind(self):
        central, _ = self.central_image()
        mine = self.make_edge_image()
        # The hook copies the record, then Glance rejects the whole patch
        # for its second operation: the copy must be undone.
        response = self.edge_session().patch(
            '%s/v2/images/%s' % (self.lab.edge.url, mine.id),
            json=[{'op': 'add', 'path': '/locations/-',
                   'value': {'url': self.location_of(central.id),
                             'metadata': {}}},
                  {'op': 'replace', 'path': '/min_ram',
                   'value': 'not-a-number'}],
            headers={'Content-Type':
                     'application/openstack-images-v2.1-json-patch'},
            raise_exc=False)
        self.assertEqual(400, response.status_code)
        after = self.edge_glance().images.get(mine.id)
        self.assertEqual(('queued', None, None, None, 0),
                         (after.status, after.size, after.checksum,
                          after.get('os_distro'), after.min_ram))
        self.assertIn('the copied record is undone',
                      self.lab.edge.log_text())


class TestAuthorization(MetadataTestCase):

    def refused(self, identity, central_id):
        edge = self.make_edge_image(identity)
        self.assertRaises(glance_exc.HTTPForbidden, self.add_location,
                          edge.id, central_id, identity)
        after = self.edge_glance(identity).images.get(edge.id)
        self.assertEqual(('queued', None, None),
                         (after.status, after.size, after.get('os_distro')))
        self.assertEqual([], self.file_gets(central_id))
        self.assertFalse(any(name.startswith(central_id) for sub in
                             ('entries', 'partial') for name in os.listdir(
                                 os.path.join(self.lab.cache_dir, sub))))

    def allowed(self, identity, central_id):
        edge = self.make_edge_image(identity)
        self.assertEqual('active', self.add_location(
            edge.id, central_id, identity).status)

    def test_private_image_only_for_its_owner_project(self):
        central, _ = self.central_image('private', owner=ALICE.project_id)
        self.refused(BOB, central.id)
        self.allowed(ALICE, central.id)

    def test_shared_image_only_for_accepted_members(self):
        central, _ = self.central_image('shared', owner=ALICE.project_id)
        self.refused(BOB, central.id)
        self.central_glance.image_members.create(central.id, BOB.project_id)
        self.refused(BOB, central.id)       # pending
        self.central_glance.image_members.update(central.id, BOB.project_id,
                                                 'accepted')
        self.allowed(BOB, central.id)
        self.central_glance.image_members.update(central.id, BOB.project_id,
                                                 'rejected')
        self.refused(BOB, central.id)

    def test_public_and_community_images_for_everyone(self):
        for visibility in ('public', 'community'):
            central, _ = self.central_image(visibility,
                                            owner=ALICE.project_id)
            self.allowed(BOB, central.id)

    def test_admin_links_anything(self):
        central, _ = self.central_image('private', owner=ALICE.project_id)
        self.allowed(lab_module.ADMIN, central.id)


class TestOffline(MetadataTestCase):
    """What nova does at the edge with central cut."""

    def test_list_show_and_verified_download_with_central_down(self):
        central, data = self.central_image()
        edge = self.link_with_post(central.id)
        self.download(edge.id, central)
        self.lab.central.stop()
        client = self.edge_glance()
        self.assertIn(edge.id, [i.id for i in client.images.list()])
        shown = client.images.get(edge.id)
        self.assert_matches_central(shown, central)
        body = b''.join(client.images.data(edge.id))  # glanceclient checks
        self.assertEqual(shown.os_hash_value,
                         hashlib.new(shown.os_hash_algo, body).hexdigest())
        self.assertEqual(data, body)


class TestUnknownCentralImage(MetadataTestCase):

    def test_missing_central_image_is_still_400(self):
        edge = self.make_edge_image()
        self.assertRaises(glance_exc.HTTPBadRequest, self.add_location,
                          edge.id, str(uuid.uuid4()))

    def test_non_remote_locations_pass_untouched(self):
        edge = self.make_edge_image()
        self.edge_glance().images.upload(edge.id, io.BytesIO(b'x' * 512))
        self.assertEqual('active', self.edge_glance().images.get(
            edge.id).status)
