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

"""On-demand import against REAL Glance servers: an edge with
``remote_glance_import_on_demand = true`` answers for central images it
was never told about, as nova and operators ask for them (glanceclient).
"""

import concurrent.futures
import uuid

from glanceclient import exc as glance_exc

from tests.functional import base
from tests.harness import lab as lab_module

PROJECT_A = lab_module.Identity('project-a', 'alice', ('member', 'reader'))
PROJECT_B = lab_module.Identity('project-b', 'bob', ('member', 'reader'))
ON_DEMAND = {'central': {'remote_glance_import_on_demand': True}}


class OnDemandTestCase(base.LabTestCase):

    def record_gets(self, image_id):
        """The edge's GETs of central's record of *image_id* (the access
        log shows the path after Glance's version negotiation).
        """
        return [e for e in self.central_requests('GET')
                if e.path.endswith('/images/%s' % image_id) and
                'glance-store-remote' in e.agent]

    def assert_edge_404(self, image_id, identity):
        """Image-show and download at the edge both answer 404."""
        self.assertRaises(glance_exc.HTTPNotFound,
                          self.edge_glance(identity).images.get, image_id)
        self.assertEqual(404, self.fetch(image_id, identity=identity)[0]
                         .status_code)


class TestOnDemandImport(OnDemandTestCase):

    LAB = {'edge_options': ON_DEMAND}

    def test_boot_of_an_unknown_image_imports_it_with_its_record(self):
        central, data = self.make_central_image(
            visibility='public', owner='project-c', min_disk=2, min_ram=128,
            os_distro='cirros', tags=['gold'])
        # What nova does for "nova boot <id>": show, then download.
        shown = self.edge_glance(PROJECT_A).images.get(central.id)
        self.assertEqual(central.id, shown.id)
        for field in ('size', 'checksum', 'os_hash_algo', 'os_hash_value',
                      'min_disk', 'min_ram', 'disk_format',
                      'container_format', 'visibility', 'owner',
                      'os_distro', 'name'):
            self.assertEqual(central[field], shown[field], field)
        self.assertEqual(['gold'], shown.tags)
        self.assertEqual('central', shown.stores)
        self.assertEqual(data, self.download(central.id, central,
                                             identity=PROJECT_A))
        self.assertIn('imported central image %s (backend central'
                      % central.id, self.lab.edge.log_text())
        self.assertIn('asked for by project project-a',
                      self.lab.edge.log_text())
        # The edge holds it now: central down, it is still shown and served.
        self.lab.central.stop()
        self.assertEqual(central.checksum, self.edge_glance(
            PROJECT_B).images.get(central.id).checksum)
        self.assertEqual(data, self.download(central.id, central,
                                             identity=PROJECT_B))

    def test_download_of_an_unknown_image_imports_it(self):
        central, data = self.make_central_image(visibility='community',
                                                owner='project-c')
        response, received, error = self.fetch(central.id,
                                               identity=PROJECT_A)
        self.assertEqual((200, None), (response.status_code, error))
        self.assertEqual(data, received)

    def test_image_the_requester_cannot_see_at_central_stays_invisible(self):
        central, data = self.make_central_image(visibility='private',
                                                owner='project-b')
        self.assert_edge_404(central.id, PROJECT_A)
        self.assertIn('project project-a asked for central image %s'
                      % central.id, self.lab.edge.log_text())
        # Its owner brings it in; the edge's own rules then keep hiding it.
        self.assertEqual(central.checksum, self.edge_glance(
            PROJECT_B).images.get(central.id).checksum)
        self.assert_edge_404(central.id, PROJECT_A)
        self.assertEqual(data, self.download(central.id, central,
                                             identity=PROJECT_B))

    def test_shared_image_comes_with_its_members(self):
        central, _ = self.make_central_image(visibility='shared',
                                             owner='project-c')
        self.central_glance.image_members.create(central.id, 'project-a')
        self.assert_edge_404(central.id, PROJECT_B)
        shown = self.edge_glance(PROJECT_A).images.get(central.id)
        self.assertEqual('shared', shown.visibility)
        members = {m.member_id: m.status for m in self.edge_glance(
            lab_module.ADMIN).image_members.list(central.id)}
        self.assertEqual({'project-a': 'pending'}, members)
        self.assert_edge_404(central.id, PROJECT_B)

    def test_ids_central_lacks_stay_404_and_are_asked_once(self):
        unknown = str(uuid.uuid4())
        for _ in range(3):
            self.assert_edge_404(unknown, PROJECT_A)
        self.assertEqual(1, len(self.record_gets(unknown)))

    def test_an_image_deleted_at_the_edge_is_not_imported_again(self):
        central, _ = self.make_central_image(visibility='public',
                                             owner='project-c')
        admin = self.edge_glance(lab_module.ADMIN)
        admin.images.get(central.id)
        admin.images.delete(central.id)
        asked = len(self.record_gets(central.id))
        self.assert_edge_404(central.id, lab_module.ADMIN)
        self.assertEqual(asked, len(self.record_gets(central.id)))
        self.assertEqual('active', self.central_glance.images.get(
            central.id).status)

    def test_central_down_answers_503_never_404(self):
        # A 404 would say the image does not exist (nova gives up on it);
        # the edge cannot know: try again later.
        central, _ = self.make_central_image(visibility='public',
                                             owner='project-c')
        self.lab.central.stop()
        self.assertRaises(glance_exc.HTTPServiceUnavailable,
                          self.edge_glance(PROJECT_A).images.get, central.id)
        response = self.fetch(central.id, identity=PROJECT_A)[0]
        self.assertEqual(503, response.status_code)
        self.assertIn('Retry-After', response.headers)
        self.assertEqual(1, self.lab.edge.log_text().count(
            'on-demand lookups answer 503'))
        self.start_central()
        self.assertEqual(central.id, self.edge_glance(
            PROJECT_A).images.get(central.id).id)


