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

"""A chain of REAL Glance servers: far edges -> edge -> central.

Each far edge's remote-glance backend (``regional``) reads the edge, whose
own backend (``central``) reads central; both edges cache and import on
demand (tests.harness.lab.ChainLab). Clients are glanceclient and the
``glance-remote`` CLI, as operators and nova use them.
"""

import hashlib
import json
import os
import subprocess

import fixtures
import requests
from testtools import content

from tests.functional import base
from tests.harness import lab as lab_module

PROJECT_A = lab_module.Identity('project-a', 'alice', ('member', 'reader'))
MiB = base.MiB


class ChainTestCase(base.LabTestCase):

    LAB_CLASS = lab_module.ChainLab

    def setUp(self):
        super().setUp()
        for server in (self.lab.edge, self.lab.far, self.lab.far2):
            if not server.running:
                server.start()

    def _attach_logs(self, exc_info):
        super()._attach_logs(exc_info)
        self.addDetail('far-edge-log', content.text_content(
            self.lab.far.log_tail(60)))

    # -- helpers -------------------------------------------------------------

    def far_glance(self, identity=PROJECT_A):
        return self.lab.far.glance(identity)

    def public_image(self, size=6 * MiB + 5, **properties):
        return self.make_central_image(size=size, visibility='public',
                                       owner='project-c', **properties)

    def far_download(self, central, identity=PROJECT_A):
        """Download at the far edge as nova does and check the bytes
        against central's own hash; wait for both edges' commits.
        """
        data = b''.join(self.far_glance(identity).images.data(central.id))
        self.wait_fills_done()
        self.wait_fills_done(cache_dir=self.lab.far_cache_dir)
        self.assertEqual(central.os_hash_value, hashlib.new(
            central.os_hash_algo, data).hexdigest())
        return data

    def file_gets(self, server, image_id):
        """Data GETs of *image_id* that *server* answered to the driver of
        the level below it.
        """
        return [e for e in self.central_requests('GET', server=server)
                if e.path.endswith('/images/%s/file' % image_id) and
                'glance-store-remote' in e.agent]

    def run_cli(self, server, *args):
        return subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             server.config_file, '--json'] + list(args),
            capture_output=True, text=True, timeout=120)

    def far_fetch(self, image_id):
        """(status, bytes, error) of a raw download at the far edge."""
        session = self.lab.far.session(PROJECT_A)
        response = session.get('%s/v2/images/%s/file' % (
            self.lab.far.url, image_id), stream=True, raise_exc=False,
            timeout=120)
        chunks, error = [], None
        try:
            for chunk in response.iter_content(MiB):
                chunks.append(chunk)
        except requests.RequestException as e:
            error = e
        finally:
            response.close()
        return response.status_code, b''.join(chunks), error


