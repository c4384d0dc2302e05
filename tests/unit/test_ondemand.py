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

"""Unit tests of ondemand.py with a fake Glance app, edge database and
central: which answers trigger an import, who may cause one, what is
remembered. The filter inside real edge Glance servers (one edge, and a
chain of two) is tested in tests/functional/test_ondemand.py and
tests/functional/test_chain.py.
"""

import fixtures
import testtools
import webob

from glance_store_remote import exceptions
from glance_store_remote import glance_edge
from glance_store_remote import ondemand
from tests.unit.base import Context

IMAGE_ID = '6a1b0c5e-39a4-4b27-9b0f-3f5b1d1f0a11'


def central_record(**fields):
    base = {'id': IMAGE_ID, 'name': 'cirros', 'status': 'active',
            'size': 10, 'checksum': 'c', 'os_hash_algo': 'sha512',
            'os_hash_value': 'h', 'disk_format': 'qcow2',
            'container_format': 'bare', 'visibility': 'public',
            'owner': 'p-central', 'protected': False, 'os_hidden': False,
            'min_disk': 1, 'min_ram': 64, 'virtual_size': None,
            'tags': ['b', 'a'], 'os_distro': 'cirros', 'locations': []}
    base.update(fields)
    return base


class FakeRecords:
    """The edge database: known IDs and what was created."""

    def __init__(self, known=(), duplicate=False, rows=None):
        self.ids = set(known)   # the images the fake Glance shows
        # Live images hidden from the requester: id -> edge record.
        self.rows = dict(rows or {})
        self.created = []
        self.duplicate = duplicate

    def known(self, image_id):
        return image_id in self.ids or image_id in self.rows

    def get(self, image_id):
        return self.rows.get(image_id)

    def create(self, values, tags, members):
        if self.duplicate:
            self.ids.add(values['id'])
            raise glance_edge.AlreadyExists('duplicate')
        self.created.append((values, tags, members))
        self.ids.add(values['id'])


class FakeCentral:
    def __init__(self, record=None, error=None, members=None):
        self._record = record
        self._error = error
        self._members = members or {}
        self.asked = 0

    def record(self, image_id):
        self.asked += 1
        if self._error:
            raise self._error
        if self._record is None:
            raise exceptions.UpstreamNotFound('central', 'no such image')
        return type('Record', (), {'raw': self._record})

    def members(self, image_id):
        return self._members


class FakeStore:
    def __init__(self, central, ttl=60):
        self.central = central
        self.backend_group = 'central'
        group = type('Group', (), {'remote_glance_record_ttl': ttl,
                                   'remote_glance_extra_properties': [],
                                   'remote_glance_copy_signatures': False})
        self.conf = {'central': group, 'other': group}


class Clock:
    now = 1000.0

    def __call__(self):
        return self.now


