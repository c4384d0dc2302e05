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

"""Who may link which central image, against REAL Glance servers with
Glance's DEFAULT policy and two projects (header identities at the edge).

The decision is the driver's, in ``get_size``, where Glance asks the store
about every location it is about to accept: every form Glance takes is
covered, and a refused link leaves nothing behind (no central data read,
nothing cached, nothing copied). Authorization follows central's current
answer, not the record kept with the cache.
"""

import io
import os
import time

from tests.functional import test_record_copy
from tests.harness import lab as lab_module

ALICE = test_record_copy.ALICE
BOB = test_record_copy.BOB
CAROL = lab_module.Identity('project-c', 'carol', ('member', 'reader'))
PATCH_FORMS = test_record_copy.PATCH_FORMS
V20 = test_record_copy.V20
V21 = test_record_copy.V21
location = test_record_copy.location


class AuthorizationTestCase(test_record_copy.RecordTestCase):

    def assert_nothing_done(self, identity, edge_id, central_id):
        after = self.edge_glance(identity).images.get(edge_id)
        self.assertEqual(('queued', None, None, None, 0),
                         (after.status, after.size, after.checksum,
                          after.get('os_distro'), after.min_ram))
        self.assertEqual([], self.file_gets(central_id))
        self.assertFalse(any(name.startswith(central_id) for sub in
                             ('entries', 'partial') for name in os.listdir(
                                 os.path.join(self.lab.cache_dir, sub))))

    def refused_in_every_form(self, identity, central_id):
        url = self.location_of(central_id)
        for name, (media_type, ops) in PATCH_FORMS.items():
            edge = self.make_edge_image(identity)
            response = self.patch(edge.id, media_type, ops(url), identity)
            self.assertEqual(400, response.status_code,
                             '%s: %s' % (name, response.text))
            self.assert_nothing_done(identity, edge.id, central_id)

    def allowed(self, identity, central_id):
        edge = self.make_edge_image(identity)
        self.assertEqual('active', self.add_location(
            edge.id, central_id, identity).status)
        return edge.id

    def v21_add(self, central_id):
        return V21, [{'op': 'add', 'path': '/locations/-',
                      'value': location(self.location_of(central_id))}]


class TestLinkAuthorization(AuthorizationTestCase):

    def test_private_image_only_for_its_owner_project(self):
        central, _ = self.central_image('private', owner=ALICE.project_id)
        self.refused_in_every_form(BOB, central.id)
        self.allowed(ALICE, central.id)
        self.assertIn('project project-b may not link central image %s'
                      % central.id, self.lab.edge.log_text())

    def test_a_refused_location_after_an_allowed_one_refuses_the_patch(self):
        public, _ = self.central_image('public', owner=ALICE.project_id)
        private, _ = self.central_image('private', owner=ALICE.project_id)
        edge = self.make_edge_image(BOB)
        response = self.patch(edge.id, V21, [
            {'op': 'add', 'path': '/locations/-',
             'value': location(self.location_of(public.id))},
            {'op': 'add', 'path': '/locations/-',
             'value': location(self.location_of(private.id))}], BOB)
        self.assertEqual(400, response.status_code)
        self.assert_nothing_done(BOB, edge.id, private.id)

    def test_shared_image_only_for_accepted_members(self):
        central, _ = self.central_image('shared', owner=ALICE.project_id)
        self.refused_in_every_form(BOB, central.id)
        self.central_glance.image_members.create(central.id, BOB.project_id)
        self.refused_in_every_form(BOB, central.id)       # pending
        self.central_glance.image_members.update(central.id, BOB.project_id,
                                                 'accepted')
        self.allowed(BOB, central.id)
        self.central_glance.image_members.update(central.id, BOB.project_id,
                                                 'rejected')
        self.refused_in_every_form(BOB, central.id)

    def test_public_and_community_images_for_everyone(self):
        for visibility in ('public', 'community'):
            central, _ = self.central_image(visibility,
                                            owner=ALICE.project_id)
            self.allowed(BOB, central.id)

    def test_admin_links_anything(self):
        central, _ = self.central_image('private', owner=ALICE.project_id)
        self.allowed(lab_module.ADMIN, central.id)

    def test_post_locations_is_refused_by_glance_for_a_member(self):
        central, _ = self.central_image('private', owner=ALICE.project_id)
        edge = self.make_edge_image(BOB)
        response = self.edge_session(BOB).post(
            '%s/v2/images/%s/locations' % (self.lab.edge.url, edge.id),
            json={'url': self.location_of(central.id)}, raise_exc=False)
        self.assertEqual(403, response.status_code)
        self.assert_nothing_done(BOB, edge.id, central.id)

    def post_location(self, identity, edge_id, central_id, **headers):
        return self.edge_session(identity).post(
            '%s/v2/images/%s/locations' % (self.lab.edge.url, edge_id),
            json={'url': self.location_of(central_id)}, headers=headers,
            raise_exc=False)

    def wait_for_task(self, edge_id, identity):
        """Glance's location task has ended: the image holds no lock."""
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            image = self.edge_glance(identity).images.get(edge_id)
            if 'os_glance_import_task' not in image:
                return image
            time.sleep(0.2)
        self.fail('the location task of %s never ended' % edge_id)

    def test_nova_shape_post_for_another_projects_image_is_refused(self):
        # A user's token with nova's service token beside it: Glance
        # accepts the POST (service_roles) and runs its task, which asks
        # the driver with the USER's context.
        central, _ = self.central_image('private', owner=ALICE.project_id)
        edge = self.make_edge_image(BOB)
        response = self.post_location(BOB, edge.id, central.id,
                                      **{'X-Service-Roles': 'service'})
        self.assertEqual(202, response.status_code, response.text)
        self.wait_for_task(edge.id, BOB)
        self.assert_nothing_done(BOB, edge.id, central.id)
        self.assertIn('project project-b may not link central image %s'
                      % central.id, self.lab.edge.log_text())

    def test_the_service_role_alone_sees_nothing_more(self):
        central, _ = self.central_image('private', owner=ALICE.project_id)
        service = lab_module.Identity('project-s', 'nova', ('service',))
        edge = self.make_edge_image(BOB)
        self.edge_glance().images.update(edge.id, owner='project-s')
        response = self.post_location(service, edge.id, central.id)
        self.assertEqual(202, response.status_code, response.text)
        self.wait_for_task(edge.id, lab_module.ADMIN)
        self.assert_nothing_done(lab_module.ADMIN, edge.id, central.id)

    def test_a_request_glance_answers_404_or_403_has_no_side_effect(self):
        central, _ = self.central_image('public')
        hidden = self.make_edge_image(ALICE)              # private
        shown = self.make_edge_image(ALICE, visibility='community')
        url = self.location_of(central.id)
        for edge_id, expected in ((hidden.id, 404), (shown.id, 403)):
            for name, (media_type, ops) in PATCH_FORMS.items():
                response = self.patch(edge_id, media_type, ops(url), BOB)
                self.assertEqual(expected, response.status_code, name)
            self.assert_nothing_done(ALICE, edge_id, central.id)
        # Glance decided before asking the store: the driver never asked
        # central about the image.
        self.assertEqual([], [e for e in self.central_requests(
            'GET', central.id) if 'glance-store-remote' in e.agent])


