"""Unit tests of metadata.py: who may link what, what is copied, which
requests the filter acts on. The filter inside a real edge Glance is
tested in tests/functional/test_metadata.py."""

import json

import testtools
import webob

from glance_store_remote import exceptions
from glance_store_remote import metadata

CENTRAL_ID = '6a1b0c5e-39a4-4b27-9b0f-3f5b1d1f0a11'
EDGE_ID = '0b8e5d4c-7b7a-4a4e-8b51-1f6a2d3c4e5f'
URI = 'remote-glance://central/' + CENTRAL_ID


class Context:
    def __init__(self, project_id='p1', roles=(), is_admin=False):
        self.project_id = project_id
        self.roles = list(roles)
        self.service_roles = []
        self.is_admin = is_admin


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

    def members(self, status):
        return lambda project: status

    def test_owner_public_and_community(self):
        self.assertTrue(metadata.may_use(Context('p1'), record(),
                                         self.members(None)))
        self.assertFalse(metadata.may_use(Context('p2'), record(),
                                          self.members(None)))
        for visibility in ('public', 'community'):
            self.assertTrue(metadata.may_use(
                Context('p2'), record(visibility=visibility),
                self.members(None)))

    def test_linking_needs_an_accepted_membership_seeing_any(self):
        shared = record(visibility='shared')
        for status, link, see in (('accepted', True, True),
                                  ('pending', False, True),
                                  ('rejected', False, True),
                                  (None, False, False)):
            self.assertEqual(link, metadata.may_use(
                Context('p2'), shared, self.members(status)), status)
            self.assertEqual(see, metadata.may_use(
                Context('p2'), shared, self.members(status),
                member_statuses=metadata.ANY_MEMBERSHIP), status)

    def test_admin_and_service_callers_link_anything(self):
        self.assertTrue(metadata.may_use(Context('p2', is_admin=True),
                                         record(), self.members(None)))
        self.assertTrue(metadata.may_use(Context('p2', roles=['service']),
                                         record(), self.members(None)))

    def test_a_service_token_beside_a_user_token_grants_nothing(self):
        # nova sends its service token with the user's: X-Service-Roles.
        context = Context('p2')
        context.service_roles = ['service', 'admin']
        self.assertFalse(metadata.may_use(context, record(),
                                          self.members(None)))

    def test_no_project_sees_only_public_and_ownerless_images(self):
        self.assertFalse(metadata.may_use(Context(None), record(),
                                          self.members('accepted')))
        self.assertFalse(metadata.may_use(None, record(), self.members(None)))
        # Glance shows an image without an owner to everyone.
        self.assertTrue(metadata.may_use(Context(None), record(owner=None),
                                         self.members(None)))
        self.assertTrue(metadata.may_use(None, record(owner=''),
                                         self.members(None)))


class TestPlanCopy(testtools.TestCase):

    def test_copies_what_the_edge_lacks_and_only_custom_properties(self):
        conflicts, values, properties = metadata.plan_copy(
            record(), edge(), 'sha512')
        self.assertEqual([], conflicts)
        self.assertEqual({'size': 10, 'checksum': 'c', 'min_disk': 1,
                          'os_hash_algo': 'sha512', 'os_hash_value': 'h'},
                         values)
        self.assertEqual({'os_distro': 'cirros'}, properties)

    def test_keeps_what_the_edge_has(self):
        _, values, properties = metadata.plan_copy(
            record(min_ram=64), edge(min_disk=5, properties={
                'os_distro': 'ubuntu'}), 'sha512')
        self.assertNotIn('min_disk', values)
        self.assertEqual(64, values['min_ram'])
        self.assertEqual({}, properties)

    def test_data_disagreements_are_conflicts(self):
        for field, value in (('size', 11), ('checksum', 'x'),
                             ('disk_format', 'qcow2'),
                             ('container_format', 'ovf'),
                             ('os_hash_value', 'other')):
            conflicts, _, _ = metadata.plan_copy(
                record(), edge(**{field: value}), 'sha512')
            self.assertEqual(1, len(conflicts), field)
            self.assertIn(field, conflicts[0])

    def test_hash_of_another_algorithm_is_left_to_glance(self):
        _, values, _ = metadata.plan_copy(record(), edge(), 'sha256')
        self.assertNotIn('os_hash_value', values)
        self.assertEqual('c', values['checksum'])


