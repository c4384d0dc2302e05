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

"""Unit tests of what ``glance-remote import`` and ``sync`` report and
exit with when an edge image is not theirs, or when the site's sync lock is
held elsewhere (fake central and edge API; against real servers in
tests/functional/test_squat.py).
"""

import json

import fixtures

from glance_store_remote.cmd import catalog as cmd_catalog
from glance_store_remote.cmd import config
from tests.unit.cmd import base as cli_base
from tests.unit import test_catalog as fakes


class ListingEdge(fakes.FakeEdge):
    def images(self):
        return [self.stored]


class TestCatalogCommands(cli_base.CliTestCase):

    def use(self, edge, record):
        central = fakes.FakeCentral(record)
        central.probe = lambda: 'http://central'
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.cmd.config.central',
            lambda *args, **kwargs: central))
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.cmd.config.edge', lambda args: edge))
        return edge

    def test_import_of_an_image_that_is_not_ours_reports_a_conflict(self):
        record = fakes.central_record(visibility='public')
        edge = self.use(ListingEdge(fakes.imported(
            record, visibility='private', owner='p-m',
            locations=[{'url': 'file:///x'}])), record)
        self.assertEqual(1, self.run_cli('import', fakes.IMAGE))
        self.assertIn('%s conflict: edge image %s has central\'s ID but is '
                      'not provably its import' % (fakes.IMAGE, fakes.IMAGE),
                      self.stdout.getvalue())
        self.assertEqual([], edge.calls)
        self.assertEqual(1, self.run_cli('--json', 'import', fakes.IMAGE))
        self.assertEqual('conflict', json.loads(
            self.stdout.getvalue().split('\n', 1)[1])[0]['result'])

    def test_sync_of_a_squatted_link_reports_a_conflict(self):
        record = fakes.central_record(visibility='public')
        edge = self.use(ListingEdge(dict(fakes.imported(
            record, visibility='private', owner='p-m',
            locations=[{'url': 'remote-glance://c/' + fakes.OTHER}]),
            stores='c')), record)
        self.assertEqual(1, self.run_cli('sync'))
        self.assertIn('%s conflict:' % fakes.IMAGE, self.stdout.getvalue())
        self.assertEqual([], edge.calls)

    def test_sync_that_cannot_see_locations_stops_and_exits_1(self):
        image = dict(fakes.imported(fakes.central_record(), id=fakes.OTHER),
                     stores='c')
        del image['locations']
        edge = self.use(ListingEdge(image), None)
        self.assertEqual(1, self.run_cli('sync'))
        self.assertIn('sync stopped, nothing more was changed',
                      self.stderr.getvalue())
        self.assertIn('service role', self.stderr.getvalue())
        self.assertEqual([], edge.calls)

    def held_elsewhere(self, holder):
        edge = self.use(ListingEdge(None), None)
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.cmd.catalog._site_sync_lock',
            lambda conf, backend: cmd_catalog._AnotherSync(holder)))
        self.assertEqual(1, self.run_cli('sync'))
        self.assertIn("sync did NOT run: the site's sync lock is held by",
                      self.stderr.getvalue())
        self.assertEqual([], edge.calls)

    def test_sync_that_finds_the_site_lock_held_exits_1_naming_it(self):
        self.held_elsewhere({'member': 'edge-2-4711-ab', 'host': 'edge-2',
                             'pid': 4711, 'since': 0, 'age': 12})
        self.assertIn('edge-2-4711-ab (host edge-2, pid 4711',
                      self.stderr.getvalue())
        self.assertIn('renewed 12 s ago', self.stderr.getvalue())

    def test_a_lock_no_node_claims_is_said_so(self):
        self.held_elsewhere(None)
        self.assertIn('no signed node of the site claims',
                      self.stderr.getvalue())


class FakeSite:
    def __init__(self, held_by=None):
        self.held_by = held_by
        self.claimed = []
        self.stopped = False

    def try_lock(self, name, claim=False):
        self.claimed.append((name, claim))
        return None if self.held_by else self

    def holder(self, name):
        return self.held_by

    def renew(self):
        pass

    def release(self):
        pass

    def stop(self):
        self.stopped = True


class TestSiteSyncLock(cli_base.CliTestCase):

    def lock_with(self, site):
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.cmd.config.site',
            lambda group, backend: site))
        conf, backend = config.load_backend(self.config)
        conf.set_override('remote_glance_coordination_url', 'etcd3+http://x',
                          group=backend)
        return cmd_catalog._site_sync_lock(conf, backend)

    def test_the_lock_is_claimed_so_that_others_can_name_its_holder(self):
        site = FakeSite()
        lock = self.lock_with(site)
        self.assertEqual([('sync', True)], site.claimed)
        lock.release()
        self.assertTrue(site.stopped)

    def test_a_held_lock_names_its_holder(self):
        holder = {'member': 'm', 'host': 'h', 'pid': 1, 'since': 0, 'age': 0}
        lock = self.lock_with(FakeSite(holder))
        self.assertIsInstance(lock, cmd_catalog._AnotherSync)
        self.assertIs(holder, lock.holder)
