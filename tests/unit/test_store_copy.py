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

"""Unit tests of store_copy.py: the rules of a copy into another store of
the edge, the edge API client the CLI uses (requests-mock stands in for the
edge), the automatic copy with a fake edge, and the option's checks at
configure time.
"""

import threading

import fixtures
from keystoneauth1 import adapter as ks_adapter
from keystoneauth1 import noauth
from keystoneauth1 import session as ks_session
from oslo_config import cfg
from requests_mock.contrib import fixture as requests_mock_fixture
import testtools

from glance_store import exceptions as gs_exceptions

from glance_store_remote import exceptions
from glance_store_remote import glance_edge
from glance_store_remote import store_copy
from tests.unit import base

EDGE = 'http://edge.invalid:9292'
CENTRAL_ID = '11111111-2222-4333-8444-555555555555'
LOCATION = 'remote-glance://central/' + CENTRAL_ID


def central_record(**fields):
    return base.record(CENTRAL_ID, size=4096, **fields)


def edge_image(image_id=CENTRAL_ID, stores='central', **fields):
    """An edge image as Glance's API shows it, with central's data fields
    and the remote-glance location.
    """
    central = central_record()
    image = {'id': image_id, 'status': 'active', 'stores': stores,
             'disk_format': 'raw',
             'locations': [{'url': LOCATION,
                            'metadata': {'store': 'central'}}]}
    for field in store_copy.VERIFIED_FIELDS:
        image[field] = central[field]
    image.update(fields)
    return image


class TestCopyState(testtools.TestCase):

    def test_a_listed_store_holds_the_image(self):
        self.assertEqual(store_copy.HELD, store_copy.copy_state(
            edge_image(stores='central,ceph'), 'ceph'))

    def test_a_held_import_lock_is_a_copy_in_progress(self):
        self.assertEqual(store_copy.COPYING, store_copy.copy_state(
            edge_image(os_glance_import_task='t1'), 'ceph'))

    def test_a_store_listed_as_failed_is_a_failed_copy(self):
        self.assertEqual(store_copy.FAILED_STATE, store_copy.copy_state(
            edge_image(os_glance_failed_import='ceph'), 'ceph'))

    def test_a_store_left_importing_without_the_lock_is_a_failed_copy(self):
        # Glance 33 leaves it there when the read into staging failed.
        self.assertEqual(store_copy.FAILED_STATE, store_copy.copy_state(
            edge_image(os_glance_importing_to_stores='ceph'), 'ceph'))

    def test_nothing_of_that_is_absent(self):
        self.assertEqual(store_copy.ABSENT, store_copy.copy_state(
            edge_image(os_glance_failed_import='other'), 'ceph'))


class TestRefusal(testtools.TestCase):

    def refusal(self, image, target='ceph', **central):
        return store_copy.refusal(image, central_record(**central),
                                  'central', target)

    def test_an_image_with_centrals_fields_may_be_copied(self):
        self.assertIsNone(self.refusal(edge_image()))

    def test_an_image_that_is_not_active_is_refused(self):
        self.assertIn('is queued, not active',
                      self.refusal(edge_image(status='queued')))

    def test_an_image_without_a_location_in_the_backend_is_refused(self):
        self.assertIn('no location in backend central',
                      self.refusal(edge_image(stores='local')))

    def test_an_image_without_hashes_is_refused(self):
        # Glance would accept a copy without checking it.
        why = self.refusal(edge_image(os_hash_value=None, checksum=None))
        self.assertIn('no checksum, os_hash_value', why)

    def test_an_image_whose_hash_is_not_centrals_is_refused(self):
        why = self.refusal(edge_image(), os_hash_value='0' * 128)
        self.assertIn("does not carry central's os_hash_value", why)

    def test_copying_into_the_remote_glance_backend_is_refused(self):
        self.assertIn('remote-glance backend itself',
                      self.refusal(edge_image(), target='central'))


class TestLackingCopy(testtools.TestCase):

    def test_users_without_a_copy_are_listed(self):
        images = [edge_image('a', stores='central,ceph'),
                  edge_image('b'),
                  edge_image('c', locations=[{'url': 'remote-glance://'
                                              'central/other',
                                              'metadata': {}}])]
        self.assertEqual(['b'], store_copy.lacking_copy(images, LOCATION,
                                                        'ceph'))

    def test_without_locations_shown_an_image_of_another_id_may_use_it(self):
        same = edge_image()
        other = edge_image('d')
        local = edge_image('e', stores='local')
        for image in (same, other, local):
            del image['locations']
        self.assertTrue(store_copy.uses(same, LOCATION))
        self.assertIsNone(store_copy.uses(other, LOCATION))
        self.assertFalse(store_copy.uses(local, LOCATION))
        self.assertEqual([CENTRAL_ID, 'd'], store_copy.lacking_copy(
            [same, other, local], LOCATION, 'ceph'))


