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

"""Central on a REAL single-node Ceph (tests/harness/ceph.py): its images live
in an RBD pool, as in most production Glance deployments, and it answers a
Range with 400 (glance_store's rbd driver cannot read from an offset). The
edge's behaviour against it is the range-less suite of
test_rangeless_central.RangelessCentralTests, run here on RBD.

Skipped, loudly, only where the Ceph packages are not installed (.ci/run
installs them on CI).
"""

from tests.functional import base
from tests.functional import test_rangeless_central
from tests.harness import ceph
from tests.harness import lab as lab_module


class CephCentral(base.CephTestMixin):
    """Central's only and default backend is the cluster's ``images``
    pool.
    """

    @classmethod
    def lab_options(cls, cluster):
        return {'central_options': ceph.rbd_backend_options(cluster)}

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
