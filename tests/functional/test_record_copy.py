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

"""Functional tests of the record copy (record_copy.py with the driver's
``get_size``) in the REAL edge's paste pipeline: central's record lands in
the edge database for every form in which Glance accepts a location, once
Glance has accepted it; conflicts are refused; a refused request writes
nothing. Header identities at the edge, Glance's default policy.
"""

import hashlib
import io
import time
import uuid

from glanceclient import exc as glance_exc

from tests.functional import base
from tests.harness import lab as lab_module

ALICE = lab_module.Identity('project-a', 'alice', ('member', 'reader'))
BOB = lab_module.Identity('project-b', 'bob', ('member', 'reader'))
PROPERTIES = {'os_distro': 'cirros', 'hw_disk_bus': 'virtio',
              'trait:CUSTOM_EDGE': 'required', 'hw_qemu_guest_agent': 'yes'}
# Central properties the edge must never copy by default.
NOT_COPIED = {'cinder_encryption_key_id': str(uuid.uuid4()),
              'cinder_encryption_key_deletion_policy': 'on_image_deletion',
              'img_signature': 'c2lnbmF0dXJl',
              'img_signature_certificate_uuid': str(uuid.uuid4()),
              'img_signature_hash_method': 'SHA-256',
              'img_signature_key_type': 'RSA-PSS',
              'site_secret_note': 'central only'}
V21 = 'application/openstack-images-v2.1-json-patch'
V20 = 'application/openstack-images-v2.0-json-patch'


def location(url):
    return {'url': url, 'metadata': {}}


# Every PATCH form in which Glance 33 accepts a location from a project
# member (doc/source/contributor/lab.rst): name -> (media type, operations
# for a URL).
PATCH_FORMS = {
    'v2.1 add /locations/-': (V21, lambda url: [
        {'op': 'add', 'path': '/locations/-', 'value': location(url)}]),
    'v2.1 add /locations/0': (V21, lambda url: [
        {'op': 'add', 'path': '/locations/0', 'value': location(url)}]),
    'v2.1 replace /locations': (V21, lambda url: [
        {'op': 'replace', 'path': '/locations',
         'value': [location(url)]}]),
    'v2.0 add': (V20, lambda url: [
        {'add': '/locations/-', 'value': location(url)}]),
    'v2.0 replace': (V20, lambda url: [
        {'replace': '/locations', 'value': [location(url)]}]),
    'normalised pointer': (V21, lambda url: [
        {'op': 'add', 'path': '/ locations/-', 'value': location(url)}]),
    'second operation': (V21, lambda url: [
        {'op': 'replace', 'path': '/name', 'value': 'renamed'},
        {'op': 'add', 'path': '/locations/-', 'value': location(url)}]),
}


class RecordTestCase(base.LabTestCase):

    def central_image(self, visibility='public', owner=None, **properties):
        props = dict(PROPERTIES, **properties)
        if owner:
            props['owner'] = owner
        image, data = self.make_central_image(
            size=256 * 1024, visibility=visibility, min_disk=2, min_ram=512,
            **props)
        return image, data

    def patch(self, image_id, media_type, ops, identity=lab_module.ADMIN):
        """PATCH the edge image; returns the response (never raises)."""
        return self.edge_session(identity).patch(
            '%s/v2/images/%s' % (self.lab.edge.url, image_id), json=ops,
            headers={'Content-Type': media_type}, raise_exc=False)

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

    def wait_for_copy(self, edge_id, identity=lab_module.ADMIN, timeout=30):
        """The edge record once min_ram was copied: after Glance's location
        task, the copy follows within about a second.
        """
        deadline = time.monotonic() + timeout
        while True:
            edge = self.edge_glance(identity).images.get(edge_id)
            if edge.min_ram or time.monotonic() > deadline:
                return edge
            time.sleep(0.2)

    def file_gets(self, central_id):
        return [e for e in self.central_requests('GET', central_id)
                if e.path.endswith('/file')]