class TestChain(ChainTestCase):
    """Both edges import on demand."""

    def test_a_far_boot_pulls_from_central_once_through_the_edge(self):
        central, data = self.public_image(min_disk=3, min_ram=256,
                                          os_distro='cirros', tags=['gold'])
        # "nova boot <id>" at the far edge: neither edge knows the image.
        shown = self.far_glance().images.get(central.id)
        for field in ('size', 'checksum', 'os_hash_algo', 'os_hash_value',
                      'min_disk', 'min_ram', 'disk_format', 'visibility',
                      'owner', 'os_distro', 'name'):
            self.assertEqual(central[field], shown[field], field)
        self.assertEqual(['gold'], shown.tags)
        self.assertEqual('regional', shown.stores)
        self.assertEqual('central',
                         self.lab.edge.glance().images.get(central.id).stores)
        self.assertEqual(data, self.far_download(central))
        self.assertEqual(data, self.far_download(central))
        self.assertEqual(1, len(self.file_gets(self.lab.central, central.id)))
        self.assertEqual(1, len(self.file_gets(self.lab.edge, central.id)))
        # The second far edge boots it too: the edge serves it, central is
        # not asked again.
        data2 = b''.join(self.lab.far2.glance(PROJECT_A).images.data(
            central.id))
        self.assertEqual(data, data2)
        self.assertEqual(2, len(self.file_gets(self.lab.edge, central.id)))
        self.assertEqual(1, len(self.file_gets(self.lab.central, central.id)))

    def test_central_cut_the_edges_serve_what_they_hold(self):
        held_by_both, data_both = self.public_image()
        held_by_edge, data_edge = self.public_image(size=2 * MiB)
        self.far_download(held_by_both)
        # The edge alone reads the second image (one of its own users).
        self.assertEqual(data_edge, b''.join(
            self.lab.edge.glance().images.data(held_by_edge.id)))
        self.wait_fills_done()
        self.lab.central.stop()
        self.assertEqual(data_both, self.far_download(held_by_both))
        # The far edge has never heard of it: it imports it from the edge's
        # record and reads the edge's cached copy, with central down.
        self.assertEqual(held_by_edge.checksum, self.far_glance().images.get(
            held_by_edge.id).checksum)
        self.assertEqual(data_edge, self.far_download(held_by_edge))
        self.assertEqual(data_both, b''.join(
            self.lab.edge.glance().images.data(held_by_both.id)))

    def test_edge_cut_the_far_edge_serves_what_it_holds(self):
        held, data = self.public_image()
        known_only, _ = self.public_image(size=MiB)
        self.far_download(held)
        self.far_glance().images.get(known_only.id)
        unknown, _ = self.public_image(size=MiB)
        self.lab.edge.stop()
        self.assertEqual(data, self.far_download(held))
        self.assertEqual(held.checksum,
                         self.far_glance().images.get(held.id).checksum)
        status, _, _ = self.far_fetch(known_only.id)
        self.assertEqual(503, status)
        # An ID the far edge never heard of: it cannot tell, try later.
        status, _, _ = self.far_fetch(unknown.id)
        self.assertEqual(503, status)

    def test_each_level_verifies_what_it_serves(self):
        central, data = self.public_image(size=3 * MiB)
        self.lab.edge.glance().images.get(central.id)
        self.assertEqual(data, b''.join(
            self.lab.edge.glance().images.data(central.id)))
        self.wait_fills_done()
        # The edge's cached copy rots on disk: one byte flips.
        path = os.path.join(self.lab.cache_dir, 'entries',
                            central.id + '.data')
        with open(path, 'r+b') as f:
            f.seek(MiB)
            byte = f.read(1)
            f.seek(MiB)
            f.write(bytes([byte[0] ^ 0xFF]))
        # The far edge checks the edge's bytes against the hash the record
        # carries from central: its client never gets a complete wrong
        # image, and nothing wrong lands in its cache.
        status, received, error = self.far_fetch(central.id)
        self.assertTrue(error is not None or len(received) < len(data),
                        (status, len(received)))
        self.assertNotEqual(data, received)
        self.assertFalse(os.path.exists(os.path.join(
            self.lab.far_cache_dir, 'entries', central.id + '.data')))
        self.assertIn('verif', self.lab.far.log_text().lower())
        # The edge's operator finds and drops the bad copy; the next read
        # goes back to central and every level is whole again.
        result = self.run_cli(self.lab.edge, 'cache', 'verify', '--fix')
        self.assertEqual(1, result.returncode, result.stdout)
        self.assertIn(central.id, result.stdout)
        self.assertEqual(data, self.far_download(central))
        self.assertEqual(2, len(self.file_gets(self.lab.central, central.id)))


class TestChainWithoutOnDemand(ChainTestCase):
    """Operators import and link explicitly at each level."""

    LAB = {'on_demand': False}

    def test_explicit_import_and_link_down_the_chain(self):
        central, data = self.public_image(os_distro='debian')
        # The edge operator imports with the CLI; a far edge user links
        # the edge's image to an image of their own.
        folder = self.useFixture(fixtures.TempDir()).path
        env = dict(os.environ, OS_CLIENT_CONFIG_FILE=self.lab.edge
                   .clouds_yaml(folder), OS_CLOUD='edge')
        result = subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             self.lab.edge.config_file, '--json', 'import', central.id],
            capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(0, result.returncode, result.stderr)
        self.assertEqual('created', json.loads(result.stdout)[0]['result'])
        client = self.far_glance()
        mine = client.images.create(name='mine', disk_format='raw',
                                    container_format='bare')
        client.images.add_location(
            mine.id, 'remote-glance://regional/%s' % central.id, {})
        linked = client.images.get(mine.id)
        self.assertEqual((central.size, central.checksum, 'debian'),
                         (linked.size, linked.checksum, linked.os_distro))
        self.assertEqual(data, b''.join(client.images.data(mine.id)))
        # Without on-demand import, IDs the far edge was not given are 404.
        other, _ = self.public_image(size=MiB)
        self.assertEqual(404, self.far_fetch(other.id)[0])