class TestOnDemandConcurrency(OnDemandTestCase):
    """Several edge workers asked for the same unknown image at once."""

    LAB = {'edge_options': ON_DEMAND, 'edge_workers': 2}

    def together(self, fn, count=8):
        with concurrent.futures.ThreadPoolExecutor(count) as pool:
            return list(pool.map(lambda _: fn(), range(count)))

    def test_concurrent_first_shows_import_once_and_all_succeed(self):
        central, _ = self.make_central_image(visibility='public',
                                             owner='project-c')
        shown = self.together(lambda: self.edge_glance(
            PROJECT_A).images.get(central.id))
        self.assertEqual({central.checksum}, {s.checksum for s in shown})
        log = self.lab.edge.log_text()
        imported = log.count('imported central image %s' % central.id)
        raced = log.count('image %s was imported by another worker'
                          % central.id)
        self.assertEqual(1, imported)
        self.assertEqual(1, len([i for i in self.edge_glance(
            lab_module.ADMIN).images.list() if i.id == central.id]))
        self.assertLessEqual(raced, 1)

    def test_concurrent_first_downloads_fetch_the_data_once(self):
        central, data = self.make_central_image(visibility='public',
                                                owner='project-c')
        results = self.together(lambda: self.fetch(central.id,
                                                   identity=PROJECT_A))
        for response, received, error in results:
            self.assertEqual((200, None), (response.status_code, error))
            self.assertEqual(data, received)
        data_gets = [e for e in self.central_requests('GET')
                     if e.path.endswith('/images/%s/file' % central.id)]
        self.assertEqual(1, len(data_gets))


class TestOffByDefault(OnDemandTestCase):

    LAB = {'cache_max_size': None}

    def test_unknown_ids_are_404_and_central_is_not_asked(self):
        central, _ = self.make_central_image(visibility='public',
                                             owner='project-c')
        self.assert_edge_404(central.id, PROJECT_A)
        self.assertEqual([], self.record_gets(central.id))
