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

"""Unit tests of store.py: location parsing, configuration, the glance_store
surface and the error table. Central is requests-mock (see base)."""

import functools
import hashlib
import io
import os
import time
import uuid

import fixtures
from glance_store import exceptions as gs_exceptions
from glance_store import location as gs_location
from glance_store import multi_backend
from oslo_config import cfg
import requests
import testtools

from glance_store_remote import cache_index
from glance_store_remote import exceptions
from glance_store_remote import link_scope
from glance_store_remote import locations
from glance_store_remote import store
from tests.unit import base

IMAGE = '6a1b0c5e-39a4-4b27-9b0f-3f5b1d1f0a11'


class TestParseLocation(testtools.TestCase):

    def test_accepts_backend_and_lowercase_uuid(self):
        self.assertEqual(IMAGE, locations.parse_location(
            'remote-glance://central/%s' % IMAGE, 'central'))

    def test_refuses_everything_else(self):
        for uri in (
                'remote-glance://other/%s' % IMAGE,
                'remote-glance://central/%s' % IMAGE.upper(),
                'remote-glance://central/%s/' % IMAGE,
                'remote-glance://central/%s\n' % IMAGE,
                'remote-glance://central/%s/../x' % IMAGE,
                'remote-glance://central/../%s' % IMAGE,
                'remote-glance://u:p@central/%s' % IMAGE,
                'remote-glance://central:80/%s' % IMAGE,
                'remote-glance://central/%s?a=b' % IMAGE,
                'remote-glance://central/%s#f' % IMAGE,
                'remote-glance://central/%s' % IMAGE.replace('-', ''),
                'remote-glance://central/{%s}' % IMAGE,
                'REMOTE-GLANCE://central/%s' % IMAGE,
                'http://central/%s' % IMAGE,
                ' remote-glance://central/%s' % IMAGE,
                'remote-glance://central/%s' % IMAGE.replace('a', '%61', 1),
                '', None, b'remote-glance://central/' + IMAGE.encode()):
            self.assertRaises(exceptions.InvalidLocation,
                              locations.parse_location, uri, 'central')

    def test_error_names_the_expected_form_not_the_uri(self):
        error = self.assertRaises(
            exceptions.InvalidLocation, locations.parse_location,
            'remote-glance://admin:s3cret@central/%s' % IMAGE, 'central')
        self.assertNotIn('s3cret', str(error))
        self.assertIn('remote-glance://central/', str(error))


class TestStoreLocation(base.StoreTestCase):

    def test_round_trips_the_uri(self):
        loc = self.location(IMAGE)
        self.assertEqual(IMAGE, loc.store_location.image_id)
        self.assertEqual('remote-glance://central/%s' % IMAGE,
                         loc.get_store_uri())

    def test_bad_uri_is_bad_store_uri(self):
        self.assertRaises(gs_exceptions.BadStoreUri, self.location,
                          'not-a-uuid')

    def test_specs_build_the_same_location(self):
        loc = gs_location.StoreLocation.__new__(store.StoreLocation)
        loc.__init__({'backend': 'central', 'image_id': IMAGE}, self.conf,
                     backend_group='central')
        self.assertEqual('remote-glance://central/%s' % IMAGE, loc.get_uri())


