"""Unit tests of catalog.py: the field-by-field comparison and the import
and sync decisions, with fakes for central and the edge API. The commands
against real servers are tested in tests/functional/test_catalog.py."""

import testtools

from glance_store_remote import catalog
from glance_store_remote import exceptions
from glance_store_remote import record_rules
from glance_store_remote import upstream

IMAGE = '6a1b0c5e-39a4-4b27-9b0f-3f5b1d1f0a11'
RULES = record_rules.CopyRules()


def central_record(**fields):
    record = {'id': IMAGE, 'name': 'cirros', 'status': 'active',
              'visibility': 'shared', 'protected': False, 'owner': 'p1',
              'min_disk': 1, 'min_ram': 64, 'tags': ['b', 'a'],
              'disk_format': 'raw', 'container_format': 'bare',
              'size': 10, 'checksum': 'c', 'os_distro': 'cirros',
              'os_glance_import_task': 'x', 'locations': []}
    record.update(fields)
    return record


class TestComparison(testtools.TestCase):

    def test_create_body_has_the_id_formats_and_custom_properties(self):
        body = catalog.create_body(central_record(), RULES)
        self.assertEqual(IMAGE, body['id'])
        self.assertEqual(['a', 'b'], body['tags'])
        self.assertEqual('cirros', body['os_distro'])
        self.assertEqual('raw', body['disk_format'])
        for absent in ('size', 'checksum', 'status', 'os_glance_import_task',
                       'locations'):
            self.assertNotIn(absent, body)

    def test_patch_ops_change_only_what_differs(self):
        edge = dict(catalog.create_body(central_record(), RULES),
                    status='active', tags=['b', 'a'], edge_only='kept')
        self.assertEqual([], catalog.patch_ops(edge, central_record(), RULES))
        ops = catalog.patch_ops(edge, central_record(
            name='new', hw_disk_bus='scsi', tags=['a']), RULES)
        self.assertEqual(
            [{'op': 'replace', 'path': '/name', 'value': 'new'},
             {'op': 'replace', 'path': '/tags', 'value': ['a']},
             {'op': 'add', 'path': '/hw_disk_bus', 'value': 'scsi'}],
            sorted(ops, key=lambda op: (op['op'] == 'add', op['path'])))

    def test_member_changes(self):
        add, change, remove = catalog.member_changes(
            {'b': 'pending', 'c': 'accepted'},
            {'a': 'accepted', 'b': 'accepted'})
        self.assertEqual(([('a', 'accepted')], [('b', 'accepted')],
                          [('c', 'accepted')]), (add, change, remove))


class FakeCentral:
    def __init__(self, record=None, members=None):
        self.record = record
        self.member_list = members or {}

    def fetch_record(self, image_id, any_status=False):
        if self.record is None:
            raise exceptions.UpstreamNotFound('central', 'gone')
        return upstream.ImageRecord(self.record)

    def members(self, image_id):
        return dict(self.member_list)


class FakeEdge:
    def __init__(self, image=None, members=None):
        self.stored = image
        self.listed = dict(members or {})
        self.duplicates = []
        self.calls = []

    def image(self, image_id):
        return self.stored

    def create(self, body):
        self.calls.append(('create', body['id']))
        self.stored = dict(body, status='queued')

    def patch(self, image_id, ops):
        self.calls.append(('patch', [op['path'] for op in ops]))

    def member_list(self, image_id):
        return sorted(self.listed.items()) + list(self.duplicates)

    def add_member(self, image_id, project):
        self.calls.append(('add_member', project))

    def set_member(self, image_id, project, status):
        self.calls.append(('set_member', project, status))

    def remove_member(self, image_id, project):
        self.calls.append(('remove_member', project))
        if (project, self.listed.get(project)) in self.duplicates:
            self.duplicates.remove((project, self.listed[project]))

    def add_location(self, image_id, url):
        self.calls.append(('location', url))

    def action(self, image_id, name):
        self.calls.append(('action', name))


