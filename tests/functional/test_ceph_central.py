"""Central on a REAL single-node Ceph (tests/ceph.py): its images live in an
RBD pool, as in most production Glance deployments, and it answers a Range
with 400 (glance_store's rbd driver cannot read from an offset). The edge's
behaviour against it is the range-less suite of
test_rangeless_central.RangelessCentralTests, run here on RBD.

Skipped, loudly, only where the Ceph packages are not installed (.ci/run
installs them on CI).
"""

import os
import shutil
import sys
import tempfile

from tests import ceph
from tests.functional import base
from tests.functional import test_rangeless_central
from tests import lab as lab_module


class CephCentral:
    """Starts a Ceph cluster before the lab; central's only and default
    backend is its ``images`` pool.
    """

    @classmethod
    def setUpClass(cls):
        reason = ceph.unavailable_reason()
        if reason:
            raise cls.skipException(reason)
        ceph.link_bindings(sys.executable)
        cls.ceph_root = tempfile.mkdtemp(prefix='gsr-ceph-')
        cls.cluster = ceph.CephCluster(os.path.join(cls.ceph_root, 'ceph'))
        try:
            cls.cluster.start()
            cls.LAB = dict(cls.LAB, central_options=ceph.rbd_backend_options(
                cls.cluster))
            super().setUpClass()
        except BaseException:
            cls._stop_ceph()
            raise

    @classmethod
    def _stop_ceph(cls):
        try:
            cls.cluster.stop()
        finally:
            shutil.rmtree(cls.ceph_root, ignore_errors=True)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            cls._stop_ceph()

    def test_central_keeps_its_images_in_rbd(self):
        central, _ = self.make_central_image(size=1024)
        self.assertEqual(
            ['rbd://%s/images/%s/snap' % (self.cluster.fsid, central.id)],
            [location['url'] for location in
             self.central_glance.images.get(central.id).locations])


class TestRbdCentral(CephCentral,
                     test_rangeless_central.RangelessCentralTests,
                     base.CacheTestCase):

    LAB = {'proxy': True, 'edge_workers': 2}


class TestRbdCentralChain(CephCentral,
                          test_rangeless_central.ChainThroughRangelessCentral,
                          base.LabTestCase):

    LAB_CLASS = lab_module.ChainLab
