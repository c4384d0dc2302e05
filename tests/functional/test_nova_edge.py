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

"""The nova tier: a REAL nova 34 boots servers at the edge
(tests/harness/nova.py).

Nova's ``[glance]`` is the EDGE Glance (this driver, the record-copy
filter, keystonemiddleware), as on an edge compute node; libvirt runs qemu
in TCG. Images are real: a qcow2 made with qemu-img and a raw one, uploaded
to central with the properties nova reads, linked at the edge the
documented way (image-create, then location-add). Neutron is a loopback
STAND-IN answering empty lists (servers are created with
``networks='none'``); no neutron-server runs.

One lab for the class (about 1-2 minutes to start); servers are deleted as
soon as a test has looked at them. Times are measured and attached to
each test as details (``time-to-active``, ``time-to-error``), and written
as JSON lines to the file named by ``GSR_NOVA_TIMINGS`` if set; nothing
asserts on them but a "not a hang" bound.
"""

import hashlib
import json
import os
import subprocess
import time
import uuid

import fixtures
import testtools
from testtools import content

from tests.functional import base
from tests.harness import nova

MICROVERSION = '2.95'     # networks='none' needs 2.37; aggregate images 2.81
BOOT_TIMEOUT = 240        # seconds for a server to leave BUILD
NOT_A_HANG = 120          # the bound a failing boot must end within
TEST_TIMEOUT = 900        # a test boots up to three servers
MiB = 1024 * 1024
USER = 'alice'            # a member of project-a: boots servers
OPERATOR = 'operator'     # admin: images, flavors, aggregates


def _qemu_img(*args):
    subprocess.run(['qemu-img'] + list(args), check=True, timeout=120,
                   capture_output=True)