class RacedEdge(FakeEdge):
    """An edge where another client creates the ID between our look and
    our create: the create is answered 409.
    """

    def __init__(self, created_by_other):
        super().__init__(None)
        self.other = created_by_other

    def create(self, body):
        self.calls.append(('create', body['id']))
        self.stored = self.other
        raise catalog.EdgeConflict('edge answered 409 to POST /images')


class DuplicateLocationEdge(FakeEdge):
    """Another client adds the location first: ours is refused, and the
    image then shows *after*.
    """

    def __init__(self, image, after):
        super().__init__(image)
        self.after = after

    def add_location(self, image_id, url):
        self.stored = self.after
        raise catalog.EdgeError('edge answered 400 adding location')


class TestImporter(testtools.TestCase):

    def importer(self, central, edge):
        return catalog.Importer(central, edge, 'central')

    def test_new_image_is_created_with_members_and_location(self):
        edge = FakeEdge()
        action, _ = self.importer(FakeCentral(central_record(), {
            'p2': 'accepted', 'p3': 'pending'}), edge).import_image(IMAGE)
        self.assertEqual('created', action)
        self.assertEqual([('create', IMAGE),
                          ('location', 'remote-glance://central/' + IMAGE),
                          ('add_member', 'p2'),
                          ('set_member', 'p2', 'accepted'),
                          ('add_member', 'p3')],
                         edge.calls)

    def test_an_id_created_meanwhile_by_another_client_is_updated(self):
        record = central_record(visibility='public')
        edge = RacedEdge(dict(catalog.create_body(record, RULES),
                              name='old', status='queued'))
        action, details = self.importer(FakeCentral(record),
                                        edge).import_image(IMAGE)
        self.assertEqual(('updated', 'name, location'), (action, details))
        self.assertEqual(('patch', ['/name']), edge.calls[1])

    def test_a_create_conflict_without_an_image_is_an_error(self):
        # The edge had this ID once and deleted it: Glance never gives it
        # again.
        edge = RacedEdge(None)
        self.assertRaises(catalog.EdgeConflict, self.importer(
            FakeCentral(central_record()), edge).import_image, IMAGE)

    def test_a_location_added_meanwhile_counts_as_added(self):
        url = 'remote-glance://central/' + IMAGE
        record = central_record(visibility='public')
        queued = dict(catalog.create_body(record, RULES), status='queued')
        edge = DuplicateLocationEdge(queued, dict(
            queued, status='active', locations=[{'url': url}]))
        self.assertEqual(('updated', 'location'), self.importer(
            FakeCentral(record), edge).import_image(IMAGE))
        hidden = DuplicateLocationEdge(queued, dict(
            queued, status='active', stores='local,central'))
        self.assertEqual(('updated', 'location'), self.importer(
            FakeCentral(record), hidden).import_image(IMAGE))
        refused = DuplicateLocationEdge(queued, dict(queued, locations=[]))
        self.assertRaises(catalog.EdgeError, self.importer(
            FakeCentral(record), refused).import_image, IMAGE)

    def test_existing_image_is_updated_or_left_unchanged(self):
        record = central_record(visibility='public')
        current = dict(catalog.create_body(record, RULES), status='active')
        edge = FakeEdge(current)
        self.assertEqual(('unchanged', ''), self.importer(
            FakeCentral(record), edge).import_image(IMAGE))
        action, details = self.importer(
            FakeCentral(dict(record, name='v2')), edge).import_image(IMAGE)
        self.assertEqual(('updated', 'name'), (action, details))

    def test_queued_edge_image_gets_its_location(self):
        record = central_record(visibility='public')
        edge = FakeEdge(dict(catalog.create_body(record, RULES),
                             status='queued'))
        importer = self.importer(FakeCentral(record), edge)
        action, details = importer.import_image(IMAGE)
        self.assertEqual(('updated', 'location'), (action, details))

    def test_duplicate_member_rows_are_removed_once(self):
        record = central_record()
        edge = FakeEdge(dict(catalog.create_body(record, RULES),
                             status='active'),
                        members={'p2': 'accepted', 'p3': 'pending'})
        edge.duplicates = [('p2', 'accepted'), ('p2', 'accepted')]
        action, details = self.importer(FakeCentral(record, {
            'p2': 'accepted', 'p3': 'pending'}), edge).import_image(IMAGE)
        self.assertEqual(('updated', '2 duplicate members'),
                         (action, details))
        self.assertEqual([('remove_member', 'p2')] * 2, edge.calls)
        self.assertEqual([], edge.duplicates)

    def test_sync_deactivation_reactivation_and_deletion(self):
        record = central_record(visibility='public')
        active = dict(catalog.create_body(record, RULES), status='active')
        edge = FakeEdge(active)
        importer = self.importer(FakeCentral(dict(
            record, status='deactivated')), edge)
        self.assertEqual('deactivated', importer.sync_image(active)[0])
        self.assertEqual(('action', 'deactivate'), edge.calls[-1])
        importer = self.importer(FakeCentral(record), edge)
        self.assertEqual('reactivated', importer.sync_image(
            dict(active, status='deactivated'))[0])
        importer = self.importer(FakeCentral(None), edge)
        self.assertEqual('marked', importer.sync_image(
            active, deleted_action='deactivate')[0])
        self.assertEqual([('patch', ['/' + catalog.DELETED_MARK]),
                          ('action', 'deactivate')], edge.calls[-2:])
        marked = dict(active, **{catalog.DELETED_MARK: 'true'})
        self.assertEqual('unchanged', importer.sync_image(marked)[0])