# Two links in one PATCH, in the forms Glance 33 takes them.
TWO_LINKS = {
    'v2.1 two adds': (V21, lambda a, b: [
        {'op': 'add', 'path': '/locations/-', 'value': location(a)},
        {'op': 'add', 'path': '/locations/-', 'value': location(b)}]),
    'v2.1 add at 0 after add': (V21, lambda a, b: [
        {'op': 'add', 'path': '/locations/-', 'value': location(a)},
        {'op': 'add', 'path': '/locations/0', 'value': location(b)}]),
    'v2.1 replace with two': (V21, lambda a, b: [
        {'op': 'replace', 'path': '/locations',
         'value': [location(a), location(b)]}]),
    'v2.0 two adds': (V20, lambda a, b: [
        {'add': '/locations/-', 'value': location(a)},
        {'add': '/locations/-', 'value': location(b)}]),
    'v2.0 replace with two': (V20, lambda a, b: [
        {'replace': '/locations', 'value': [location(a), location(b)]}]),
}
# The forms that add a location to an image that already has one (Glance
# itself refuses to replace a non-empty list with other URLs).
ADD_FORMS = {name: form for name, form in PATCH_FORMS.items()
             if 'replace /locations' not in name and
             'v2.0 replace' not in name}


class TestOneCentralImagePerEdgeImage(AuthorizationTestCase):
    """Every remote-glance location of an edge image names the same
    central image: the edge record describes one image, and a client
    verifies what any location serves against it.
    """

    def twin(self, data):
        """Another public central image with the same bytes: the data
        check alone cannot tell it from the first.
        """
        image = self.central_glance.images.create(
            name='twin', disk_format='raw', container_format='bare',
            visibility='public', min_disk=2, min_ram=512)
        self.central_glance.images.upload(image.id, io.BytesIO(data))
        return self.central_glance.images.get(image.id)

    def locations(self, edge_id, identity=BOB):
        return [loc['url'] for loc in
                self.edge_glance(identity).images.get(edge_id).locations]

    def test_one_patch_with_links_to_two_central_images_is_refused(self):
        first, _ = self.central_image('public', owner=ALICE.project_id)
        second, _ = self.central_image('public', owner=ALICE.project_id)
        urls = self.location_of(first.id), self.location_of(second.id)
        for name, (media_type, ops) in TWO_LINKS.items():
            edge = self.make_edge_image(BOB)
            response = self.patch(edge.id, media_type, ops(*urls), BOB)
            self.assertEqual(400, response.status_code,
                             '%s: %s' % (name, response.text))
            # Nothing written: no location, no record copied, no data read.
            self.assertEqual([], self.locations(edge.id), name)
            for central in (first, second):
                self.assert_nothing_done(BOB, edge.id, central.id)
        self.assertIn('already links central image %s; all its '
                      'remote-glance locations must name that image, not %s'
                      % (first.id, second.id), self.lab.edge.log_text())
        # Each alone is still linked.
        for central in (first, second):
            self.allowed(BOB, central.id)

    def test_a_linked_image_refuses_a_link_to_another_central_image(self):
        first, data = self.central_image('public', owner=ALICE.project_id)
        second = self.twin(data)
        edge_id = self.allowed(BOB, first.id)
        before = self.edge_glance(BOB).images.get(edge_id)
        for name, (media_type, ops) in ADD_FORMS.items():
            response = self.patch(edge_id, media_type,
                                  ops(self.location_of(second.id)), BOB)
            self.assertEqual(400, response.status_code,
                             '%s: %s' % (name, response.text))
            self.assertEqual([self.location_of(first.id)],
                             self.locations(edge_id), name)
        after = self.edge_glance(BOB).images.get(edge_id)
        self.assertEqual((before.name, before.checksum, before.size),
                         (after.name, after.checksum, after.size))
        self.assertEqual([], self.file_gets(second.id))
        self.assertEqual(data, self.download(edge_id, first, identity=BOB))

    def test_the_same_central_image_is_linked_again_after_a_removal(self):
        central, data = self.central_image('public', owner=ALICE.project_id)
        edge_id = self.allowed(BOB, central.id)
        # A second location (a copy in the edge's own store), so that
        # Glance lets the remote-glance one be removed.
        self.edge_glance().images.image_import(
            edge_id, method='copy-image', stores=['local'])
        deadline = time.monotonic() + 60
        while 'local' not in (self.edge_glance().images.get(
                edge_id).get('stores') or '').split(','):
            self.assertLess(time.monotonic(), deadline, 'no copy in local')
            time.sleep(0.2)
        url = self.location_of(central.id)
        position = self.locations(edge_id).index(url)
        response = self.patch(edge_id, V21, [
            {'op': 'remove', 'path': '/locations/%d' % position}])
        self.assertEqual(200, response.status_code, response.text)
        self.assertNotIn(url, self.locations(edge_id))
        response = self.patch(edge_id, *self.v21_add(central.id), BOB)
        self.assertEqual(200, response.status_code, response.text)
        self.assertIn(url, self.locations(edge_id))