class TestOnDemandImport(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.logs = self.useFixture(fixtures.FakeLogger(
            name='glance_store_remote.ondemand'))
        self.clock = Clock()

    def make(self, central, records=None, stores=None):
        self.records = records or FakeRecords()
        self.calls = []

        def glance(environ, start_response):
            """Glance: 404 for an image it does not have, else the image."""
            self.calls.append(environ['PATH_INFO'])
            if 'routing_args' in environ:
                # Glance's router cannot answer twice from one environ.
                start_response('500 Internal Server Error', [])
                return [b'reused environ']
            environ['routing_args'] = 'the first match'
            if IMAGE_ID in self.records.ids:
                start_response('200 OK', [('Content-Type', 'text/plain')])
                return [b'image ', b'data']
            start_response('404 Not Found', [('Content-Type', 'text/plain')])
            return [b'no image ', IMAGE_ID.encode()]
        self.store = FakeStore(central)
        return ondemand.OnDemandImport(
            glance, records=self.records,
            find_stores=lambda: [self.store] if stores is None else stores,
            clock=self.clock)

    def get(self, app, path='/v2/images/%s/file' % IMAGE_ID, context=None,
            method='GET'):
        request = webob.Request.blank(path, method=method)
        request.context = context or Context('p1')
        return request.get_response(app)

    def test_unknown_visible_image_is_imported_and_served(self):
        central = FakeCentral(central_record())
        response = self.get(self.make(central))
        self.assertEqual((200, b'image data'),
                         (response.status_int, response.body))
        self.assertEqual(2, len(self.calls))   # the 404, then the answer
        values, tags, members = self.records.created[0]
        self.assertEqual(IMAGE_ID, values['id'])
        self.assertEqual('active', values['status'])
        self.assertEqual(['a', 'b'], tags)
        self.assertEqual({}, members)
        self.assertEqual('remote-glance://central/' + IMAGE_ID,
                         values['locations'][0]['url'])
        self.assertIn('imported central image %s' % IMAGE_ID,
                      self.logs.output)
        self.assertIn('asked for by project p1', self.logs.output)

    def test_image_record_request_imports_too(self):
        response = self.get(self.make(FakeCentral(central_record())),
                            path='/v2/images/%s' % IMAGE_ID)
        self.assertEqual(200, response.status_int)
        self.assertEqual(1, len(self.records.created))

    def test_answers_other_than_404_pass_untouched(self):
        central = FakeCentral(central_record())
        app = self.make(central, records=FakeRecords(known=[IMAGE_ID]))
        response = self.get(app)
        self.assertEqual(b'image data', response.body)
        self.assertEqual((1, 0), (len(self.calls), central.asked))

    def test_other_requests_are_never_looked_at(self):
        central = FakeCentral(central_record())
        app = self.make(central)
        for path, method in (('/v2/images', 'GET'),
                             ('/v2/images/%s' % IMAGE_ID, 'DELETE'),
                             ('/v2/images/%s/members' % IMAGE_ID, 'GET'),
                             ('/v2/images/%s' % IMAGE_ID.upper(), 'GET'),
                             ('/v2/images/%s/file/x' % IMAGE_ID, 'GET')):
            response = self.get(app, path=path, method=method)
            self.assertEqual(404, response.status_int, path)
        self.assertEqual(0, central.asked)
        self.assertEqual([], self.records.created)

    def test_disabled_everywhere_passes_through(self):
        central = FakeCentral(central_record())
        response = self.get(self.make(central, stores=[]))
        self.assertEqual(404, response.status_int)
        self.assertEqual(0, central.asked)

    def test_id_the_edge_knows_keeps_its_404(self):
        # A deleted edge image, or one this requester may not see here.
        class KnownButHidden(FakeRecords):
            def known(self, image_id):
                return True
        central = FakeCentral(central_record())
        response = self.get(self.make(central, records=KnownButHidden()))
        self.assertEqual(404, response.status_int)
        self.assertEqual(b'no image ' + IMAGE_ID.encode(), response.body)
        self.assertEqual(0, central.asked)
        self.assertEqual(2, len(self.calls))   # Glance answered again

    def squat(self, url='file:///images/x'):
        """The edge row of a member's own image that has central's ID."""
        return {'id': IMAGE_ID, 'owner': 'p-m', 'visibility': 'private',
                'locations': [{'url': url}] if url else []}

    def test_an_image_that_has_central_id_is_not_adopted_and_is_logged(self):
        central = FakeCentral(central_record())
        records = FakeRecords(rows={IMAGE_ID: self.squat()})
        app = self.make(central, records=records)
        for _ in range(3):
            response = self.get(app)
            self.assertEqual(404, response.status_int)
        self.assertEqual([], records.created)
        self.assertEqual(1, self.logs.output.count(
            'edge image %s (owner p-m, private) has the ID of a central '
            'image (backend central) but is not its import (it has 1 '
            'location(s) other than' % IMAGE_ID))
        self.assertEqual(1, central.asked)   # once per record TTL
        self.clock.now += 61
        self.get(app)
        self.assertEqual(2, self.logs.output.count('is not its import'))

    def test_a_link_to_another_central_image_under_its_id_is_logged(self):
        central = FakeCentral(central_record())
        records = FakeRecords(rows={IMAGE_ID: self.squat(
            'remote-glance://central/0b5a7c1e-39a4-4b27-9b0f-3f5b1d1f0a11')})
        self.assertEqual(404, self.get(self.make(
            central, records=records)).status_int)
        self.assertIn('is not its import', self.logs.output)

    def test_an_import_hidden_from_the_requester_is_no_conflict(self):
        central = FakeCentral(central_record())
        row = dict(central_record(), visibility='private',
                   locations=[{'url': 'remote-glance://central/' + IMAGE_ID,
                               'status': 'active'}])
        records = FakeRecords(rows={IMAGE_ID: row})
        self.assertEqual(404, self.get(self.make(
            central, records=records)).status_int)
        self.assertNotIn('is not its import', self.logs.output)

    def test_a_members_link_under_central_id_is_logged(self):
        # Central's bytes, linked by a member under central's ID: the
        # member owns it (and may have given it boot properties).
        central = FakeCentral(central_record())
        records = FakeRecords(rows={IMAGE_ID: self.squat(
            'remote-glance://central/' + IMAGE_ID)})
        self.assertEqual(404, self.get(self.make(
            central, records=records)).status_int)
        self.assertIn("project p-m owns it, not central's owner p-central",
                      self.logs.output)

    def test_a_database_failure_while_reporting_is_no_500(self):
        # The edge has the ID (hidden from this requester) and its row
        # cannot be read now: Glance's own 404 stands, no traceback.
        class Failing(FakeRecords):
            def known(self, image_id):
                return True

            def get(self, image_id):
                raise RuntimeError('MySQL server has gone away')
        self.assertEqual(404, self.get(self.make(
            FakeCentral(central_record()), records=Failing())).status_int)
        self.assertNotIn('Traceback', self.logs.output)

    def test_an_edge_image_central_does_not_have_is_no_conflict(self):
        # Another project's private edge image: its ID is its own.
        central = FakeCentral(None)
        records = FakeRecords(rows={IMAGE_ID: self.squat()})
        self.assertEqual(404, self.get(self.make(
            central, records=records)).status_int)
        self.assertNotIn('is not its import', self.logs.output)

    def test_an_image_another_worker_just_imported_is_served(self):
        # Glance said 404, then another worker's import landed.
        records = FakeRecords()
        original = records.known

        def known(image_id):
            records.ids.add(image_id)
            return original(image_id)
        records.known = known
        central = FakeCentral(central_record())
        response = self.get(self.make(central, records=records))
        self.assertEqual(200, response.status_int)
        self.assertEqual((0, []), (central.asked, records.created))

    def test_image_private_to_another_project_stays_invisible(self):
        central = FakeCentral(central_record(visibility='private',
                                             owner='p-other'))
        response = self.get(self.make(central))
        self.assertEqual(404, response.status_int)
        self.assertEqual([], self.records.created)
        self.assertIn('may not see at central', self.logs.output)

    def test_shared_image_comes_with_its_members(self):
        central = FakeCentral(central_record(visibility='shared',
                                             owner='p-other'),
                              members={'p1': 'pending', 'p2': 'accepted'})
        response = self.get(self.make(central))
        self.assertEqual(200, response.status_int)
        self.assertEqual({'p1': 'pending', 'p2': 'accepted'},
                         self.records.created[0][2])

    def test_shared_image_without_membership_stays_invisible(self):
        central = FakeCentral(central_record(visibility='shared',
                                             owner='p-other'),
                              members={'p2': 'accepted'})
        response = self.get(self.make(central))
        self.assertEqual(404, response.status_int)
        self.assertEqual([], self.records.created)

    def test_ids_central_lacks_are_remembered_for_the_record_ttl(self):
        central = FakeCentral(None)
        app = self.make(central)
        for _ in range(3):
            self.assertEqual(404, self.get(app).status_int)
        self.assertEqual(1, central.asked)
        self.clock.now += 61
        self.assertEqual(404, self.get(app).status_int)
        self.assertEqual(2, central.asked)

    def test_the_memo_of_unknown_ids_is_bounded(self):
        self.patch(ondemand, 'UNKNOWN_MEMO_SIZE', 2)
        central = FakeCentral(None)
        app = self.make(central)
        ids = ['6a1b0c5e-39a4-4b27-9b0f-3f5b1d1f0a1%d' % i for i in range(3)]
        for image_id in ids + ids[2:]:
            self.get(app, path='/v2/images/%s' % image_id)
        self.assertEqual(3, central.asked)   # the last one was remembered
        self.get(app, path='/v2/images/%s' % ids[0])
        self.assertEqual(4, central.asked)   # the oldest was dropped
        self.assertEqual(2, len(app._unknown))

    def test_central_unreachable_answers_503_not_404(self):
        # A 404 says the image does not exist (nova gives up); central
        # may well have it: try again later.
        central = FakeCentral(error=exceptions.UpstreamUnavailable(
            'central', 'connection refused'))
        app = self.make(central)
        response = self.get(app)
        self.assertEqual(503, response.status_int)
        self.assertEqual(str(ondemand.RETRY_AFTER),
                         response.headers['Retry-After'])
        self.assertIn(IMAGE_ID, response.text)
        self.assertEqual('text/plain', response.content_type)
        self.assertNotIn('connection refused', response.text)
        # Not remembered: the next request asks again; one log line for
        # the episode, not one per request.
        self.get(app)
        self.assertEqual(2, central.asked)
        self.assertEqual(1, self.logs.output.count('answer 503'))
        central._error = None
        self.assertEqual(404, self.get(app).status_int)
        self.assertIn('work again, after 2 refused', self.logs.output)

    def test_an_import_raced_by_another_worker_still_serves(self):
        central = FakeCentral(central_record())
        response = self.get(self.make(central,
                                      records=FakeRecords(duplicate=True)))
        self.assertEqual(200, response.status_int)
        self.assertIn('imported by another worker', self.logs.output)

    def test_a_database_that_refuses_the_import_answers_503(self):
        class Failing(FakeRecords):
            def create(self, values, tags, members):
                raise RuntimeError('database is locked')
        app = self.make(FakeCentral(central_record()), records=Failing())
        for _ in range(3):
            self.assertEqual(503, self.get(app).status_int)
        self.assertEqual(1, self.logs.output.count('database refused an '
                                                   'on-demand import'))
        self.assertNotIn('Traceback', self.logs.output)

    def test_a_database_that_cannot_be_read_answers_503(self):
        class Restarting(FakeRecords):
            def known(self, image_id):
                raise RuntimeError('MySQL server has gone away')
        central = FakeCentral(central_record())
        response = self.get(self.make(central, records=Restarting()))
        self.assertEqual(503, response.status_int)
        self.assertEqual(0, central.asked)

    def test_first_backend_with_the_image_is_used(self):
        empty = FakeStore(FakeCentral(None))
        empty.backend_group = 'other'
        holder = FakeStore(FakeCentral(central_record()))
        app = self.make(None, stores=[empty, holder])
        self.assertEqual(200, self.get(app).status_int)
        self.assertEqual('remote-glance://central/' + IMAGE_ID,
                         self.records.created[0][0]['locations'][0]['url'])
