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

"""Unit tests of record_copy.py and link_scope.py with a fake Glance app,
edge database and central: when the copy happens, what it writes, what a
refused request leaves. Inside real edge Glance servers, with every form of
location add, see tests/functional/test_record_copy.py."""

import gc
import weakref

import fixtures
import testtools
import webob

from glance_store_remote import exceptions
from glance_store_remote import link_scope
from glance_store_remote import record_copy
from tests.unit.base import Context
from tests.unit.test_record_rules import record

CENTRAL_ID = '6a1b0c5e-39a4-4b27-9b0f-3f5b1d1f0a11'
EDGE_ID = '0b8e5d4c-7b7a-4a4e-8b51-1f6a2d3c4e5f'
URL = 'remote-glance://central/' + CENTRAL_ID


def edge(status='active', locations=(URL,), **properties):
    return {'id': EDGE_ID, 'status': status, 'size': None, 'checksum': None,
            'os_hash_algo': None, 'os_hash_value': None,
            'disk_format': 'raw', 'container_format': 'bare', 'min_disk': 0,
            'min_ram': 0, 'virtual_size': None, 'properties': properties,
            'locations': [{'url': url, 'metadata': {'store': 'central'},
                           'status': 'active'} for url in locations]}


class FakeRecords:
    """The edge database: one image, found by its exact ID."""

    def __init__(self, current):
        self.current = current
        self.updates = []

    def get(self, image_id):
        if self.current is None or image_id != self.current['id']:
            return None
        return self.current

    def update(self, image_id, values, properties):
        self.updates.append((image_id, values, properties))


class FakeStore:
    def __init__(self, error=None, **fields):
        self._record = record(**dict({'visibility': 'public'}, **fields))
        self._error = error
        self.central = self
        group = type('Group', (), {'remote_glance_extra_properties': [],
                                   'remote_glance_copy_signatures': False})
        self.conf = {'central': group}

    def record(self, image_id):
        if self._error:
            raise self._error
        return type('Record', (), {'raw': self._record})


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


class CopierTestCase(testtools.TestCase):

    def copier(self, current, store=None):
        self.records = FakeRecords(current)
        self.clock = Clock()
        return record_copy.RecordCopier(
            records=self.records, clock=self.clock,
            find_store=lambda backend: store or FakeStore(),
            hashing_algorithm=lambda: 'sha512', retry_in_background=False)

    def scope(self, image_id=EDGE_ID, answered=False):
        scope = link_scope.LinkScope(image_id, lambda *link: None)
        scope.answered = answered
        return scope


class TestRecordCopier(CopierTestCase):

    def test_accepted_link_gets_the_record(self):
        copier = self.copier(edge())
        self.assertEqual(copier.DONE, copier.copy(EDGE_ID, 'central',
                                                  CENTRAL_ID))
        (image_id, values, properties), = self.records.updates
        self.assertEqual((EDGE_ID, 10, 'h', 1),
                         (image_id, values['size'], values['os_hash_value'],
                          values['min_disk']))
        self.assertEqual({'os_distro': 'cirros'}, properties)

    def test_glance_still_hashing_waits(self):
        # Without worker_self_reference_url (Glance's default) the task
        # leaves no hash-op host, only its import lock, and the image is
        # active before the task saves it once more.
        for current in (edge(status='importing'),
                        edge(os_glance_hash_op_host='http://node-1'),
                        edge(os_glance_import_task='task-1')):
            copier = self.copier(current)
            self.assertEqual(copier.WAIT, copier.copy(EDGE_ID, 'central',
                                                      CENTRAL_ID))
            self.assertEqual([], self.records.updates)

    def test_deactivated_meanwhile_is_done(self):
        copier = self.copier(edge(status='deactivated'))
        self.assertEqual(copier.DONE, copier.copy(EDGE_ID, 'central',
                                                  CENTRAL_ID))
        self.assertEqual([], self.records.updates)

    def test_another_case_of_the_id_is_another_image(self):
        copier = self.copier(edge())
        self.assertEqual(copier.DONE, copier.copy(EDGE_ID.upper(), 'central',
                                                  CENTRAL_ID))
        self.assertEqual([], self.records.updates)

    def test_link_not_on_the_image(self):
        copier = self.copier(edge(status='queued', locations=()))
        self.assertEqual(copier.ABSENT,
                         copier.copy(EDGE_ID, 'central', CENTRAL_ID))
        copier = self.copier(edge(locations=('remote-glance://central/x',)))
        self.assertEqual(copier.DONE,
                         copier.copy(EDGE_ID, 'central', CENTRAL_ID))
        copier = self.copier(None)
        self.assertEqual(copier.DONE,
                         copier.copy(EDGE_ID, 'central', CENTRAL_ID))
        self.assertEqual([], self.records.updates)

    def test_central_down_waits_and_a_conflict_writes_nothing(self):
        copier = self.copier(edge(), FakeStore(
            exceptions.UpstreamUnavailable('central', 'down')))
        self.assertEqual(copier.WAIT, copier.copy(EDGE_ID, 'central',
                                                  CENTRAL_ID))
        copier = self.copier(dict(edge(), disk_format='qcow2'))
        self.assertEqual(copier.DONE, copier.copy(EDGE_ID, 'central',
                                                  CENTRAL_ID))
        self.assertEqual([], self.records.updates)

    def test_pending_links_are_retried_then_dropped(self):
        copier = self.copier(edge(status='queued', locations=()))
        copier.schedule(self.scope(), 'central', CENTRAL_ID)
        copier.run_pending()
        self.assertEqual(1, len(copier.pending()))      # absent, in grace
        self.clock.now = record_copy.ABSENT_GRACE + 1
        copier.run_pending()
        self.assertEqual([], copier.pending())
        # An accepted link whose task still hashes waits much longer.
        self.records.current = edge(status='importing')
        copier.schedule(self.scope(), 'central', CENTRAL_ID)
        self.clock.now += record_copy.ABSENT_GRACE + 1
        copier.run_pending()
        self.assertEqual(1, len(copier.pending()))
        self.records.current = edge()
        self.clock.now += record_copy.RETRY_MAX
        copier.run_pending()
        self.assertEqual([], copier.pending())
        self.assertEqual(1, len(self.records.updates))

    def test_retries_back_off_and_a_failure_is_logged_once(self):
        log = self.useFixture(fixtures.FakeLogger())
        copier = self.copier(edge())
        asked = []

        def broken_database(image_id):
            asked.append(self.clock.now)
            raise RuntimeError('database locked')
        self.records.get = broken_database
        copier.schedule(self.scope(), 'central', CENTRAL_ID)
        for _ in range(200):      # 200 seconds of a retry thread
            copier.run_pending()
            self.clock.now += 1
        self.assertEqual(1, log.output.count('Traceback'))
        # Delays of 1, 2, 4, 8, then 10 seconds.
        self.assertEqual([0, 1, 3, 7, 15] + list(range(25, 200, 10)),
                         asked)
        self.assertEqual(1, len(copier.pending()))

    def test_refused_request_forgets_only_its_own_links(self):
        copier = self.copier(edge(status='queued', locations=()))
        owners = link_scope.LinkScope(EDGE_ID, copier.schedule)
        owners.answered = True                 # a POST whose task runs
        owners.linked('central', CENTRAL_ID)
        stranger = self.scope()                # Glance answered it 404
        copier.forget(stranger)
        self.assertEqual(1, len(copier.pending()))
        mine = link_scope.LinkScope(EDGE_ID, copier.schedule)
        mine.linked('central', 'c' * 36)
        copier.forget(mine)
        self.assertEqual([(EDGE_ID, 'central', CENTRAL_ID)],
                         copier.pending())