class TestRecordCopy(RecordTestCase):

    def test_every_patch_form_gets_central_record(self):
        central, data = self.central_image()
        for name, (media_type, ops) in PATCH_FORMS.items():
            edge = self.make_edge_image()
            response = self.patch(edge.id, media_type,
                                  ops(self.location_of(central.id)))
            self.assertEqual(200, response.status_code,
                             '%s: %s' % (name, response.text))
            shown = self.edge_glance().images.get(edge.id)
            self.assertEqual('active', shown.status, name)
            self.assert_matches_central(shown, central)
        self.assertEqual(data, self.download(edge.id, central))

    def test_post_location_gets_central_record_after_the_task(self):
        central, data = self.central_image()
        edge = self.wait_for_copy(self.link_with_post(central.id).id)
        self.assert_matches_central(edge, central)
        # Glance's task hashed the data once, through the driver's cache.
        self.assertEqual(1, len(self.file_gets(central.id)))
        self.assertEqual(data, self.download(edge.id, central))
        self.assertEqual(1, len(self.file_gets(central.id)))

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

    def test_only_the_allowlist_is_copied(self):
        central, _ = self.central_image()
        # After the upload: central verifies signatures only at upload.
        central = self.central_glance.images.update(central.id, **NOT_COPIED)
        edge = self.add_location(self.make_edge_image().id, central.id)
        self.assertEqual([], [key for key in edge
                              if key.startswith('os_glance_') or
                              key in NOT_COPIED])
        self.assertEqual('virtio', edge.hw_disk_bus)

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

    def test_a_patch_glance_refuses_writes_nothing(self):
        central, _ = self.central_image()
        mine = self.make_edge_image()
        # The driver authorizes the location, then Glance rejects the whole
        # patch for its second operation: nothing may be copied.
        response = self.patch(mine.id, V21, [
            {'op': 'add', 'path': '/locations/-',
             'value': location(self.location_of(central.id))},
            {'op': 'replace', 'path': '/min_ram', 'value': 'not-a-number'}])
        self.assertEqual(400, response.status_code)
        time.sleep(1.5)   # longer than the copier's retry interval
        after = self.edge_glance().images.get(mine.id)
        self.assertEqual(('queued', None, None, None, 0),
                         (after.status, after.size, after.checksum,
                          after.get('os_distro'), after.min_ram))


class TestRecordCopyAfterGlancesTask(RecordTestCase):
    """Glance's default configuration (no worker_self_reference_url): the
    location task sets the image active before it hashes the data, then
    saves the image again with purge_props. The copy must come after that
    save, or it is wiped.
    """

    LAB = {'proxy': True,
           'edge_options': {'DEFAULT': {'worker_self_reference_url': ''}}}

    def test_post_copy_survives_the_task(self):
        central, _ = self.make_central_image(
            size=2 * 1024 * 1024, visibility='public', min_disk=2,
            min_ram=512, **PROPERTIES)
        # The task reads the image through the driver for about 4 s.
        self.lab.proxy.arm(rate=512 * 1024)
        edge = self.make_edge_image()
        client = self.edge_glance()
        client.images.add_image_location(edge.id,
                                         self.location_of(central.id))
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            shown = client.images.get(edge.id)
            if 'os_glance_import_task' not in shown and shown.min_ram:
                break
            time.sleep(0.2)
        self.assert_matches_central(shown, central)
        # Glance's task saved for the last time before the copy: it stays.
        # A new client after the wait: gunicorn closes a connection idle for
        # its keep-alive (2 s), and a request racing that close on the old
        # connection would see it reset.
        time.sleep(2)
        self.assert_matches_central(
            self.edge_glance().images.get(edge.id), central)


class TestOffline(RecordTestCase):
    """What nova does at the edge with central cut."""

    def test_list_show_and_verified_download_with_central_down(self):
        central, data = self.central_image()
        edge = self.wait_for_copy(self.link_with_post(central.id).id)
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


class TestUnknownCentralImage(RecordTestCase):

    def test_missing_central_image_is_still_400(self):
        edge = self.make_edge_image()
        self.assertRaises(glance_exc.HTTPBadRequest, self.add_location,
                          edge.id, str(uuid.uuid4()))

    def test_non_remote_locations_pass_untouched(self):
        edge = self.make_edge_image()
        self.edge_glance().images.upload(edge.id, io.BytesIO(b'x' * 512))
        self.assertEqual('active', self.edge_glance().images.get(
            edge.id).status)
