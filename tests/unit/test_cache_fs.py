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

"""Unit tests of cache_fs.py: which filesystem holds a cache directory, and
the refusal of network and cluster filesystems.

A real NFS, CephFS or sshfs cannot be mounted here on demand (that needs a
server and mount privileges this test run does not have), so the mount
table is a mountinfo text fixture, in the kernel's format, handed to
``check`` through its reader argument. One test reads this host's real
``/proc/self/mountinfo`` (the temporary directory and ``/dev/shm``, local
filesystems here, are accepted).
"""

import os

import fixtures
from glance_store import exceptions as gs_exceptions
import testtools

from glance_store_remote import cache
from glance_store_remote import cache_fs
from glance_store_remote import exceptions
from tests.unit import base

# A host whose root is ext4, with /srv/share an NFSv4 export, CephFS and
# sshfs beside it, an unknown type, a mount point with a space in it, and
# two mounts stacked on /stack (the last one is on top).
MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 27 0:27 / /dev/shm rw,relatime - tmpfs tmpfs rw
40 27 0:40 / /srv/share rw,relatime shared:7 - nfs4 filer:/export rw,vers=4.2
41 40 254:0 /local /srv/share/local rw - ext4 /dev/vda rw
42 27 0:42 / /mnt/ceph rw - ceph 10.0.0.1:6789:/ rw,name=glance
43 27 0:43 / /mnt/ssh rw,nosuid - fuse.sshfs user@host:/ rw
44 27 0:44 / /mnt/odd rw - weirdfs /dev/vdb rw
45 27 0:45 / /mnt/with\\040space rw - nfs filer:/x rw
46 27 0:46 / /stack rw - ext4 /dev/vdc rw
47 46 0:47 / /stack rw - glusterfs gl:/vol rw
48 27 0:48 / /srvx rw - nfs filer:/y rw
"""


def reader(text=MOUNTINFO):
    return lambda: text


class TestFindMount(testtools.TestCase):

    def find(self, path):
        return cache_fs.find_mount(path, MOUNTINFO)

    def test_the_longest_mount_point_holding_the_path(self):
        self.assertEqual(cache_fs.Mount('/srv/share', 'nfs4'),
                         self.find('/srv/share/glance/cache'))
        self.assertEqual(cache_fs.Mount('/srv/share/local', 'ext4'),
                         self.find('/srv/share/local/cache'))
        self.assertEqual(cache_fs.Mount('/', 'ext4'),
                         self.find('/var/lib/glance'))

    def test_a_mount_point_is_a_whole_path_component(self):
        self.assertEqual('/srvx', self.find('/srvx/cache').mount_point)
        self.assertEqual('/', self.find('/srv/shared/cache').mount_point)

    def test_the_mount_point_itself(self):
        self.assertEqual('nfs4', self.find('/srv/share').fstype)

    def test_the_top_of_stacked_mounts(self):
        self.assertEqual('glusterfs', self.find('/stack/cache').fstype)

    def test_escaped_mount_points(self):
        self.assertEqual(cache_fs.Mount('/mnt/with space', 'nfs'),
                         self.find('/mnt/with space/cache'))
        self.assertEqual('\\x', cache_fs._unescape('\\134x'))
        self.assertEqual('a\\0b', cache_fs._unescape('a\\0b'))

    def test_lines_that_do_not_parse_are_skipped(self):
        self.assertEqual(
            [cache_fs.Mount('/', 'xfs')],
            cache_fs.parse_mountinfo('garbage\n1 2 3 4 5 6 no dash here\n'
                                     '27 1 8:1 / / rw - xfs /dev/sda1 rw\n'))

    def test_no_mount_holds_a_relative_path(self):
        self.assertIsNone(self.find('relative/cache'))


class TestCheck(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.log = self.useFixture(fixtures.FakeLogger(
            name='glance_store_remote.cache_fs'))

    def refused(self, root):
        return str(self.assertRaises(exceptions.CacheError, cache_fs.check,
                                     root, reader()))

    def test_nfs_is_refused_naming_type_mount_and_remedy(self):
        message = self.refused('/srv/share/glance/cache')
        self.assertEqual(
            'it is on nfs4 (a network filesystem, mounted on /srv/share), '
            'where the cache is not safe: its SQLite index in WAL mode needs '
            'memory shared by the processes of one host, and its flock locks '
            'do not hold reliably across hosts; give each glance-api node a '
            'cache directory on a local filesystem (ext4, xfs, btrfs, zfs, '
            '...)', message)

    def test_cluster_and_fuse_network_filesystems_are_refused(self):
        self.assertIn('ceph (a cluster filesystem, mounted on /mnt/ceph)',
                      self.refused('/mnt/ceph/cache'))
        self.assertIn('fuse.sshfs (a network filesystem',
                      self.refused('/mnt/ssh/cache'))
        self.assertIn('glusterfs (a cluster filesystem',
                      self.refused('/stack/cache'))

    def test_every_listed_type_is_refused_or_accepted_as_listed(self):
        self.assertEqual(set(), cache_fs.LOCAL & cache_fs.NETWORK)
        self.assertEqual(set(), cache_fs.LOCAL & cache_fs.CLUSTER)
        for fstype in ('nfs', 'nfs4', 'cifs', 'smb3', '9p', 'afs',
                       'fuse.sshfs', 'ceph', 'fuse.ceph-fuse', 'glusterfs',
                       'fuse.glusterfs', 'lustre', 'gpfs', 'ocfs2', 'gfs2'):
            text = '27 1 0:1 / / rw - %s src rw\n' % fstype
            self.assertRaises(exceptions.CacheError, cache_fs.check,
                              '/var/cache', reader(text))
        for fstype in ('ext4', 'xfs', 'btrfs', 'tmpfs', 'overlay', 'zfs'):
            text = '27 1 0:1 / / rw - %s src rw\n' % fstype
            self.assertEqual(cache_fs.Mount('/', fstype),
                             cache_fs.check('/var/cache', reader(text)))
        self.assertEqual('', self.log.output)

    def test_a_local_directory_is_accepted_silently(self):
        self.assertEqual(cache_fs.Mount('/', 'ext4'),
                         cache_fs.check('/var/lib/glance/cache', reader()))
        self.assertEqual('tmpfs',
                         cache_fs.check('/dev/shm/c', reader()).fstype)
        self.assertEqual('', self.log.output)

    def test_an_unknown_type_is_accepted_with_a_warning_naming_it(self):
        self.assertEqual(cache_fs.Mount('/mnt/odd', 'weirdfs'),
                         cache_fs.check('/mnt/odd/cache', reader()))
        self.assertIn('cache directory /mnt/odd/cache is on a filesystem of '
                      'type weirdfs (mounted on /mnt/odd) that this release '
                      'does not know', self.log.output)

    def test_an_unreadable_mount_table_is_accepted_with_a_warning(self):
        def unreadable():
            raise FileNotFoundError(2, 'No such file or directory')
        self.assertIsNone(cache_fs.check('/var/cache', unreadable))
        self.assertIn('cannot tell which filesystem holds it',
                      self.log.output)
        self.assertIsNone(cache_fs.check('/var/cache', reader('')))
        self.assertIn('no mount of /proc/self/mountinfo holds /var/cache',
                      self.log.output)

    def test_symlinks_are_followed_to_the_real_directory(self):
        tmp = self.useFixture(fixtures.TempDir()).path
        link = os.path.join(tmp, 'cache')
        os.symlink('/srv/share/glance', link)
        text = MOUNTINFO + '99 27 0:99 / %s rw - ext4 /dev/vdd rw\n' % tmp
        self.assertIn('nfs4', str(self.assertRaises(
            exceptions.CacheError, cache_fs.check, link, reader(text))))
        self.assertEqual('ext4', cache_fs.check(
            os.path.join(tmp, 'other'), reader(text)).fstype)

    def test_this_hosts_real_mount_table(self):
        # The temporary directory of the tests and /dev/shm are on local
        # filesystems on the machines these tests run on.
        if not os.path.exists(cache_fs.MOUNTINFO):
            self.skipTest('no %s' % cache_fs.MOUNTINFO)
        tmp = self.useFixture(fixtures.TempDir()).path
        mount = cache_fs.check(os.path.join(tmp, 'not-yet'))
        self.assertEqual('local', cache_fs.kind(mount.fstype), mount)
        if os.path.isdir('/dev/shm'):
            self.assertEqual('tmpfs', cache_fs.check('/dev/shm/c').fstype)


class TestCacheRefuses(base.StoreTestCase):
    """Cache() and a configured backend refuse a directory on NFS."""

    def setUp(self):
        super().setUp()
        self.tmp = self.useFixture(fixtures.TempDir()).path
        self.root = os.path.join(self.tmp, 'cache')
        text = ('27 1 0:1 / / rw - ext4 /dev/vda rw\n'
                '40 27 0:40 / %s rw - nfs4 filer:/export rw\n' % self.tmp)
        self.useFixture(fixtures.MonkeyPatch(
            'glance_store_remote.cache_fs._read_mountinfo', lambda: text))

    def test_cache_refuses_a_network_directory_and_creates_nothing(self):
        error = self.assertRaises(exceptions.CacheError, cache.Cache,
                                  self.root, 1024)
        self.assertTrue(str(error).startswith(
            'cache directory %s cannot be used: it is on nfs4 (a network '
            'filesystem, mounted on %s), where the cache is not safe'
            % (self.root, self.tmp)), error)
        self.assertFalse(os.path.exists(self.root))

    def test_glance_api_does_not_start_with_it(self):
        error = self.assertRaises(
            gs_exceptions.BadStoreConfiguration, self.make_store,
            auth_type='none', endpoint_override=base.CENTRAL,
            remote_glance_cache_dir=self.root)
        self.assertIn('remote_glance_cache_dir: cache directory %s cannot '
                      'be used: it is on nfs4' % self.root, str(error))