class FakeCache:

    def __init__(self, *results):
        self.results = list(results)
        self.asked = 0

    def evict(self, image_id):
        self.asked += 1
        return self.results.pop(0)


class TestReleaseCache(testtools.TestCase):

    def test_a_busy_entry_is_tried_again(self):
        cache = FakeCache('busy', 'busy', 'evicted')
        slept = []
        self.assertEqual('evicted', store_copy.release_cache(
            cache, CENTRAL_ID, sleep=slept.append))
        self.assertEqual(3, cache.asked)
        self.assertEqual(2, len(slept))

    def test_a_pinned_entry_stays(self):
        self.assertEqual('pinned', store_copy.release_cache(
            FakeCache('pinned'), CENTRAL_ID, sleep=self.fail))

    def test_an_entry_busy_every_time_is_reported_busy(self):
        cache = FakeCache(*['busy'] * 3)
        self.assertEqual('busy', store_copy.release_cache(
            cache, CENTRAL_ID, attempts=3, sleep=lambda s: None))


class TestView(testtools.TestCase):

    def test_a_database_row_reads_like_the_api(self):
        row = {'id': 'x', 'status': 'active', 'size': 3, 'checksum': 'c',
               'os_hash_algo': 'sha512', 'os_hash_value': 'h',
               'disk_format': 'raw', 'properties': {
                   glance_edge.IMPORT_LOCK: 't1'},
               'locations': [
                   {'url': LOCATION, 'metadata': {'store': 'central'},
                    'status': 'active'},
                   {'url': 'rbd://f/images/x/snap',
                    'metadata': {'store': 'ceph'}, 'status': 'deleted'}]}
        image = glance_edge.api_view(row)
        self.assertEqual('central', image['stores'])
        self.assertEqual('t1', image[glance_edge.IMPORT_LOCK])
        self.assertEqual([LOCATION], [loc['url']
                                      for loc in image['locations']])


class Clock:

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