class FakeResponse:
    def __init__(self, status, body=None):
        self.status_code = status
        self.text = str(body)
        self._body = body

    def json(self):
        return self._body


class FakeAdapter:
    def __init__(self, answers):
        self.answers = list(answers)
        self.requests = []

    def request(self, path, method, raise_exc=False, **kw):
        self.requests.append((method, path))
        return self.answers.pop(0)


class TestEdgeAPI(testtools.TestCase):

    def test_location_falls_back_to_patch_without_the_service_role(self):
        adapter = FakeAdapter([FakeResponse(403), FakeResponse(200, {})])
        catalog.EdgeAPI(adapter).add_location(IMAGE, 'remote-glance://c/x')
        self.assertEqual([('POST', '/images/%s/locations' % IMAGE),
                          ('PATCH', '/images/%s' % IMAGE)], adapter.requests)

    def test_other_refusals_are_edge_errors(self):
        adapter = FakeAdapter([FakeResponse(409, 'locked')])
        self.assertRaises(catalog.EdgeError,
                          catalog.EdgeAPI(adapter).add_location, IMAGE, 'u')

    def test_a_conflict_is_an_edge_conflict(self):
        adapter = FakeAdapter([FakeResponse(409, 'exists')])
        self.assertRaises(catalog.EdgeConflict,
                          catalog.EdgeAPI(adapter).create, {'id': IMAGE})

    def test_a_member_added_or_removed_meanwhile_is_no_error(self):
        # Glance's answers when another client was first: 409 "Member ...
        # is duplicated", 404 for a member already removed.
        adapter = FakeAdapter([FakeResponse(409, 'duplicated'),
                               FakeResponse(404, 'gone')])
        edge = catalog.EdgeAPI(adapter)
        edge.add_member(IMAGE, 'p2')
        edge.remove_member(IMAGE, 'p2')
        self.assertEqual([('POST', '/images/%s/members' % IMAGE),
                          ('DELETE', '/images/%s/members/p2' % IMAGE)],
                         adapter.requests)

    def test_images_follow_pagination(self):
        adapter = FakeAdapter([
            FakeResponse(200, {'images': [{'id': 1}],
                               'next': '/v2/images?marker=1'}),
            FakeResponse(200, {'images': [{'id': 2}]})])
        self.assertEqual([1, 2], [i['id'] for i in
                                  catalog.EdgeAPI(adapter).images()])
        self.assertEqual('/images?marker=1', adapter.requests[1][1])