class TestRecordCopyFilter(CopierTestCase):

    def serve(self, method, path, status, links=()):
        copier = self.copier(edge())
        seen = []

        def app(environ, start_response):
            context = webob.Request(environ).context
            scope = link_scope.scope_of(context)
            seen.append(scope and scope.edge_image_id)
            for backend, central_id in links:
                scope.linked(backend, central_id)
                scope.linked(backend, central_id)   # Glance asks 3 times
            start_response('%d X' % status, [])
            return [b'']
        request = webob.Request.blank(path, method=method)
        request.context = Context('p1')
        response = request.get_response(
            record_copy.RecordCopyFilter(app, copier))
        return response, seen, copier

    def test_accepted_patch_is_copied_before_the_answer(self):
        response, seen, copier = self.serve(
            'PATCH', '/v2/images/%s' % EDGE_ID, 200,
            links=[('central', CENTRAL_ID)])
        self.assertEqual(200, response.status_int)
        self.assertEqual([EDGE_ID], seen)
        self.assertEqual(1, len(self.records.updates))
        self.assertEqual([], copier.pending())

    def test_refused_request_writes_nothing(self):
        for status in (400, 403, 404, 409):
            response, _, copier = self.serve(
                'PATCH', '/v2/images/%s' % EDGE_ID, status,
                links=[('central', CENTRAL_ID)])
            self.assertEqual([], self.records.updates)
            self.assertEqual([], copier.pending())

    def test_only_changes_of_one_image_open_a_scope(self):
        for method, path in (('GET', '/v2/images/%s' % EDGE_ID),
                             ('POST', '/v2/images'),
                             ('PATCH', '/v2/images/not-an-id'),
                             ('GET', '/v2/images/%s/file' % EDGE_ID)):
            _, seen, _ = self.serve(method, path, 200)
            self.assertEqual([None], seen, path)
        for method, path in (('POST', '/v2/images/%s/locations' % EDGE_ID),
                             ('PUT', '/v2/images/%s/tags/x' % EDGE_ID)):
            _, seen, _ = self.serve(method, path, 200)
            self.assertEqual([EDGE_ID], seen, path)


class TestLinkScope(testtools.TestCase):

    def test_scope_lives_as_long_as_the_context(self):
        context = Context()
        links = []
        link_scope.open_scope(context, EDGE_ID, lambda *a: links.append(a))
        scope = link_scope.scope_of(context)
        self.assertEqual(EDGE_ID, scope.edge_image_id)
        self.assertIsNone(link_scope.scope_of(Context()))
        self.assertIsNone(link_scope.scope_of(None))
        scope.linked('central', CENTRAL_ID)
        scope.linked('central', CENTRAL_ID)
        self.assertIs(True, scope.decision('central', CENTRAL_ID))
        self.assertEqual([(scope, 'central', CENTRAL_ID)], links)
        self.assertEqual([('central', CENTRAL_ID)], scope.links())
        refusal = ValueError('no')
        scope.refused('central', 'other', refusal)
        self.assertIs(refusal, scope.decision('central', 'other'))
        self.assertEqual([('central', CENTRAL_ID)], scope.links())
        # Other tests' contexts may still be alive: watch this scope only.
        gone = weakref.ref(scope)
        links.clear()
        del context, scope
        gc.collect()
        self.assertIsNone(gone())

    def test_a_request_id_chosen_by_a_client_finds_no_scope(self):
        mine, forged = Context(), Context()
        forged.request_id = mine.request_id
        link_scope.open_scope(mine, EDGE_ID, lambda *a: None)
        self.assertIsNone(link_scope.scope_of(forged))