class TestEdgeCopies(testtools.TestCase):
    """The CLI's copies: copy_image through the edge's API."""

    def setUp(self):
        super().setUp()
        self.mock = self.useFixture(requests_mock_fixture.Fixture())
        session = ks_session.Session(auth=noauth.NoAuth(endpoint=EDGE))
        self.clock = Clock()
        self.edge = store_copy.EdgeCopies(
            ks_adapter.Adapter(session, endpoint_override=EDGE + '/v2'))
        self.image_url = EDGE + '/v2/images/' + CENTRAL_ID

    def copy(self, image=None, timeout=10):
        """copy_image as the CLI asks it (a failed copy is retried)."""
        return store_copy.copy_image(
            self.edge, image or edge_image(), 'ceph', 'central',
            central_record, timeout, retry_failed=True,
            task_message=self.edge.last_task_message, clock=self.clock,
            sleep=self.clock.sleep)

    def test_a_copy_is_asked_with_glances_import_call(self):
        asked = self.mock.post(self.image_url + '/import', status_code=202)
        self.edge.start_copy(CENTRAL_ID, 'ceph')
        self.assertEqual({'method': {'name': 'copy-image'},
                          'stores': ['ceph'],
                          'all_stores_must_succeed': True},
                         asked.last_request.json())

    def test_another_import_is_busy(self):
        self.mock.post(self.image_url + '/import', status_code=409,
                       text='New operation on image is not permitted')
        self.assertRaises(store_copy.CopyBusy, self.edge.start_copy,
                          CENTRAL_ID, 'ceph')

    def test_a_refusal_names_the_answer(self):
        self.mock.post(self.image_url + '/import', status_code=403,
                       text='Forbidden: copy_image')
        e = self.assertRaises(store_copy.CopyError, self.edge.start_copy,
                              CENTRAL_ID, 'ceph')
        self.assertIn('answered 403 to copy-image into ceph', str(e))
        self.assertIn('copy_image', str(e))

    def test_waiting_ends_when_the_store_is_listed(self):
        self.mock.post(self.image_url + '/import', status_code=202)
        self.mock.get(self.image_url, [
            {'json': edge_image(os_glance_import_task='t1')},
            {'json': edge_image(stores='central,ceph')}])
        result, image = self.copy()
        self.assertEqual('copied', result)
        self.assertEqual('central,ceph', image['stores'])
        self.assertEqual(1.0, self.clock.now)

    def test_a_failed_copy_gives_glances_task_message(self):
        self.mock.post(self.image_url + '/import', status_code=202)
        self.mock.get(self.image_url, json=edge_image(
            os_glance_importing_to_stores='ceph'))
        self.mock.get(self.image_url + '/tasks', json={'tasks': [
            {'created_at': '2026-01-01T00:00:00Z', 'message': 'old'},
            {'created_at': '2026-01-02T00:00:00Z',
             'message': 'the data central sent does not match'}]})
        e = self.assertRaises(store_copy.CopyFailed, self.copy)
        self.assertIn('the copy into ceph failed: the data central sent',
                      str(e))

    def test_a_failed_copy_without_tasks_api_still_fails(self):
        self.mock.post(self.image_url + '/import', status_code=202)
        self.mock.get(self.image_url, json=edge_image(
            os_glance_failed_import='ceph'))
        self.mock.get(self.image_url + '/tasks', status_code=404)
        e = self.assertRaises(store_copy.CopyFailed, self.copy)
        self.assertTrue(str(e).endswith('the copy into ceph failed'))

    def test_a_copy_that_runs_too_long_says_it_may_still_run(self):
        self.mock.post(self.image_url + '/import', status_code=202)
        self.mock.get(self.image_url, json=edge_image(
            os_glance_import_task='t1'))
        e = self.assertRaises(store_copy.CopyTimeout, self.copy, timeout=5)
        self.assertIn('did not end within 5 s', str(e))

    def test_an_image_deleted_during_the_copy_fails_it(self):
        self.mock.post(self.image_url + '/import', status_code=202)
        self.mock.get(self.image_url, status_code=404)
        e = self.assertRaises(store_copy.CopyFailed, self.copy, timeout=5)
        self.assertIn('disappeared', str(e))

    def test_waiting_for_another_import_to_end(self):
        # The edge answers 409 while another import holds the lock; the
        # copy is asked again once it ended.
        asked = self.mock.post(self.image_url + '/import', [
            {'status_code': 409, 'text': 'in progress'},
            {'status_code': 202}])
        self.mock.get(self.image_url, [
            {'json': edge_image(os_glance_import_task='t1')},
            {'json': edge_image()},
            {'json': edge_image(stores='central,ceph')}])
        self.assertEqual('copied', self.copy(
            edge_image(os_glance_import_task='t1'))[0])
        self.assertEqual(2, asked.call_count)
        self.mock.post(self.image_url + '/import', status_code=409,
                       text='in progress')
        self.mock.get(self.image_url, json=edge_image(
            os_glance_import_task='t1'))
        e = self.assertRaises(store_copy.CopyTimeout, self.copy, timeout=3)
        self.assertIn('another import still runs after 3 s', str(e))

    def test_a_new_locations_hashing_task_is_waited_for_first(self):
        # The edge record gets its checksum and os_hash when the hashing
        # task of its new location ends: no refusal before that.
        asked = self.mock.post(self.image_url + '/import', status_code=202)
        self.mock.get(self.image_url, [
            {'json': edge_image()},
            {'json': edge_image(stores='central,ceph')}])
        result, _ = self.copy(edge_image(os_glance_import_task='hashing',
                                         checksum=None, os_hash_value=None))
        self.assertEqual('copied', result)
        self.assertEqual(1, asked.call_count)

    def test_a_refusal_without_another_import_is_final(self):
        asked = self.mock.post(self.image_url + '/import', status_code=202)
        e = self.assertRaises(store_copy.CopyRefused, self.copy,
                              edge_image(os_hash_value=None))
        self.assertIn('has no os_hash_value', e.why)
        self.assertEqual(0, asked.call_count)

    def test_a_lock_held_in_every_round_fails_as_busy(self):
        self.mock.post(self.image_url + '/import', status_code=409,
                       text='in progress')
        self.mock.get(self.image_url, json=edge_image())
        e = self.assertRaises(store_copy.CopyBusy, self.copy)
        self.assertIn('another import runs: in progress', str(e))

    def test_images_follows_pagination(self):
        self.mock.get(EDGE + '/v2/images?limit=100', json={
            'images': [{'id': 'a'}], 'next': '/v2/images?marker=a'})
        self.mock.get(EDGE + '/v2/images?marker=a', json={
            'images': [{'id': 'b'}]})
        self.assertEqual(['a', 'b'], [i['id'] for i in self.edge.images()])


