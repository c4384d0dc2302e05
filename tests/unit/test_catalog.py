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

"""Unit tests of catalog.py: the field-by-field comparison and the import
and sync decisions, with fakes for central and the edge API. The commands
against real servers are tested in tests/functional/test_catalog.py."""

import testtools

from glance_store_remote import catalog
from glance_store_remote import exceptions
from glance_store_remote import record_rules
from glance_store_remote import upstream

IMAGE = '6a1b0c5e-39a4-4b27-9b0f-3f5b1d1f0a11'
OTHER = '0b5a7c1e-39a4-4b27-9b0f-3f5b1d1f0a11'
OWN = 'remote-glance://central/' + IMAGE
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


def imported(record, status='active', **fields):
    """The edge image an import of *record* makes: its record, its one
    location (none while queued) and, once active, central's data fields.
    """
    image = dict(catalog.create_body(record, RULES), status=status,
                 locations=[] if status == 'queued' else [{'url': OWN}])
    if status != 'queued':
        image.update({name: record.get(name)
                      for name in catalog.DATA_FIELDS})
    image.update(fields)
    return image


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

    def locations(self, image):
        if 'locations' not in image:
            raise catalog.LocationsHidden('edge image %s: %s' % (
                image['id'], catalog.HIDDEN_HINT))
        return [location['url'] for location in image['locations']]

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
        if self.stored is not None and self.stored.get('status') == 'queued':
            self.stored = dict(self.stored, status='active',
                               locations=[{'url': url}])

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
        edge = RacedEdge(imported(record, 'queued', name='old'))
        action, details = self.importer(FakeCentral(record),
                                        edge).import_image(IMAGE)
        self.assertEqual(('updated', 'location, name'), (action, details))
        self.assertEqual([('create', IMAGE), ('location', OWN),
                          ('patch', ['/name'])], edge.calls)

    def test_a_create_conflict_without_an_image_is_an_error(self):
        # The edge had this ID once and deleted it: Glance never gives it
        # again.
        edge = RacedEdge(None)
        self.assertRaises(catalog.EdgeConflict, self.importer(
            FakeCentral(central_record()), edge).import_image, IMAGE)

    def test_a_location_added_meanwhile_counts_as_added(self):
        record = central_record(visibility='public')
        queued = imported(record, 'queued')
        edge = DuplicateLocationEdge(queued, imported(record))
        self.assertEqual(('updated', 'location'), self.importer(
            FakeCentral(record), edge).import_image(IMAGE))
        refused = DuplicateLocationEdge(queued, dict(queued, locations=[]))
        self.assertRaises(catalog.EdgeError, self.importer(
            FakeCentral(record), refused).import_image, IMAGE)

    def test_existing_image_is_updated_or_left_unchanged(self):
        record = central_record(visibility='public')
        edge = FakeEdge(imported(record))
        self.assertEqual(('unchanged', ''), self.importer(
            FakeCentral(record), edge).import_image(IMAGE))
        action, details = self.importer(
            FakeCentral(dict(record, name='v2')), edge).import_image(IMAGE)
        self.assertEqual(('updated', 'name'), (action, details))

    def test_queued_edge_image_gets_its_location(self):
        record = central_record(visibility='public')
        edge = FakeEdge(imported(record, 'queued'))
        importer = self.importer(FakeCentral(record), edge)
        action, details = importer.import_image(IMAGE)
        self.assertEqual(('updated', 'location'), (action, details))

    def test_duplicate_member_rows_are_removed_once(self):
        record = central_record()
        edge = FakeEdge(imported(record),
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
        active = imported(record)
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


class TestOwnership(testtools.TestCase):
    """An existing edge image with central's ID is adopted only when it is
    provably the import: otherwise a ForeignImage, and no call that changes
    anything (no PATCH, member change, action or location).
    """

    def import_into(self, image, record=None):
        record = record or central_record(visibility='public',
                                          os_hash_algo='sha512',
                                          os_hash_value='h')
        edge = FakeEdge(image, members={'p-m': 'accepted'})
        importer = catalog.Importer(FakeCentral(record), edge, 'central')
        return edge, importer

    def assert_conflict(self, image, reason, record=None):
        edge, importer = self.import_into(image, record)
        error = self.assertRaises(catalog.ForeignImage,
                                  importer.import_image, IMAGE)
        self.assertIn(reason, str(error))
        self.assertIn('nothing changed', str(error))
        self.assertEqual([], edge.calls)

    def record(self):
        return central_record(visibility='public', os_hash_algo='sha512',
                              os_hash_value='h')

    def squat(self, **fields):
        """A member's own image with central's ID: private, its project's."""
        return imported(self.record(), **dict(
            dict(visibility='private', owner='p-m'), **fields))

    def test_the_import_itself_is_adopted(self):
        edge, importer = self.import_into(imported(self.record()))
        self.assertEqual(('updated', 'member p-m'),
                         importer.import_image(IMAGE))

    def test_a_location_in_another_backend_is_a_conflict(self):
        self.assert_conflict(self.squat(locations=[
            {'url': 'remote-glance://other/' + IMAGE}]),
            'other than %s' % OWN)

    def test_a_location_of_another_central_image_is_a_conflict(self):
        self.assert_conflict(self.squat(locations=[
            {'url': 'remote-glance://central/' + OTHER}]),
            '1 location(s) other than')

    def test_an_extra_location_is_a_conflict(self):
        self.assert_conflict(self.squat(locations=[
            {'url': OWN}, {'url': 'file:///var/lib/glance/images/x'}]),
            "project p-m owns it")
        self.assert_conflict(imported(self.record(), locations=[
            {'url': OWN}, {'url': 'remote-glance://central/' + OTHER}]),
            '1 location(s) other than')

    def test_other_bytes_under_our_location_are_a_conflict(self):
        # Even in an image of central's owner.
        for name, value in (('size', 11), ('checksum', 'other'),
                            ('os_hash_value', 'other'),
                            ('os_hash_algo', 'sha256'),
                            ('disk_format', 'qcow2')):
            self.assert_conflict(imported(self.record(), **{name: value}),
                                 "its %s differ from central's" % name)

    def test_an_import_copied_into_the_edges_ceph_is_adopted(self):
        edge, importer = self.import_into(imported(self.record(), locations=[
            {'url': OWN}, {'url': 'rbd://fsid/images/%s/snap' % IMAGE}]))
        self.assertEqual(('updated', 'member p-m'),
                         importer.import_image(IMAGE))

    def test_a_copy_location_without_ours_is_a_conflict(self):
        self.assert_conflict(imported(self.record(), locations=[
            {'url': 'rbd://fsid/images/%s/snap' % IMAGE}]),
            '1 location(s) other than')

    def test_a_members_linked_image_is_a_conflict(self):
        # Central's bytes under central's ID, linked by a member: the
        # member owns it, so it may carry boot properties of its own.
        self.assert_conflict(self.squat(visibility='community'),
                             "project p-m owns it, not central's owner p1")

    def test_properties_central_does_not_give_are_a_conflict(self):
        for name in ('kernel_id', 'os_command_line', 'hw_machine_type'):
            self.assert_conflict(
                imported(self.record(), **{name: 'mine'}),
                "it has properties central's image does not give it: %s"
                % name)

    def test_glances_own_properties_and_centrals_are_no_conflict(self):
        edge, importer = self.import_into(imported(
            self.record(), os_glance_importing_to_stores='',
            os_distro='cirros', stores='central'))
        self.assertEqual(('updated', 'member p-m'),
                         importer.import_image(IMAGE))

    def test_data_fields_not_set_yet_are_no_conflict(self):
        # Glance's location task still hashing, or a PATCH link before the
        # record copy: the driver checks the bytes against central anyway.
        edge, importer = self.import_into(imported(
            self.record(), checksum=None, os_hash_value=None))
        self.assertEqual('updated', importer.import_image(IMAGE)[0])

    def test_an_image_with_no_data_yet_of_central_owner_is_completed(self):
        edge, importer = self.import_into(imported(self.record(), 'queued'))
        self.assertEqual(('updated', 'location, member p-m'),
                         importer.import_image(IMAGE))
        self.assertEqual(('location', OWN), edge.calls[0])

    def test_an_image_with_no_data_yet_of_another_project_is_a_conflict(self):
        self.assert_conflict(self.squat(status='queued', locations=[],
                                        size=None, checksum=None,
                                        os_hash_algo=None,
                                        os_hash_value=None),
                             'project p-m owns it')

    def test_bytes_being_uploaded_or_staged_are_a_conflict(self):
        for status in ('saving', 'uploading', 'importing'):
            self.assert_conflict(
                imported(self.record(), status=status, locations=[]),
                'it has data (status %s)' % status)

    def test_hidden_locations_are_a_conflict(self):
        image = self.squat()
        del image['locations']
        self.assert_conflict(image, 'service role')
        image = imported(self.record())   # even our own import
        del image['locations']
        self.assert_conflict(image, 'service role')

    def test_bytes_uploaded_while_the_location_is_added_stop_the_import(self):
        class Uploaded(FakeEdge):
            def add_location(self, image_id, url):
                self.calls.append(('location', url))
                self.stored = dict(self.stored, status='active', locations=[
                    {'url': 'file:///x'}, {'url': url}], checksum='other')
        record = self.record()
        edge = Uploaded(imported(record, 'queued'))
        importer = catalog.Importer(FakeCentral(record), edge, 'central')
        self.assertRaises(catalog.ForeignImage, importer.import_image, IMAGE)
        self.assertEqual([('location', OWN)], edge.calls)

    def test_an_id_created_meanwhile_by_someone_else_is_a_conflict(self):
        edge = RacedEdge(self.squat(locations=[{'url': 'file:///x'}]))
        self.assertRaises(catalog.ForeignImage, catalog.Importer(
            FakeCentral(self.record()), edge, 'central').import_image, IMAGE)
        self.assertEqual([('create', IMAGE)], edge.calls)


class TestSyncOwnership(testtools.TestCase):
    """sync changes only images that are provably ours."""

    def sync(self, image, record, action='deactivate'):
        edge = FakeEdge(image)
        importer = catalog.Importer(FakeCentral(record), edge, 'central')
        return edge, lambda: importer.sync_image(image, action)

    def test_a_user_link_is_neither_marked_nor_deactivated(self):
        # Its own ID (central has none such), a location naming a central
        # image: a user's link, not an import.
        link = dict(imported(central_record(), id=OTHER), locations=[
            {'url': OWN}])
        edge, sync = self.sync(link, None)
        self.assertIsNone(sync())
        self.assertEqual([], edge.calls)

    def test_hidden_locations_stop_the_sync_before_any_change(self):
        link = dict(imported(central_record(), id=OTHER))
        del link['locations']
        edge, sync = self.sync(link, None)
        self.assertRaises(catalog.LocationsHidden, sync)
        self.assertEqual([], edge.calls)

    def test_a_link_under_central_id_is_a_conflict(self):
        record = central_record(visibility='public')
        squat = imported(record, visibility='private', owner='p-m',
                         locations=[{'url': 'remote-glance://central/' +
                                     OTHER}])
        edge, sync = self.sync(squat, record)
        self.assertRaises(catalog.ForeignImage, sync)
        self.assertEqual([], edge.calls)

    def test_other_bytes_under_our_location_are_not_synced(self):
        record = central_record(visibility='public')
        edge, sync = self.sync(imported(record, checksum='other'), record)
        self.assertRaises(catalog.ForeignImage, sync)
        self.assertEqual([], edge.calls)

    def test_our_import_deleted_at_central_is_marked(self):
        edge, sync = self.sync(imported(central_record()), None)
        self.assertEqual('marked', sync()[0])
        self.assertEqual(('action', 'deactivate'), edge.calls[-1])


class TestEdgeLocations(testtools.TestCase):

    def test_the_locations_field_when_the_edge_shows_it(self):
        adapter = FakeAdapter([])
        self.assertEqual([OWN], catalog.EdgeAPI(adapter).locations(
            {'id': IMAGE, 'locations': [{'url': OWN, 'metadata': {}}]}))
        self.assertEqual([], adapter.requests)

    def test_else_the_locations_api(self):
        adapter = FakeAdapter([FakeResponse(200, [{'url': OWN}])])
        self.assertEqual([OWN], catalog.EdgeAPI(adapter).locations(
            {'id': IMAGE}))
        self.assertEqual([('GET', '/images/%s/locations' % IMAGE)],
                         adapter.requests)

    def test_a_refused_or_missing_locations_api_is_hidden(self):
        for status in (403, 404, 405):
            adapter = FakeAdapter([FakeResponse(status, 'no')])
            self.assertRaises(catalog.LocationsHidden,
                              catalog.EdgeAPI(adapter).locations,
                              {'id': IMAGE})