class TestConfigure(base.StoreTestCase):

    def test_url_prefix_is_unique_per_backend(self):
        self.assertEqual('remote-glance://central/', self.store.url_prefix)
        self.assertEqual('remote-glance://edge2/',
                         self.make_store(backend='edge2', auth_type='none',
                                         endpoint_override=base.CENTRAL)
                         .url_prefix)

    def test_capabilities_read_random_reusable_never_write(self):
        from glance_store import capabilities as c
        self.assertTrue(self.store.is_capable(c.BitMasks.READ_RANDOM))
        self.assertTrue(self.store.is_capable(c.BitMasks.DRIVER_REUSABLE))
        self.assertFalse(self.store.is_capable(c.BitMasks.WRITE_ACCESS))

    def test_add_is_refused_as_disabled(self):
        self.assertRaises(gs_exceptions.StoreAddDisabled, self.store.add,
                          IMAGE, io.BytesIO(b'x'), 1, 'sha512')

    def test_no_auth_and_no_endpoint_is_a_clear_configuration_error(self):
        error = self.assertRaises(gs_exceptions.BadStoreConfiguration,
                                  self.make_store, backend='bare')
        self.assertIn('auth_type', str(error))
        self.assertIn('[bare]', str(error))

    def test_unknown_auth_plugin_is_a_configuration_error(self):
        self.assertRaises(gs_exceptions.BadStoreConfiguration,
                          self.make_store, backend='odd',
                          auth_type='no-such-plugin')

    def test_single_store_mode_is_refused(self):
        self.assertRaises(gs_exceptions.BadStoreConfiguration,
                          store.Store(self.conf).configure)

    def test_tls_verification_is_on_by_default(self):
        self.assertFalse(self.conf.central.insecure)
        self.assertTrue(self.store._central._adapter.session.verify)


class TestLoadsAsGlanceLoadsIt(testtools.TestCase):
    """glance-api loads drivers with glance_store.multi_backend and
    stevedore; an import error would drop the store silently.
    """

    def test_enabled_backends_entry_point_builds_our_store(self):
        config_file = os.path.join(
            self.useFixture(fixtures.TempDir()).path, 'glance-api.conf')
        with open(config_file, 'w') as f:
            f.write('[DEFAULT]\nenabled_backends = central:remote-glance\n'
                    '[glance_store]\ndefault_backend = central\n'
                    '[central]\nauth_type = none\n'
                    'endpoint_override = %s\n' % base.CENTRAL)
        conf = cfg.ConfigOpts()
        conf.register_opt(cfg.DictOpt('enabled_backends'))
        conf([], project='glance', default_config_files=[config_file])
        multi_backend.register_store_opts(conf)
        self.assertEqual(1, multi_backend.create_multi_stores(conf))
        entry = gs_location.SCHEME_TO_CLS_BACKEND_MAP['remote-glance'][
            'central']
        self.assertIsInstance(entry['store'], store.Store)
        self.assertIs(store.StoreLocation, entry['location_class'])
        self.assertEqual('remote-glance://central/',
                         entry['store'].url_prefix)


class TestGetSize(base.StoreTestCase):

    def test_repeated_calls_ask_central_once(self):
        body = self.serve_record(size=4242)
        loc = self.location(body['id'])
        sizes = [self.store.get_size(loc) for _ in range(3)]
        self.assertEqual([4242] * 3, sizes)
        self.assertEqual(1, self.central.call_count)

    def test_record_ttl_zero_asks_every_time(self):
        self.config_fixture.config(group='central',
                                   remote_glance_record_ttl=0)
        self.store.configure()
        body = self.serve_record()
        loc = self.location(body['id'])
        self.store.get_size(loc)
        self.store.get_size(loc)
        self.assertEqual(2, self.central.call_count)

    def test_missing_image_is_not_found(self):
        self.serve_record(body=base.record(image_id=IMAGE), http_status=404)
        self.assertRaises(gs_exceptions.NotFound, self.store.get_size,
                          self.location(IMAGE))

    def test_server_error_is_a_timeout_which_glance_answers_503(self):
        # At location add Glance answers 500 for RemoteServiceUnavailable.
        self.serve_record(body=base.record(image_id=IMAGE), http_status=502)
        error = self.assertRaises(gs_exceptions.TimeoutError,
                                  self.store.get_size, self.location(IMAGE))
        self.assertIn("'central'", str(error))

    def test_refused_credentials_are_a_timeout_too(self):
        self.serve_record(body=base.record(image_id=IMAGE), http_status=401)
        self.assertRaises(gs_exceptions.TimeoutError,
                          self.store.get_size, self.location(IMAGE))

    def test_unreachable_central_is_not_named_to_the_client(self):
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         exc=requests.exceptions.ConnectionError(
                             'cannot reach https://central.invalid:9292/x'))
        error = self.assertRaises(gs_exceptions.TimeoutError,
                                  self.store.get_size, self.location(IMAGE))
        self.assertNotIn('central.invalid', str(error))
        self.assertIn('central.invalid', self.log.output)

    def test_request_id_of_the_edge_request_goes_to_central(self):
        body = self.serve_record()

        class Context:
            global_request_id = 'req-%s' % uuid.uuid4()
        self.store.get_size(self.location(body['id']), context=Context)
        self.assertEqual(Context.global_request_id,
                         self.central.last_request.headers[
                             'X-OpenStack-Request-ID'])


