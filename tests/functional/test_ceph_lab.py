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

"""The lab's Ceph (tests/harness/ceph.py): a single-node cluster starts, a
Glance server whose default backend is an RBD pool of it stores and serves
images, a second cluster runs beside it, and stop() leaves no daemon.

Skipped, loudly, only where the Ceph packages are not installed (.ci/run
installs them on CI).
"""

import concurrent.futures
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import uuid

import fixtures
import requests
import testtools
from testtools import content

from tests.functional import base
from tests.harness import ceph
from tests.harness import lab as lab_module

MiB = 1024 * 1024


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def leftovers(pids):
    """The processes still alive among *pids* or in their process groups
    (each daemon leads its own), as {pid: pgid}.
    """
    groups = set(pids)
    found = {pid: pid for pid in pids if _alive(pid)}
    for pid, fields in lab_module.proc_stats():
        if int(fields[2]) in groups:
            found[pid] = int(fields[2])
    return found


class TestCephLab(testtools.TestCase):
    """One cluster and one Glance on it for the whole class."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        reason = ceph.unavailable_reason()
        if reason:
            raise cls.skipException(reason)
        cls.lab_cleanups = []
        try:
            cls._start_lab()
        except BaseException:
            cls._clean_up_lab()
            raise

    @classmethod
    def _start_lab(cls):
        # The Glance server runs this interpreter: its rbd store imports
        # rados and rbd.
        ceph.link_bindings(sys.executable)
        cls.root = tempfile.mkdtemp(prefix='gsr-ceph-lab-')
        cls.lab_cleanups.append(
            lambda: shutil.rmtree(cls.root, ignore_errors=True))
        cls.cluster = ceph.CephCluster(os.path.join(cls.root, 'ceph'))
        cls.glance = lab_module.GlanceServer(
            'glance-on-rbd', os.path.join(cls.root, 'glance'),
            policy=lab_module.ADMIN_EVERYONE,
            options=ceph.rbd_backend_options(cls.cluster))
        # Glance's database while Ceph starts (its options are known
        # before the cluster runs): about 4 s less.
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            synced = pool.submit(lab_module.db_sync, cls.glance)
            cls.lab_cleanups.append(cls.cluster.stop)
            cls.cluster.start()
            synced.result()
        cls.lab_cleanups.append(cls.glance.stop)
        cls.glance.start()

    @classmethod
    def _clean_up_lab(cls):
        """Run the cleanups, last first; every one runs, the first error
        is raised.
        """
        error = None
        while cls.lab_cleanups:
            try:
                cls.lab_cleanups.pop()()
            except Exception as e:
                error = error or e
        if error is not None:
            raise error

    @classmethod
    def tearDownClass(cls):
        try:
            cls._clean_up_lab()
        finally:
            super().tearDownClass()

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(base.TEST_TIMEOUT, gentle=True))
        self.addOnException(self._attach_logs)

    def _attach_logs(self, exc_info):
        self.addDetail('ceph-log',
                       content.text_content(self.cluster.log_tail()))
        self.addDetail('glance-log',
                       content.text_content(self.glance.log_tail(60)))

    def upload(self, size):
        """Upload random bytes to the Glance on RBD: (image, data)."""
        data = os.urandom(size)
        client = self.glance.glance()
        image = client.images.create(
            name='rbd-%s' % uuid.uuid4().hex[:8], disk_format='raw',
            container_format='bare')
        client.images.upload(image.id, io.BytesIO(data))
        return client.images.get(image.id), data

    def get_file(self, image_id, **headers):
        return requests.get('%s/v2/images/%s/file' % (self.glance.url,
                                                      image_id),
                            headers=headers, timeout=60)

    # -- the cluster -------------------------------------------------------

    def test_cluster_is_up_on_its_own_ports(self):
        cluster = self.cluster
        self.assertEqual(1, cluster.ceph('osd', 'stat')['num_up_osds'])
        self.assertEqual(cluster.fsid, cluster.ceph('fsid', fmt=None).strip())
        self.assertEqual([0], cluster.ceph('quorum_status')['quorum'])
        pools = {pool['pool_name']: pool for pool in
                 cluster.ceph('osd', 'pool', 'ls', 'detail')}
        self.assertEqual(['images'], list(pools))
        self.assertEqual(1, pools['images']['size'])
        self.assertIn('rbd', pools['images']['application_metadata'])
        # Not Ceph's fixed ports: another worker's cluster may run.
        for port in cluster.mon_ports:
            self.assertNotIn(port, (3300, 6789))
            self.assertIn(':%d' % port, cluster.mon_host)
        self.assertTrue(cluster.running)
        self.assertEqual(['mon.a', 'osd.0'], sorted(cluster.pids()))
        # The data of the memstore OSD stays in memory.
        with open(os.path.join(cluster.root, 'osd.0', 'type')) as f:
            self.assertEqual('memstore', f.read().strip())

    def test_glance_user_is_restricted_to_rbd_on_its_pools(self):
        cluster = self.cluster
        self.assertTrue(os.path.exists(cluster.glance_keyring))
        caps = cluster.ceph('auth', 'get', cluster.glance_client)[0]['caps']
        self.assertEqual({'mon': 'profile rbd',
                          'osd': 'profile rbd pool=images',
                          'mgr': 'profile rbd pool=images'}, caps)
        name = 'probe-%s' % uuid.uuid4().hex[:8]
        cluster.rbd('create', '--size', '8', 'images/' + name,
                    user=cluster.glance_user)
        self.addCleanup(cluster.rbd, 'rm', 'images/' + name)
        self.assertIn(name, cluster.rbd('ls', 'images',
                                        user=cluster.glance_user).split())
        refused = self.assertRaises(
            ceph.CephError, cluster.ceph, 'osd', 'pool', 'create',
            'not-glances', fmt=None, user=cluster.glance_user)
        self.assertIn('EACCES', str(refused))

    # -- Glance on RBD -----------------------------------------------------

    def test_upload_is_stored_in_rbd_and_served_back(self):
        # More than one 8 MiB RBD object, not a whole number of them.
        image, data = self.upload(12 * MiB + 5)
        self.assertEqual('active', image.status)
        self.assertEqual(len(data), image.size)
        expected = 'rbd://%s/images/%s/snap' % (self.cluster.fsid, image.id)
        self.assertEqual([expected],
                         [location['url'] for location in image.locations])
        self.assertEqual('ceph', image.stores)

        # In the pool: an image of that size, 8 MiB objects, a protected
        # snapshot ready for copy-on-write clones.
        rbd_info = json.loads(self.cluster.rbd(
            'info', '--format', 'json', 'images/' + image.id))
        self.assertEqual(len(data), rbd_info['size'])
        self.assertEqual(8 * MiB, rbd_info['object_size'])
        snaps = json.loads(self.cluster.rbd(
            'snap', 'ls', '--format', 'json', 'images/' + image.id))
        self.assertEqual([('snap', 'true')],
                         [(snap['name'], snap['protected']) for snap in snaps])

        response = self.get_file(image.id)
        self.assertEqual(200, response.status_code)
        self.assertEqual(data, response.content)
        self.assertEqual(hashlib.new(image.os_hash_algo, data).hexdigest(),
                         image.os_hash_value)

    def test_range_download_is_refused(self):
        # glance_store's rbd driver declares no READ_RANDOM: Glance answers
        # every Range request 400 (StoreRandomGetNotSupported), even one
        # for the whole image, rather than serve bytes from an offset.
        image, data = self.upload(2 * MiB)
        size = len(data)
        for header, offset, length in (
                ('bytes=0-99', 0, 100),
                ('bytes=100-', 100, size - 100),
                ('bytes=-100', size - 100, 100),
                ('bytes=0-%d' % (size - 1), 0, size)):
            response = self.get_file(image.id, Range=header)
            self.assertEqual(400, response.status_code, header)
            self.assertIn('Getting images randomly from this store is not '
                          'supported. Offset: %d, length: %d'
                          % (offset, length), response.text)
        # The whole image still comes back.
        self.assertEqual(data, self.get_file(image.id).content)

    # -- two clusters, and stop --------------------------------------------

    def test_second_cluster_runs_alongside_and_stops_clean(self):
        root = tempfile.mkdtemp(prefix='gsr-ceph-second-')
        self.addCleanup(shutil.rmtree, root, ignore_errors=True)
        second = ceph.CephCluster(os.path.join(root, 'ceph'),
                                  pools=('volumes', 'backups'),
                                  memstore_bytes=256 * MiB)
        self.addCleanup(second.stop)
        second.start()
        self.addDetail('second-start-seconds',
                       content.text_content('%.1f' % second.start_seconds))

        self.assertNotEqual(self.cluster.fsid, second.fsid)
        self.assertNotEqual(self.cluster.mon_host, second.mon_host)
        addrs = [self.osd_addresses(cluster)
                 for cluster in (self.cluster, second)]
        self.assertFalse(set(addrs[0]) & set(addrs[1]), addrs)
        for pool in ('volumes', 'backups'):
            second.rbd('create', '--size', '8', pool + '/probe',
                       user=second.glance_user)
        self.assertEqual('probe', second.rbd('ls', 'backups').strip())
        # The first cluster still serves Glance.
        image, data = self.upload(MiB)
        self.assertEqual(data, self.get_file(image.id).content)

        pids = list(second.pids().values())
        self.assertEqual(2, len(pids))
        self.assertEqual(pids, list(leftovers(pids)))
        second.stop()
        self.assertEqual({}, leftovers(pids))
        self.assertFalse(second.running)
        second.stop()  # twice is fine
        shutil.rmtree(root)
        self.assertFalse(os.path.exists(root))
        # The first one is untouched.
        self.assertTrue(self.cluster.running)
        self.assertEqual(1, self.cluster.ceph('osd', 'stat')['num_up_osds'])

    @staticmethod
    def osd_addresses(cluster):
        osd = cluster.ceph('osd', 'dump')['osds'][0]
        return [addr['addr'] for kind in ('public_addrs', 'cluster_addrs')
                for addr in osd[kind]['addrvec']]

    # -- helpers -----------------------------------------------------------

    def test_rbd_backend_options_beside_the_local_store(self):
        options = ceph.rbd_backend_options(self.cluster, 'rbd2', 'volumes',
                                           default=False, chunk_size=4)
        self.assertEqual('local:file, rbd2:rbd',
                         options['DEFAULT']['enabled_backends'])
        self.assertNotIn('glance_store', options)
        self.assertEqual({'rbd_store_pool': 'volumes',
                          'rbd_store_user': 'glance',
                          'rbd_store_ceph_conf': self.cluster.conf_file,
                          'rbd_store_chunk_size': 4},
                         {key: value for key, value in options['rbd2'].items()
                          if key.startswith('rbd_')})

    def test_link_bindings_is_idempotent(self):
        site = ceph.link_bindings(sys.executable)
        self.assertEqual(site, ceph.link_bindings(sys.executable))
        for module in ('rados', 'rbd'):
            link = os.path.join(site, os.path.basename(
                ceph._binding_file(module)))
            self.assertEqual(ceph._binding_file(module), os.readlink(link))
        self.assertEqual([], [name for name in os.listdir(site)
                              if name.endswith('.tmp')])