class NovaEdgeTestCase(base.LabTestCase):

    LAB_CLASS = nova.NovaLab

    @classmethod
    def setUpClass(cls):
        reason = nova.unavailable_reason()
        if reason:
            raise testtools.TestCase.skipException(reason)
        super().setUpClass()
        cls.work = os.path.join(cls.lab.root, 'test-images')
        os.makedirs(cls.work)
        cls._flavors = {}
        cls._cached = {}

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(TEST_TIMEOUT, gentle=True))

    # -- clients ---------------------------------------------------------

    @property
    def central_glance(self):
        return self.lab.glance(OPERATOR, self.lab.central)

    def edge_glance_as(self, user=OPERATOR):
        return self.lab.glance(user, self.lab.edge)

    def nova(self, user=USER):
        return self.lab.compute(user)

    def _attach_logs(self, exc_info):
        super()._attach_logs(exc_info)
        for name in ('nova-compute', 'nova-conductor'):
            self.addDetail(name + '-log', content.text_content(
                self.lab.service_log(name, 80)))

    def report(self, name, seconds, **more):
        """Attach a measured time (and write it to GSR_NOVA_TIMINGS)."""
        self.addDetail(name, content.text_content('%.2f s %s' % (
            seconds, json.dumps(more) if more else '')))
        path = os.environ.get('GSR_NOVA_TIMINGS')
        if path:
            with open(path, 'a') as f:
                f.write(json.dumps(dict(more, test=self.id(), what=name,
                                        seconds=round(seconds, 2))) + '\n')

    # -- images ----------------------------------------------------------

    def make_disk(self, disk_format):
        """A real disk image file: (path, its raw conversion's path).

        qcow2: 64 MiB virtual, 5 MiB of random data written at two places;
        raw: 8 MiB with 4 MiB random.
        """
        name = uuid.uuid4().hex[:8]
        raw = os.path.join(self.work, name + '.raw')
        virtual = 64 * MiB if disk_format == 'qcow2' else 8 * MiB
        with open(raw, 'wb') as f:
            f.truncate(virtual)
            f.write(os.urandom(4 * MiB))
            f.seek(virtual // 2)
            f.write(os.urandom(MiB if disk_format == 'qcow2' else 0))
        if disk_format == 'raw':
            return raw, raw
        path = os.path.join(self.work, name + '.qcow2')
        _qemu_img('convert', '-f', 'raw', '-O', 'qcow2', raw, path)
        return path, raw

    def central_image(self, disk_format='qcow2', min_disk=1, min_ram=64,
                      **properties):
        """Upload a real image to central (public, with the properties nova
        reads); return (central record, raw conversion path).
        """
        path, raw = self.make_disk(disk_format)
        properties.setdefault('hw_disk_bus', 'virtio')
        properties.setdefault('hw_qemu_guest_agent', 'no')
        glance = self.central_glance
        image = glance.images.create(
            name='nova-%s-%s' % (disk_format, uuid.uuid4().hex[:6]),
            disk_format=disk_format, container_format='bare',
            visibility='public', min_disk=min_disk, min_ram=min_ram,
            **properties)
        with open(path, 'rb') as f:
            glance.images.upload(image.id, f)
        return glance.images.get(image.id), raw

    def link(self, central):
        """Link central's image at the edge the documented way (an image
        record, then ``location-add``); the record-copy filter copies
        central's record. Returns the edge image.
        """
        glance = self.edge_glance_as(OPERATOR)
        image = glance.images.create(
            name='linked', disk_format=central.disk_format,
            container_format='bare', visibility='public')
        glance.images.add_location(image.id, self.location_of(central.id), {})
        return glance.images.get(image.id)

    def linked_image(self, disk_format='qcow2', **properties):
        """(edge image, central image, raw conversion path)."""
        central, raw = self.central_image(disk_format, **properties)
        return self.link(central), central, raw

    def base_file(self, image_id):
        """nova's cached base image of *image_id* (``_base/<sha1>``)."""
        return os.path.join(self.lab.base_dir, hashlib.sha1(
            image_id.encode()).hexdigest())

    def assert_base_is_raw_of(self, image_id, raw):
        with open(self.base_file(image_id), 'rb') as f:
            base_bytes = f.read()
        with open(raw, 'rb') as f:
            expected = f.read()
        self.assertEqual(len(expected), len(base_bytes))
        self.assertTrue(base_bytes == expected,
                        "nova's base file differs from central's image")

    def central_data_gets(self, central_id):
        """Image data GETs central answered for *central_id*."""
        return [e for e in self.lab.central.access_entries()
                if e.method == 'GET' and
                e.path.endswith('/images/%s/file' % central_id) and
                e.status in ('200', '206')]

    def edge_data_gets(self, edge_id):
        return [e for e in self.lab.edge.access_entries()
                if e.method == 'GET' and
                e.path.endswith('/images/%s/file' % edge_id)]

    # -- flavors and servers ---------------------------------------------

    def flavor(self, ram=128, disk=1):
        key = (ram, disk)
        if key not in self._flavors:
            answer = self.lab.compute(OPERATOR).post('/flavors', json={
                'flavor': {'name': 'gsr-%d-%d' % key, 'ram': ram,
                           'vcpus': 1, 'disk': disk}},
                microversion=MICROVERSION).json()
            self._flavors[key] = answer['flavor']['id']
        return self._flavors[key]

    def create_server(self, image_id, flavor=None, user=USER,
                      raise_exc=True):
        """POST /servers with networks='none'; returns the response."""
        return self.nova(user).post('/servers', json={'server': {
            'name': 'edge-%s' % uuid.uuid4().hex[:6], 'imageRef': image_id,
            'flavorRef': flavor or self.flavor(), 'networks': 'none'}},
            microversion=MICROVERSION, raise_exc=raise_exc)

    def show(self, server_id, user=USER):
        return self.nova(user).get('/servers/%s' % server_id,
                                   microversion=MICROVERSION).json()['server']

    def boot(self, image_id, user=USER):
        """Create a server and wait until it leaves BUILD; returns (server,
        seconds from the create request to that status). The server is
        deleted at cleanup.
        """
        began = time.monotonic()
        server_id = self.create_server(image_id, user=user).json()[
            'server']['id']
        self.addCleanup(self.delete_server, server_id)
        deadline = began + BOOT_TIMEOUT
        while True:
            server = self.show(server_id, user)
            if server['status'] in ('ACTIVE', 'ERROR'):
                return server, time.monotonic() - began
            if time.monotonic() > deadline:
                self.fail('server %s still %s after %ss' % (
                    server_id, server['status'], BOOT_TIMEOUT))
            time.sleep(0.25)

    def boot_active(self, image_id, label='time-to-active'):
        server, seconds = self.boot(image_id)
        self.assertEqual('ACTIVE', server['status'], server.get('fault'))
        self.report(label, seconds, image=image_id)
        return server

    def delete_server(self, server_id):
        """Delete and wait (bounded) until nova has let it go, so that its
        qemu process is gone before the next boot.
        """
        adapter = self.nova(OPERATOR)
        adapter.delete('/servers/%s' % server_id, raise_exc=False)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if adapter.get('/servers/%s' % server_id,
                           raise_exc=False).status_code == 404:
                return
            time.sleep(0.5)

    def cached_image(self, disk_format='qcow2'):
        """An edge image the edge has cached (one boot with central up);
        made once per class. Returns (edge image, central image, raw path).
        """
        if disk_format not in self._cached:
            edge, central, raw = self.linked_image(disk_format)
            server = self.boot_active(edge.id)
            self.delete_server(server['id'])
            self._cached[disk_format] = (edge, central, raw)
        return self._cached[disk_format]


class TestNovaAtTheEdge(NovaEdgeTestCase):

    def test_boot_with_central_up_reads_central_once(self):
        for disk_format in ('qcow2', 'raw'):
            edge, central, raw = self.linked_image(disk_format)
            server = self.boot_active(edge.id, 'time-to-active-' +
                                      disk_format)
            self.assertEqual(edge.id, server['image']['id'])
            # nova's own cache holds exactly central's image, as raw.
            self.assert_base_is_raw_of(edge.id, raw)
            self.assertEqual(1, len(self.central_data_gets(central.id)))
        self.report('lab-setup', self.lab.setup_time)

    def _boot_cut(self, cut, disk_format):
        edge, central, raw = self.cached_image(disk_format)
        os.remove(self.base_file(edge.id))
        served_before = len(self.edge_data_gets(edge.id))
        cut()
        self.boot_active(edge.id, 'time-to-active-cut')
        # The edge served the bytes again, not nova's own cache.
        self.assertEqual(served_before + 1, len(self.edge_data_gets(edge.id)))
        self.assert_base_is_raw_of(edge.id, raw)
        self.assertEqual(1, len(self.central_data_gets(central.id)))

    def test_boot_with_central_stopped_from_the_edge_cache(self):
        self._boot_cut(self.lab.central.stop, 'qcow2')

    def test_boot_with_central_frozen_from_the_edge_cache(self):
        self._boot_cut(self.lab.central.freeze, 'raw')

    def _boot_uncached(self, cut):
        edge, central, _ = self.linked_image('qcow2')
        cut()
        server, seconds = self.boot(edge.id)
        self.assertEqual('ERROR', server['status'])
        self.assertLess(seconds, NOT_A_HANG)
        fault = server['fault']['message']
        self.report('time-to-error', seconds, fault=fault)
        self.addDetail('fault', content.text_content(json.dumps(
            server['fault'])))
        # Named (the edge image the user booted: see
        # doc/source/admin/nova-edge.rst), said plainly, whole (nova keeps
        # 255 characters), and nothing of central's address.
        self.assertIn('image %s is not available at this edge now: central '
                      'cannot be reached and the image is not held here'
                      % edge.id, fault)
        central_url = self.lab.central.url
        for secret in (central_url, central_url.split('//')[1],
                       ':%d' % self.lab.central.port, 'remote-glance',
                       '&#', '<br'):
            self.assertNotIn(secret, json.dumps(server['fault']))
        self.assertEqual([], self.central_data_gets(central.id))

    def test_uncached_image_with_central_stopped_fails_promptly(self):
        self._boot_uncached(self.lab.central.stop)

    def test_uncached_image_with_central_frozen_fails_promptly(self):
        self._boot_uncached(self.lab.central.freeze)

    def test_unknown_image_refused_by_nova_api(self):
        unknown = str(uuid.uuid4())
        for cut in (lambda: None, self.lab.central.stop):
            cut()
            answer = self.create_server(unknown, raise_exc=False)
            self.assertEqual(400, answer.status_code, answer.text)
            self.assertIn('Can not find requested image',
                          answer.json()['badRequest']['message'])

    def test_flavor_too_small_refused_offline(self):
        edge, _, _ = self.linked_image('raw', min_disk=2, min_ram=256)
        self.lab.central.stop()
        # The record nova checks comes from the edge's copy.
        self.assertEqual((2, 256), (
            self.edge_glance_as(USER).images.get(edge.id).min_disk,
            self.edge_glance_as(USER).images.get(edge.id).min_ram))
        for flavor, message in (
                (self.flavor(ram=512, disk=1),
                 "Flavor's disk is smaller than the minimum size specified "
                 "in image metadata. Flavor disk is 1073741824 bytes, "
                 "minimum size is 2147483648 bytes."),
                (self.flavor(ram=128, disk=2),
                 "Flavor's memory is too small for requested image.")):
            answer = self.create_server(edge.id, flavor=flavor,
                                        raise_exc=False)
            self.assertEqual(400, answer.status_code, answer.text)
            self.assertEqual(message,
                             answer.json()['badRequest']['message'])

    def test_on_demand_boot_by_central_id(self):
        central, raw = self.central_image('qcow2')
        edge = self.lab.edge
        edge.set_options({'central': {'remote_glance_import_on_demand':
                                      True}})
        edge.restart()
        self.addCleanup(self._on_demand_off)
        self.boot_active(central.id, 'time-to-active-on-demand')
        self.assert_base_is_raw_of(central.id, raw)
        self.assertEqual(1, len(self.central_data_gets(central.id)))

    def _on_demand_off(self):
        self.lab.edge.set_options({'central': {
            'remote_glance_import_on_demand': False}})
        self.lab.edge.restart()

    def test_aggregate_precache_then_boot_offline(self):
        edge, central, raw = self.linked_image('qcow2')
        admin = self.lab.compute(OPERATOR)
        aggregate = admin.post('/os-aggregates', json={'aggregate': {
            'name': 'edge-%s' % uuid.uuid4().hex[:6]}},
            microversion=MICROVERSION).json()['aggregate']
        self.addCleanup(self._drop_aggregate, aggregate['id'])
        admin.post('/os-aggregates/%s/action' % aggregate['id'], json={
            'add_host': {'host': nova.COMPUTE_HOST}},
            microversion=MICROVERSION)
        began = time.monotonic()
        answer = admin.post('/os-aggregates/%s/images' % aggregate['id'],
                            json={'cache': [{'id': edge.id}]},
                            microversion=MICROVERSION)
        self.assertEqual(202, answer.status_code)
        deadline = began + BOOT_TIMEOUT
        while not os.path.exists(self.base_file(edge.id)):
            if time.monotonic() > deadline:
                self.fail('nova did not pre-cache image %s' % edge.id)
            time.sleep(0.25)
        self.report('time-to-precache', time.monotonic() - began)
        self.assertEqual(1, len(self.central_data_gets(central.id)))
        self.lab.central.stop()
        self.boot_active(edge.id, 'time-to-active-precached')
        self.assert_base_is_raw_of(edge.id, raw)

    def _drop_aggregate(self, aggregate_id):
        admin = self.lab.compute(OPERATOR)
        admin.post('/os-aggregates/%s/action' % aggregate_id, json={
            'remove_host': {'host': nova.COMPUTE_HOST}},
            microversion=MICROVERSION, raise_exc=False)
        admin.delete('/os-aggregates/%s' % aggregate_id, raise_exc=False)