class TestFreshAuthorization(AuthorizationTestCase):
    """Revocations at central reach new links once the short record memo
    expires; the record kept with the cache never authorizes.
    """

    TTL = 1
    LAB = {'edge_options': {'central': {'remote_glance_record_ttl': TTL}}}

    def test_share_revoked_at_central_refuses_new_links(self):
        central, _ = self.central_image('shared', owner=ALICE.project_id)
        self.central_glance.image_members.create(central.id, BOB.project_id)
        self.central_glance.image_members.update(central.id, BOB.project_id,
                                                 'accepted')
        self.download(self.allowed(BOB, central.id), central)
        self.central_glance.image_members.delete(central.id, BOB.project_id)
        edge = self.make_edge_image(BOB)
        response = self.patch(edge.id, *self.v21_add(central.id), BOB)
        self.assertEqual(400, response.status_code)

    def test_image_made_private_at_central_refuses_new_links(self):
        central, _ = self.central_image('public', owner=ALICE.project_id)
        self.download(self.allowed(BOB, central.id), central)  # cached
        self.central_glance.images.update(central.id, visibility='private')
        time.sleep(self.TTL + 0.2)
        edge = self.make_edge_image(BOB)
        response = self.patch(edge.id, *self.v21_add(central.id), BOB)
        self.assertEqual(400, response.status_code)
        self.assertEqual('queued', self.edge_glance(BOB).images.get(
            edge.id).status)
        self.allowed(ALICE, central.id)

    def test_no_new_link_while_central_is_down(self):
        central, _ = self.central_image('public')
        self.download(self.allowed(BOB, central.id), central)  # cached
        uncached, _ = self.central_image('public')
        never_read = self.allowed(BOB, uncached.id)
        self.lab.central.stop()
        time.sleep(self.TTL + 0.2)
        edge = self.make_edge_image(BOB)
        response = self.patch(edge.id, *self.v21_add(central.id), BOB)
        self.assertEqual(503, response.status_code)
        # Neither answer names central's internal endpoint; the log does.
        download, body, _ = self.fetch(never_read, identity=BOB)
        self.assertEqual(503, download.status_code)
        self.assertIn('central is unavailable', response.text)
        # The download names the edge image the user asked for, and why.
        self.assertIn('image %s is not available at this edge now'
                      % never_read, body.decode())
        for text in (response.text, body.decode()):
            self.assertNotIn(self.lab.central.url.split('//')[1], text)
        self.assertIn(self.lab.central.url.split('//')[1],
                      self.lab.edge.log_text())
