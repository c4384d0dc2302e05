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

"""glance_edge.py, the one module that calls Glance, against each Glance
release we support: the functional env's Glance and the older Glance of
GSR_OLDER_CENTRAL_PYTHON (30.2.0, tools/older_glance.py). Each runs
glance_edge_probe.py in its own python on a SQLite database its own
``glance-manage db_sync`` made: the rows, the SQL on Glance's schema, and a
copy-image import started as Glance's import call starts it, a stale import
lock recovered as Glance recovers it.
"""

import json
import os
import subprocess
import sys

import fixtures
import testtools

from tests.functional import glance_edge_probe

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
OLDER = os.environ.get('GSR_OLDER_CENTRAL_PYTHON')
CONFIG = """[DEFAULT]
enabled_backends = ceph:file
[database]
connection = sqlite:///%s
"""


class GlanceEdgeDatabase:

    python = None

    def probe(self):
        """What glance_edge did inside this Glance (the probe's JSON)."""
        root = self.useFixture(fixtures.TempDir()).path
        config = os.path.join(root, 'glance-api.conf')
        with open(config, 'w') as f:
            f.write(CONFIG % os.path.join(root, 'glance.sqlite'))
        manage = os.path.join(os.path.dirname(self.python), 'glance-manage')
        subprocess.run([manage, '--config-file', config, 'db_sync'],
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=300)
        done = subprocess.run(
            [self.python, '-m', 'tests.functional.glance_edge_probe', config],
            cwd=ROOT, env=dict(os.environ, PYTHONPATH=ROOT),
            capture_output=True, text=True, timeout=300)
        self.assertEqual(0, done.returncode, done.stderr[-3000:])
        return json.loads(done.stdout.strip().splitlines()[-1])

    def test_records_sql_and_copy_import_in_this_glance(self):
        out = self.probe()
        central, link = glance_edge_probe.CENTRAL_ID, glance_edge_probe.LINK_ID
        # EdgeRecords through Glance's database API.
        self.assertFalse(out['known_before'])
        self.assertEqual('AlreadyExists', out['duplicate'])
        self.assertEqual({'min_disk': 2, 'properties': {
            'os_distro': 'cirros', 'hw_disk_bus': 'virtio'}}, out['record'])
        self.assertEqual('central', out['view']['stores'])
        self.assertEqual([{'url': glance_edge_probe.LOCATION,
                           'metadata': {'store': 'central'}}],
                         out['view']['locations'])
        # The SQL on Glance's own schema.
        self.assertEqual(2, out['count'])
        self.assertEqual(sorted([central, link]), out['live'])
        self.assertEqual(sorted([central, link]), out['users'])
        # The copy-image import, as ImagesController.import_image.
        self.assertTrue(out['lock_taken'])
        self.assertEqual(1, out['spawned'])
        self.assertEqual({'type': 'api_image_import', 'owner': 'p-central',
                          'input': {'image_id': central,
                                    'import_req': {
                                        'method': {'name': 'copy-image'},
                                        'stores': ['ceph']},
                                    'backend': ['ceph']}}, out['task'])
        self.assertEqual('locked', out['second'])
        # A stale lock recovered as Glance recovers it.
        self.assertTrue(out['recovered'])
        self.assertEqual({'status': 'failure',
                          'message': 'Expired lock preempted'},
                         out['stale_task'])
        self.assertTrue(out['lock_after'])
        self.assertEqual('', out['importing_after'])
        self.assertTrue(out['missing_task'])
        self.assertEqual(3, out['spawned_end'])


class TestThisGlance(GlanceEdgeDatabase, testtools.TestCase):
    """The Glance of the functional env (the edge's)."""

    python = sys.executable


class TestOlderGlance(GlanceEdgeDatabase, testtools.TestCase):
    """Glance 30.2.0 (tox's glance-30.2.0 env)."""

    python = OLDER

    def setUp(self):
        super().setUp()
        if not OLDER:
            self.skipTest('GSR_OLDER_CENTRAL_PYTHON is not set (tox -e '
                          'functional sets it)')

    def test_it_is_the_older_glance(self):
        version = subprocess.run(
            [self.python, '-c', 'import importlib.metadata as m; '
             'print(m.version("glance"))'],
            capture_output=True, text=True, timeout=60).stdout
        self.assertEqual('30.2.0', version.strip())