class TestGet(base.StoreTestCase):

    def test_whole_image_without_range_header(self):
        data = bytes(range(256)) * 40
        body = self.serve_record(size=len(data), **base.hashes_of(data))
        self.serve_data(body['id'], data)
        chunks, size = self.store.get(self.location(body['id']))
        self.assertEqual(len(data), size)
        self.assertEqual(data, b''.join(chunks))
        self.assertNotIn('Range', self.central.last_request.headers)

    def test_without_a_cache_a_whole_image_is_verified_as_it_passes(self):
        # Central serves other bytes than its record says (its stored file
        # overwritten in place): the read ends short, its last byte held.
        data = bytes(range(256)) * 40
        body = self.serve_record(size=len(data), **base.hashes_of(data))
        self.serve_data(body['id'], data[:-1] + b'!')
        chunks, size = self.store.get(self.location(body['id']))
        self.assertEqual('hashed', chunks.kind)
        received = []
        error = self.assertRaises(
            IOError, lambda: received.extend(chunks))
        self.assertIsInstance(error, exceptions.CacheIntegrityError)
        self.assertEqual(data[:-1], b''.join(received))

    def test_range_is_offset_and_length(self):
        data = bytes(range(256)) * 40
        body = self.serve_record(size=len(data))
        self.serve_data(body['id'], data[1000:2000], status=206, headers={
            'Content-Range': 'bytes 1000-1999/%d' % len(data)})
        chunks, size = self.store.get(self.location(body['id']),
                                      offset=1000, chunk_size=1000)
        self.assertEqual(1000, size)
        self.assertEqual(data[1000:2000], b''.join(chunks))
        self.assertEqual('bytes=1000-1999',
                         self.central.last_request.headers['Range'])

    def test_offset_alone_reads_to_the_end(self):
        data = b'x' * 5000
        body = self.serve_record(size=len(data))
        self.serve_data(body['id'], data[4900:], status=206, headers={
            'Content-Range': 'bytes 4900-4999/5000'})
        chunks, size = self.store.get(self.location(body['id']), offset=4900)
        self.assertEqual(100, size)
        self.assertEqual('bytes=4900-4999',
                         self.central.last_request.headers['Range'])

    def test_central_down_is_remote_service_unavailable(self):
        body = self.serve_record()
        self.serve_data(body['id'], b'', status=503)
        error = self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                                  self.store.get, self.location(body['id']))
        self.assertEqual(exceptions.not_held_here(body['id']), error.msg)

    def test_unreachable_central_at_read_names_the_image_not_central(self):
        # What nova's fault shows for a server that cannot boot: the image
        # and why, in words; the transport's text only in the edge log.
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         exc=requests.exceptions.ConnectionError(
                             'cannot reach https://central.invalid:9292/x'))
        error = self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                                  self.store.get, self.location(IMAGE))
        self.assertEqual(
            'image %s is not available at this edge now: central cannot be '
            'reached and the image is not held here' % IMAGE, error.msg)
        self.assertNotIn('central.invalid', str(error))
        self.assertNotIn("'", error.msg)
        self.assertIn('central.invalid', self.log.output)
        self.assertIn('central is unavailable', self.log.output)

    def test_the_fault_names_the_edge_image_a_link_gave_its_own_id(self):
        body = self.serve_record()
        self.serve_data(body['id'], b'', status=503)
        edge_id = str(uuid.uuid4())
        users = self.useFixture(fixtures.MockPatch(
            'glance_store_remote.glance_edge.live_images_at',
            return_value=[edge_id])).mock
        error = self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                                  self.store.get, self.location(body['id']))
        self.assertEqual(exceptions.not_held_here(body['id'], edge_id),
                         error.msg)
        self.assertIn('image %s is not available' % edge_id, error.msg)
        self.assertNotIn(body['id'], error.msg)
        users.assert_called_once_with('remote-glance://central/%s'
                                      % body['id'])
        # Two edge images use the location: central's ID alone.
        users.return_value = [edge_id, str(uuid.uuid4())]
        error = self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                                  self.store.get, self.location(body['id']))
        self.assertEqual(exceptions.not_held_here(body['id']), error.msg)

    def test_stream_failure_is_an_ioerror_for_glance_retries(self):
        body = self.serve_record(size=100)
        self.serve_data(body['id'], io.BytesIO(b'y' * 60),
                        headers={'Content-Length': '100'})
        chunks, _ = self.store.get(self.location(body['id']))
        error = self.assertRaises(IOError, b''.join, chunks)
        self.assertIsInstance(error, exceptions.UpstreamStreamError)