class FakeEdge:
    """The edge's images for AutoCopy: a copy started succeeds (or, for
    IDs in *failing*, fails) at the next look.
    """

    def __init__(self, *images, failing=(), busy=()):
        self.images = {image['id']: dict(image) for image in images}
        self.failing = set(failing)
        self.busy = set(busy)
        self.started = []

    def users(self, location):
        return [dict(image) for image in self.images.values()
                if store_copy.uses(image, location)]

    def image(self, image_id):
        image = self.images[image_id]
        if image.get(glance_edge.IMPORT_LOCK):
            # The import running ends now.
            del image[glance_edge.IMPORT_LOCK]
            if image.pop('_copying', False):
                if image_id in self.failing:
                    image[glance_edge.IMPORTING] = 'ceph'
                else:
                    image['stores'] += ',ceph'
            return dict(image, **{glance_edge.IMPORT_LOCK: 'running'})
        return dict(image)

    def start_copy(self, image_id, target):
        if self.images[image_id].get(glance_edge.IMPORT_LOCK):
            # As Glance: a valid lock refuses the import.
            raise store_copy.CopyBusy('edge image %s: another import runs'
                                      % image_id)
        if image_id in self.busy:
            self.busy.discard(image_id)
            self.images[image_id][glance_edge.IMPORT_LOCK] = 'other'
            raise store_copy.CopyBusy('edge image %s: another import runs'
                                      % image_id)
        self.started.append(image_id)
        self.images[image_id].update({glance_edge.IMPORT_LOCK: 'mine',
                                      '_copying': True})
        return 'task-%s' % image_id