class FakeRecords:
    def __init__(self, current):
        self.current = current
        self.updates = []
        self.restored = []

    def get(self, image_id):
        return self.current

    def update(self, image_id, values, properties):
        self.updates.append((values, properties))

    def restore(self, image_id, before, values, properties):
        self.restored.append(values)


class FakeStore:
    def __init__(self, central_record=None, error=None):
        self._record = central_record or record(visibility='public')
        self._error = error
        self.central = self

    def central_record(self, image_id):
        if self._error:
            raise self._error
        return self._record

    def member_status(self, image_id, project):
        return None


class TestFilter(testtools.TestCase):

    def run_filter(self, request, store=None, records=None, status=200):
        seen = []

        def app(environ, start_response):
            seen.append(webob.Request(environ).body)
            start_response('%d X' % status, [])
            return [b'']
        records = records or FakeRecords(edge())
        filt = metadata.MetadataFilter(
            app, records=records, find_store=lambda backend: (
                store or FakeStore()) if backend == 'central' else None)
        request.context = Context('p1')
        response = request.get_response(filt)
        return response, seen, records

    def patch(self, ops):
        return webob.Request.blank(
            '/v2/images/%s' % EDGE_ID, method='PATCH',
            body=json.dumps(ops).encode())

    def test_patch_add_location_is_copied_and_the_body_still_reaches_glance(
            self):
        ops = [{'op': 'add', 'path': '/locations/-',
                'value': {'url': URI, 'metadata': {}}}]
        response, seen, records = self.run_filter(self.patch(ops))
        self.assertEqual(200, response.status_int)
        self.assertEqual([json.dumps(ops).encode()], seen)
        self.assertEqual(1, len(records.updates))

    def test_post_locations_is_copied(self):
        request = webob.Request.blank(
            '/v2/images/%s/locations' % EDGE_ID, method='POST',
            body=json.dumps({'url': URI}).encode())
        _, _, records = self.run_filter(request)
        self.assertEqual(1, len(records.updates))

    def test_glance_refusing_undoes_the_copy(self):
        request = webob.Request.blank(
            '/v2/images/%s/locations' % EDGE_ID, method='POST',
            body=json.dumps({'url': URI}).encode())
        _, _, records = self.run_filter(request, status=409)
        self.assertEqual(1, len(records.restored))

    def test_other_requests_pass_untouched(self):
        for request in (
                webob.Request.blank('/v2/images/%s' % EDGE_ID),
                self.patch([{'op': 'replace', 'path': '/name',
                             'value': 'x'}]),
                self.patch([{'op': 'add', 'path': '/locations/-',
                             'value': {'url': 'http://a/b'}}]),
                self.patch({'not': 'a list'}),
                webob.Request.blank('/v2/images/%s' % EDGE_ID,
                                    method='PATCH', body=b'not json'),
                self.patch([{'op': 'add', 'path': '/locations/-', 'value': {
                    'url': 'remote-glance://elsewhere/' + CENTRAL_ID}}])):
            response, seen, records = self.run_filter(request)
            self.assertEqual(200, response.status_int)
            self.assertEqual([], records.updates)

    def test_refused_project_gets_403_and_glance_is_never_called(self):
        ops = [{'op': 'add', 'path': '/locations/-', 'value': {'url': URI}}]
        response, seen, records = self.run_filter(
            self.patch(ops), store=FakeStore(record(owner='someone-else')))
        self.assertEqual(403, response.status_int)
        self.assertEqual([], seen)
        self.assertEqual([], records.updates)

    def test_conflict_gets_400_and_nothing_is_written(self):
        ops = [{'op': 'add', 'path': '/locations/-', 'value': {'url': URI}}]
        response, seen, records = self.run_filter(
            self.patch(ops), records=FakeRecords(edge(disk_format='qcow2')))
        self.assertEqual(400, response.status_int)
        self.assertEqual(([], []), (seen, records.updates))

    def test_central_unreachable_is_503_and_unknown_image_is_glances(self):
        ops = [{'op': 'add', 'path': '/locations/-', 'value': {'url': URI}}]
        response, seen, _ = self.run_filter(self.patch(ops), store=FakeStore(
            error=exceptions.UpstreamUnavailable('central', 'down')))
        self.assertEqual(503, response.status_int)
        self.assertEqual([], seen)
        response, seen, _ = self.run_filter(self.patch(ops), store=FakeStore(
            error=exceptions.UpstreamNotFound('central', 'gone')))
        self.assertEqual(200, response.status_int)
        self.assertEqual(1, len(seen))