class TestRequestResults(base.StoreTestCase):
    """Each read is counted once, under one result (cache_index's
    REQUEST_COUNTERS); a refused read only as refused.
    """

    def cached_store(self, **options):
        return self.make_store(
            auth_type='none', endpoint_override=base.CENTRAL,
            remote_glance_cache_dir=self.useFixture(fixtures.TempDir()).path,
            **options)

    def results(self, store_):
        counters = store_.cache.counters()
        return {name: counters[name] for name in cache_index.REQUEST_COUNTERS
                if counters[name]}

    def serve_image(self, data=b'i' * 4096, **fields):
        body = self.serve_record(size=len(data),
                                 **dict(base.hashes_of(data), **fields))
        self.serve_data(body['id'], data)
        return body

    def read_twice(self, store_, image_id):
        """Read an image whole, let its fill end, read it again."""
        chunks, _ = store_.get(self.location(image_id))
        b''.join(chunks)
        store_._readthrough.wait_for_fills(10)
        chunks, _ = store_.get(self.location(image_id))
        b''.join(chunks)

    def test_a_miss_then_a_hit(self):
        store_ = self.cached_store()
        body = self.serve_image()
        self.read_twice(store_, body['id'])
        self.assertEqual({'misses': 1, 'hits': 1}, self.results(store_))

    def test_a_pass_through_is_only_that(self):
        store_ = self.cached_store()
        body = self.serve_image(os_hash_value=None, checksum=None)
        chunks, _ = store_.get(self.location(body['id']))
        b''.join(chunks)
        self.assertEqual({'passthrough': 1}, self.results(store_))

    def test_central_failing_is_unavailable_and_nothing_else(self):
        store_ = self.cached_store()
        body = self.serve_record()
        self.serve_data(body['id'], b'', status=503)
        self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                          store_.get, self.location(body['id']))
        # Uncacheable: the pass-through's open fails, and is no
        # pass-through.
        body = self.serve_record(os_hash_value=None, checksum=None)
        self.serve_data(body['id'], b'', status=503)
        self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                          store_.get, self.location(body['id']))
        self.assertEqual({'unavailable': 2}, self.results(store_))

    def test_an_unreachable_central_at_the_record_is_unavailable(self):
        store_ = self.cached_store()
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, IMAGE),
                         exc=requests.exceptions.ConnectionError('cut'))
        self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                          store_.get, self.location(IMAGE))
        self.assertEqual({'unavailable': 1}, self.results(store_))

    def test_an_open_breaker_is_unavailable(self):
        store_ = self.cached_store(remote_glance_breaker_threshold=1,
                                   remote_glance_breaker_probe_interval=0)
        body = self.serve_record(http_status=503)
        self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                          store_.get, self.location(body['id']))
        calls = self.central.call_count
        self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                          store_.get, self.location(body['id']))
        self.assertEqual(calls, self.central.call_count)  # failed fast
        self.assertEqual({'unavailable': 2}, self.results(store_))

    def test_no_free_wan_slot_is_busy(self):
        store_ = self.cached_store(remote_glance_max_fills=1,
                                   remote_glance_fill_slot_wait=0)
        # A pass-through not read yet holds the only slot.
        held = self.serve_image(os_hash_value=None, checksum=None)
        holding, _ = store_.get(self.location(held['id']))
        body = self.serve_image()
        self.assertRaises(gs_exceptions.RemoteServiceUnavailable,
                          store_.get, self.location(body['id']))
        holding.close()
        self.assertEqual({'passthrough': 1, 'busy': 1},
                         self.results(store_))

    def test_a_refused_link_or_size_counts_nothing(self):
        store_ = self.cached_store()
        body = self.serve_record(http_status=503)
        self.assertRaises(gs_exceptions.TimeoutError, store_.get_size,
                          self.location(body['id']))
        self.assertEqual({}, self.results(store_))

    def test_metrics_off_counts_no_result(self):
        store_ = self.cached_store(remote_glance_metrics=False)
        self.assertFalse(store_.cache.counting)
        body = self.serve_image()
        self.read_twice(store_, body['id'])
        self.assertEqual({}, self.results(store_))
        self.assertEqual('complete', store_.cache.entry(body['id']).state)