class TestAutoCopy(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger())

    def auto(self, edge, cache=None, release=True):
        clock = Clock()
        return store_copy.AutoCopy(
            'central', 'ceph', cache, lambda image_id: central_record(),
            edge=edge, release=release, timeout=30, clock=clock,
            sleep=clock.sleep)

    def test_the_image_under_centrals_id_is_copied_then_the_cache_released(
            self):
        edge = FakeEdge(edge_image())
        cache = FakeCache('evicted')
        results = self.auto(edge, cache).process(CENTRAL_ID)
        self.assertEqual({CENTRAL_ID: 'copied', None: 'evicted'}, results)
        self.assertEqual([CENTRAL_ID], edge.started)

    def test_links_under_ids_of_their_own_are_never_copied(self):
        # One user's N links of one central image: no N copies made as
        # admin outside every quota; only the image under central's ID.
        links = ['link-%d' % n for n in range(7)]
        edge = FakeEdge(edge_image(), *map(edge_image, links))
        cache = FakeCache('evicted')
        results = self.auto(edge, cache).process(CENTRAL_ID)
        self.assertEqual([CENTRAL_ID], edge.started)
        self.assertEqual('copied', results[CENTRAL_ID])
        for link in links:
            self.assertEqual(store_copy.NOT_COPIED_LINK, results[link])
        # The links still read through the cache: it stays.
        self.assertEqual('kept', results[None])
        self.assertEqual(0, cache.asked)
        self.assertIn('7 edge image(s) link central image %s under an ID '
                      'of their own (link-0, link-1, link-2, link-3, '
                      'link-4, ...): not copied' % CENTRAL_ID,
                      self.log.output)

    def test_a_members_image_under_central_id_is_not_copied(self):
        # A member linked central's image under central's ID (and may have
        # given it boot properties): no copy as admin.
        for fields in ({'owner': 'p-m'}, {'kernel_id': 'mine'}):
            edge = FakeEdge(edge_image(**fields))
            results = self.auto(edge, FakeCache('evicted')).process(
                CENTRAL_ID)
            self.assertEqual([], edge.started)
            self.assertEqual(store_copy.NOT_AN_IMPORT, results[CENTRAL_ID])
        self.assertIn('is not its import', self.log.output)

    def test_links_alone_make_no_copy(self):
        edge = FakeEdge(edge_image('link-1'), edge_image('link-2'))
        cache = FakeCache('evicted')
        results = self.auto(edge, cache).process(CENTRAL_ID)
        self.assertEqual([], edge.started)
        self.assertEqual({'link-1': store_copy.NOT_COPIED_LINK,
                          'link-2': store_copy.NOT_COPIED_LINK,
                          None: 'kept'}, results)

    def test_an_image_held_already_is_not_copied_again(self):
        edge = FakeEdge(edge_image(stores='central,ceph'))
        results = self.auto(edge, FakeCache('evicted')).process(CENTRAL_ID)
        self.assertEqual({CENTRAL_ID: 'held', None: 'evicted'}, results)
        self.assertEqual([], edge.started)

    def test_an_image_under_another_import_is_copied_once_it_ended(self):
        # The hashing task of a new location holds the lock first.
        edge = FakeEdge(edge_image(os_glance_import_task='location'))
        results = self.auto(edge, FakeCache('evicted')).process(CENTRAL_ID)
        self.assertEqual('copied', results[CENTRAL_ID])
        self.assertEqual([CENTRAL_ID], edge.started)

    def test_an_image_under_a_stale_lock_is_copied_at_once(self):
        # The edge recovers a stale lock as Glance's import call does.
        class Recovering(FakeEdge):
            def start_copy(self, image_id, target):
                self.images[image_id].pop(glance_edge.IMPORT_LOCK)
                return super().start_copy(image_id, target)
        edge = Recovering(edge_image(os_glance_import_task='gone'))
        results = self.auto(edge, FakeCache('evicted')).process(CENTRAL_ID)
        self.assertEqual('copied', results[CENTRAL_ID])
        self.assertEqual([CENTRAL_ID], edge.started)
        self.assertNotIn('looking again', self.log.output)

    def test_a_copy_refused_by_the_lock_is_tried_again(self):
        edge = FakeEdge(edge_image(), busy=[CENTRAL_ID])
        results = self.auto(edge, FakeCache('evicted')).process(CENTRAL_ID)
        self.assertEqual('copied', results[CENTRAL_ID])

    def test_a_failed_copy_keeps_the_cache_and_is_not_retried(self):
        edge = FakeEdge(edge_image(), failing=[CENTRAL_ID])
        cache = FakeCache()
        auto = self.auto(edge, cache)
        self.assertEqual({CENTRAL_ID: 'failed', None: 'kept'},
                         auto.process(CENTRAL_ID))
        self.assertEqual({CENTRAL_ID: 'failed', None: 'kept'},
                         auto.process(CENTRAL_ID))
        self.assertEqual([CENTRAL_ID], edge.started)
        self.assertEqual(0, cache.asked)
        self.assertIn('failed; see its import task', self.log.output)

    def test_an_image_without_centrals_hash_is_refused_and_kept(self):
        edge = FakeEdge(edge_image(os_hash_value=None))
        cache = FakeCache()
        results = self.auto(edge, cache).process(CENTRAL_ID)
        self.assertEqual([], edge.started)
        self.assertTrue(results[CENTRAL_ID].startswith('refused: '))
        self.assertEqual('kept', results[None])
        self.assertEqual(0, cache.asked)

    def test_a_pinned_entry_is_not_released(self):
        edge = FakeEdge(edge_image())
        results = self.auto(edge, FakeCache('pinned')).process(CENTRAL_ID)
        self.assertEqual('pinned', results[None])

    def test_release_can_be_turned_off(self):
        cache = FakeCache()
        results = self.auto(FakeEdge(edge_image()), cache,
                            release=False).process(CENTRAL_ID)
        self.assertEqual({CENTRAL_ID: 'copied', None: None}, results)
        self.assertEqual(0, cache.asked)

    def test_a_copy_still_running_after_the_timeout_keeps_the_cache(self):
        class Endless(FakeEdge):
            def image(self, image_id):
                return dict(self.images[image_id])
        edge = Endless(edge_image())
        results = self.auto(edge, FakeCache()).process(CENTRAL_ID)
        self.assertEqual({CENTRAL_ID: 'copying', None: 'kept'}, results)
        self.assertIn('still running after 30 s', self.log.output)


