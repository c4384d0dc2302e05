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

"""Functional test of ``glance-remote readiness`` against the real lab: it
reads the edge Glance's own database (the SQLite file of the edge's
glance-api.conf, or a MariaDB server, written by the real glance-api) and
the cache its workers filled. ``--site`` (the peer path) and ``--servers``
(nova) are unit-tested (tests/unit/cmd/test_readiness.py); the site's peer
views are tested in tests/functional/test_edge_site.py.
"""

import json
import os

from tests.functional import base
from tests.harness import lab as lab_module
from tests.harness import site

# The MariaDB of the edge-site tier; the rest of that tier is not needed.
MARIADB_UNAVAILABLE = site.unavailable_reason(
    binaries=('mariadbd', 'mariadb-install-db'))

MiB = base.MiB


class TestReadiness(base.LabTestCase):
    """One lab of its own: readiness answers for every image of the edge
    database, so no other test's image may be there.
    """

    def readiness(self, *args, code):
        result = self.cli('--json', 'readiness', *args)
        self.assertEqual(code, result.returncode, result.stderr)
        answer = json.loads(result.stdout)
        return {state: {row['image_id']: row for row in answer[state]}
                for state in ('unready', 'unpinned', 'ready')}

    def test_an_image_not_held_is_unready_until_read_and_pinned(self):
        first, _ = self.make_central_image(size=MiB + 3)
        second, _ = self.make_central_image(size=2 * MiB + 5)
        edge_first = self.link_with_patch(first.id)
        edge_second = self.link_with_patch(second.id)
        self.download(edge_first.id, first)
        self.wait_fills_done()

        answer = self.readiness(code=1)
        self.assertEqual([edge_second.id], list(answer['unready']))
        self.assertEqual({'image_id': edge_second.id,
                          'central_image_id': second.id,
                          'size': second.size, 'in_edge_store': False},
                         answer['unready'][edge_second.id])
        self.assertEqual([edge_first.id], list(answer['unpinned']))
        self.assertEqual({}, answer['ready'])
        text = self.cli('readiness')
        self.assertEqual(1, text.returncode, text.stderr)
        self.assertEqual(
            [edge_second.id, second.id, 'unready', str(second.size)],
            text.stdout.splitlines()[1].split())

        # Held by the node but not pinned: listed, and not a failure.
        self.download(edge_second.id, second)
        self.wait_fills_done()
        answer = self.readiness(code=0)
        self.assertEqual({edge_first.id, edge_second.id},
                         set(answer['unpinned']))

        pinned = self.cli('cache', 'pin', first.id, second.id)
        self.assertEqual(0, pinned.returncode, pinned.stderr)
        answer = self.readiness(code=0)
        self.assertEqual(({}, {}), (answer['unready'], answer['unpinned']))
        self.assertEqual({edge_first.id, edge_second.id},
                         set(answer['ready']))

        # An edge image deleted at the edge no longer counts; the cache
        # entry of its central image stays.
        self.edge_glance().images.delete(edge_first.id)
        answer = self.readiness(code=0)
        self.assertEqual([edge_second.id], list(answer['ready']))


class MariaDBLab(lab_module.Lab):
    """The lab with its edge Glance on a MariaDB server of its own (central
    stays on SQLite): the edge's schema made by its own db_sync.
    """

    db = None

    def _start(self):
        self.db = site.MariaDB(os.path.join(self.root, 'mariadb')).start()
        self.edge_options = {'database': {'connection': self.db.url}}
        super()._start()

    def _launch(self, *servers):
        for server in servers:
            lab_module.db_sync(server)
        for server in servers:
            server.launch()
        for server in servers:
            server.wait_ready()

    def _parts(self):
        return super()._parts() + (self.db,)


class TestReadinessOnMariaDB(TestReadiness):
    """The same, with the edge Glance on MariaDB (as a site's nodes are):
    a URL with a password, booleans as TINYINT, LIKE without case.
    """

    LAB_CLASS = MariaDBLab

    @classmethod
    def setUpClass(cls):
        if MARIADB_UNAVAILABLE:
            raise cls.skipException(MARIADB_UNAVAILABLE)
        super().setUpClass()

    def readiness(self, *args, code):
        answer = super().readiness(*args, code=code)
        result = self.cli('readiness', *args)
        self.assertNotIn(self.lab.db.password, result.stdout + result.stderr)
        return answer