class TestDeleteReleasesTheCache(base.StoreTestCase):

    def setUp(self):
        super().setUp()
        self.store = self.make_cached_store()
        data = b'd' * 4096
        self.body = self.serve_record(size=len(data),
                                      os_hash_value=hashlib.sha512(
                                          data).hexdigest())
        self.serve_data(self.body['id'], data)
        self.loc = self.location(self.body['id'])
        chunks, _ = self.store.get(self.loc)
        self.assertEqual(data, b''.join(chunks))
        deadline = time.monotonic() + 10
        entry = self.store._cache.entry
        while (entry(self.body['id']).state != 'complete' and
               time.monotonic() < deadline):
            time.sleep(0.01)

    def users(self, count):
        self.useFixture(fixtures.MockPatch(
            'glance_store_remote.glance_edge.count_live_locations',
            return_value=count))

    def test_last_user_releases_the_entry(self):
        self.users(1)
        self.store.delete(self.loc)
        self.assertIsNone(self.store._cache.entry(self.body['id']))

    def test_entry_stays_while_another_edge_image_uses_it(self):
        self.users(2)
        self.store.delete(self.loc)
        self.assertIsNotNone(self.store._cache.entry(self.body['id']))

    def test_entry_stays_when_users_cannot_be_counted(self):
        self.users(None)
        self.store.delete(self.loc)
        self.assertIsNotNone(self.store._cache.entry(self.body['id']))

    def test_cached_record_never_authorizes_a_new_link(self):
        self.store.central.forget(self.body['id'])
        self.central.get('%s/v2/images/%s' % (base.CENTRAL, self.body['id']),
                         status_code=503)
        self.assertRaises(gs_exceptions.TimeoutError, self.store.get_size,
                          self.loc)
        # The data it holds is still served.
        chunks, size = self.store.get(self.loc)
        self.assertEqual(4096, len(b''.join(chunks)))