class TestAutoCopyWatch(testtools.TestCase):

    def auto(self):
        auto = store_copy.AutoCopy('central', 'ceph', None, dict)
        auto.queued = []
        auto.queue = auto.queued.append
        return auto

    def test_a_whole_read_queues_the_copy_at_its_end(self):
        auto = self.auto()
        stream = auto.watch(iter([b'ab', b'cd']), CENTRAL_ID, 4)
        self.assertEqual(b'ab', next(stream))
        self.assertEqual([], auto.queued)
        self.assertEqual(b'cd', next(stream))
        self.assertRaises(StopIteration, next, stream)
        self.assertEqual([CENTRAL_ID], auto.queued)

    def test_a_read_that_fails_queues_nothing(self):
        auto = self.auto()

        def failing():
            yield b'ab'
            raise exceptions.CacheIntegrityError('does not match')
        stream = auto.watch(failing(), CENTRAL_ID, 4)
        self.assertEqual(b'ab', next(stream))
        self.assertRaises(IOError, next, stream)
        self.assertEqual([], auto.queued)

    def test_a_read_closed_early_queues_nothing(self):
        auto = self.auto()
        closed = []

        class Data:
            def __iter__(self):
                return iter([b'ab', b'cd'])

            def close(self):
                closed.append(True)
        stream = auto.watch(Data(), CENTRAL_ID, 4)
        next(stream)
        stream.close()
        self.assertEqual([], auto.queued)
        self.assertEqual([True], closed)

    def test_a_central_image_is_queued_once_while_pending(self):
        auto = store_copy.AutoCopy('central', 'ceph', None, dict)
        gate = threading.Event()
        seen = []

        def process(central_id):
            seen.append(central_id)
            gate.wait(10)
        auto.process = process
        auto.queue(CENTRAL_ID)
        auto.queue(CENTRAL_ID)
        gate.set()
        for _ in range(200):
            with auto._lock:
                if not auto._pending:
                    break
            threading.Event().wait(0.01)
        self.assertEqual([CENTRAL_ID], seen)


class TestAutoCopyConfiguration(base.StoreTestCase):

    def conf_with_backends(self, backends):
        self.conf.register_opt(cfg.DictOpt('enabled_backends'))
        self.config_fixture.config(enabled_backends=backends)

    def test_unset_means_no_automatic_copy(self):
        self.assertIsNone(store_copy.auto_copy_from_conf(
            self.conf, 'central', None, dict))

    def test_a_store_of_this_edge_is_accepted(self):
        self.conf_with_backends({'ceph': 'rbd', 'central': 'remote-glance'})
        store = self.make_store(
            auth_type='none', endpoint_override=base.CENTRAL,
            remote_glance_copy_to_store='ceph',
            remote_glance_copy_release_cache=False)
        self.assertEqual('ceph', store._auto_copy.target)
        self.assertFalse(store._auto_copy.release)

    def test_an_unknown_store_fails_the_configuration(self):
        self.conf_with_backends({'central': 'remote-glance'})
        e = self.assertRaises(
            gs_exceptions.BadStoreConfiguration, self.make_store,
            auth_type='none', endpoint_override=base.CENTRAL,
            remote_glance_copy_to_store='ceph')
        self.assertIn("'ceph' is not a backend of enabled_backends", str(e))

    def test_a_remote_glance_store_fails_the_configuration(self):
        self.conf_with_backends({'central': 'remote-glance',
                                 'other': 'remote-glance'})
        for target in ('central', 'other'):
            e = self.assertRaises(
                gs_exceptions.BadStoreConfiguration, self.make_store,
                auth_type='none', endpoint_override=base.CENTRAL,
                remote_glance_copy_to_store=target)
            self.assertIn('is a remote-glance backend', str(e))

    def test_a_whole_read_through_the_store_is_watched_a_range_is_not(self):
        self.conf_with_backends({'ceph': 'rbd', 'central': 'remote-glance'})
        store = self.make_store(
            auth_type='none', endpoint_override=base.CENTRAL,
            remote_glance_copy_to_store='ceph')
        queued = []
        store._auto_copy.queue = queued.append
        body = b'x' * 4096
        # A whole read is verified as it passes: central's true hashes.
        self.central.get(base.CENTRAL + '/v2/images/' + CENTRAL_ID,
                         json=central_record(**base.hashes_of(body)))
        self.central.get(base.CENTRAL + '/v2/images/%s/file' % CENTRAL_ID,
                         content=body, headers={
                             'Content-Length': str(len(body))})
        data, size = store.get(self.location(CENTRAL_ID))
        self.assertEqual(body, b''.join(data))
        self.assertEqual([CENTRAL_ID], queued)
        self.central.get(base.CENTRAL + '/v2/images/%s/file' % CENTRAL_ID,
                         content=body[:10], status_code=206, headers={
                             'Content-Length': '10',
                             'Content-Range': 'bytes 0-9/4096'})
        data, size = store.get(self.location(CENTRAL_ID), chunk_size=10)
        self.assertEqual(body[:10], b''.join(data))
        self.assertEqual([CENTRAL_ID], queued)