class TestDelete(base.StoreTestCase):

    def test_delete_never_calls_central_and_forgets_the_record(self):
        body = self.serve_record()
        loc = self.location(body['id'])
        self.store.get_size(loc)
        self.store.delete(loc)
        self.assertEqual(['GET'], [r.method for r in
                                   self.central.request_history])
        self.store.get_size(loc)
        self.assertEqual(2, self.central.call_count)


class TestLinkAuthorization(base.StoreTestCase):
    """get_size is where Glance asks about every location it is about to
    accept, with the request context: the driver's one authorization point.
    """

    def link(self, context, scope_image=None, **fields):
        body = self.serve_record(**fields)
        if scope_image is not None:
            self.links = []
            link_scope.open_scope(context, scope_image,
                                  lambda *link: self.links.append(link))
        return body, self.store.get_size(self.location(body['id']),
                                         context=context)

    def test_private_image_of_another_project_is_refused_as_unknown(self):
        context = base.Context('p2')
        error = self.assertRaises(gs_exceptions.NotFound, self.link,
                                  context, visibility='private', owner='p1')
        self.assertNotIn('p1', str(error))
        self.assertIn('project p2 may not link central image',
                      self.log.output)

    def test_owner_public_community_and_admin_may_link(self):
        for context, fields in (
                (base.Context('p1'), {'visibility': 'private',
                                      'owner': 'p1'}),
                (base.Context('p2'), {'visibility': 'public',
                                      'owner': 'p1'}),
                (base.Context('p2'), {'visibility': 'community',
                                      'owner': 'p1'}),
                (base.Context('p2', is_admin=True),
                 {'visibility': 'private', 'owner': 'p1'})):
            _, size = self.link(context, **fields)
            self.assertEqual(1024, size)

    def test_shared_image_needs_an_accepted_membership_asked_now(self):
        body = base.record(visibility='shared', owner='p1')
        member = '%s/v2/images/%s/members/p2' % (base.CENTRAL, body['id'])
        for status, allowed in (('accepted', True), ('pending', False),
                                ('rejected', False)):
            self.central.get(member, json={'status': status})
            self.serve_record(body=body)
            call = functools.partial(self.store.get_size,
                                     self.location(body['id']),
                                     context=base.Context('p2'))
            if allowed:
                self.assertEqual(1024, call())
            else:
                self.assertRaises(gs_exceptions.NotFound, call)

    def test_a_service_token_beside_the_user_grants_nothing(self):
        context = base.Context('p2', service_roles=['service', 'admin'])
        self.assertRaises(gs_exceptions.NotFound, self.link, context,
                          visibility='private', owner='p1')

    def edge(self, **fields):
        self.useFixture(fixtures.MockPatch(
            'glance_store_remote.glance_edge.EdgeRecords',
            return_value=FakeEdge(dict({'disk_format': 'raw'}, **fields))))

    def shared_in_a_scope(self, membership):
        """A request of p1 about edge-1 linking a central image shared with
        p1 as *membership*; returns (context, location, links reported).
        """
        context = base.Context('p1')
        self.edge()
        body = base.record(visibility='shared', owner='p2')
        self.central.get('%s/v2/images/%s/members/p1' % (
            base.CENTRAL, body['id']), json={'status': membership})
        self.serve_record(body=body)
        links = []
        link_scope.open_scope(context, 'edge-1',
                              lambda *link: links.append(link))
        return context, self.location(body['id']), links

    def test_scope_is_told_once_per_location_and_asks_central_once(self):
        context, location, links = self.shared_in_a_scope('accepted')
        for _ in range(3):      # quota, check, size: Glance asks 3 times
            self.store.get_size(location, context=context)
        self.assertEqual(['central'], [link[1] for link in links])
        # One record and one membership, not three of each.
        self.assertEqual(2, self.central.call_count)

    def test_a_refusal_is_remembered_for_the_request(self):
        context, location, links = self.shared_in_a_scope('pending')
        for _ in range(3):
            self.assertRaises(gs_exceptions.NotFound, self.store.get_size,
                              location, context=context)
        self.assertEqual([], links)
        self.assertEqual(2, self.central.call_count)
        self.assertEqual(1, self.log.output.count('may not link'))

    def test_edge_image_the_requester_cannot_see_is_refused(self):
        # An upper-case ID is another image to Glance; the driver reads the
        # one the request names, as the requester sees it.
        self.edge()
        for context, image in ((base.Context('p2'), 'edge-1'),
                               (base.Context('p1'), 'EDGE-1')):
            error = self.assertRaises(gs_exceptions.NotFound, self.link,
                                      context, scope_image=image)
            self.assertNotIn(image, str(error))
        self.assertIn('edge image EDGE-1 is not visible to project p1',
                      self.log.output)

    def test_edge_record_that_disagrees_is_refused(self):
        context = base.Context('p1')
        self.edge(disk_format='qcow2')
        self.assertRaises(gs_exceptions.NotFound, self.link, context,
                          scope_image='edge-1', owner='p1')
        self.assertEqual([], self.links)
        self.assertIn('does not match edge image edge-1', self.log.output)

    def scoped(self):
        """A request of p1 about edge-1; returns (context, links)."""
        context = base.Context('p1')
        links = []
        link_scope.open_scope(context, 'edge-1',
                              lambda *link: links.append(link))
        return context, links

    def test_one_request_linking_two_central_images_refuses_the_second(self):
        # One PATCH with two links: neither is in the edge database yet.
        self.edge()
        first, second = self.serve_record(), self.serve_record()
        context, links = self.scoped()
        self.assertEqual(1024, self.store.get_size(
            self.location(first['id']), context=context))
        for _ in range(3):
            self.assertRaises(gs_exceptions.NotFound, self.store.get_size,
                              self.location(second['id']), context=context)
        # The first is still the one Glance may accept with it, alone.
        self.assertEqual(1024, self.store.get_size(
            self.location(first['id']), context=context))
        self.assertEqual([first['id']], [link[2] for link in links])
        self.assertIn('edge image edge-1 already links central image %s; '
                      'all its remote-glance locations must name that '
                      'image, not %s' % (first['id'], second['id']),
                      self.log.output)

    def test_an_edge_image_that_links_one_central_image_refuses_another(self):
        linked, other = self.serve_record(), self.serve_record()
        for url in ('remote-glance://central/%s' % linked['id'],
                    # Another remote-glance backend counts too.
                    'remote-glance://other/%s' % linked['id']):
            self.edge(locations=[{'url': url, 'status': 'active'}])
            context, links = self.scoped()
            self.assertRaises(gs_exceptions.NotFound, self.store.get_size,
                              self.location(other['id']), context=context)
            self.assertEqual([], links)

    def test_the_same_central_image_again_is_accepted(self):
        # E.g. the remote-glance location was removed (Glance keeps it as
        # deleted or pending_delete) and is added again, beside a copy of
        # the image in another store.
        linked, other = self.serve_record(), self.serve_record()
        removed = {'url': 'remote-glance://central/%s' % other['id'],
                   'status': 'pending_delete'}
        for kept in (
                [{'url': 'rbd://fsid/images/edge-1/snap', 'status': 'active'},
                 {'url': 'remote-glance://central/%s' % linked['id'],
                  'status': 'active'}],
                [{'url': 'rbd://fsid/images/edge-1/snap', 'status': 'active'},
                 removed]):
            self.edge(locations=kept)
            context, links = self.scoped()
            self.assertEqual(1024, self.store.get_size(
                self.location(linked['id']), context=context))
            self.assertEqual([linked['id']], [link[2] for link in links])


class FakeEdge:
    """The edge database: one image 'edge-1' of project p1."""

    def __init__(self, fields):
        self.fields = fields

    def get(self, image_id, context=None):
        visible = context is None or context.is_admin or (
            context.project_id == 'p1')
        if image_id != 'edge-1' or not visible:
            return None
        return dict(self.fields, properties={})
