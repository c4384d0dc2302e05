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

"""Which filesystem holds a cache directory, and whether the cache may live
there.

The cache (cache.py) is shared by the glance-api workers of ONE host through
two mechanisms that are only safe on a local filesystem:

* its index is SQLite in WAL mode. WAL keeps its index in a ``-shm`` file
  that every process opening the database maps into memory, and SQLite
  coordinates them through that memory: "all processes using a database
  must be on the same host computer; WAL does not work over a network
  filesystem" (https://sqlite.org/wal.html). A network or cluster
  filesystem does not keep shared memory maps of one file coherent between
  hosts, and its byte-range locks (on which SQLite relies even with one
  host) are emulated over the network or kept local to each client;
  SQLite's own FAQ warns of corruption there.
* the single flight of a fill and the eviction guard are ``flock`` locks
  under ``locks/``. On NFS, Linux emulates flock with NFS byte-range locks
  (NLM or NFSv4 leases, lost on a lease expiry or a server restart) or, with
  ``local_lock=flock`` or ``nolock``, keeps them on the client, invisible to
  other hosts; CIFS with ``nobrl``, sshfs and most FUSE network filesystems
  are local-only; CephFS, GlusterFS, Lustre and the cluster filesystems
  (GPFS, OCFS2, GFS2) make them cluster-wide locks whose behaviour on a
  client eviction is theirs, not the cache's.

Worse, a directory on such a filesystem invites sharing it between the
nodes of a site: one index in WAL mode opened from several hosts is the
corruption SQLite documents, and each node would evict the others' entries.
The nodes of a site share images through peer fill, each with its own local
cache directory.

So ``check`` refuses a directory on a network or cluster filesystem (the
types in ``NETWORK`` and ``CLUSTER``) and accepts the local ones
(``LOCAL``). A type in none of those lists (a new local filesystem, a FUSE
filesystem this release has not heard of) is accepted with a warning naming
it: refusing would stop an edge on a filesystem that is fine, with no way
round short of a new release, while the warning tells the operator the one
question to answer. A host whose mount table cannot be read (no ``/proc``)
is treated the same way.

How the type is found: from ``/proc/self/mountinfo``, the mount whose mount
point is the longest path prefix of the directory's real path (the last one
listed when mounts are stacked on one point), as ``findmnt --target`` does.
Not ``statfs(2)``'s ``f_type`` (reached through ctypes, as ``os.statvfs``
does not return it): every FUSE filesystem has the same ``f_type``, so
sshfs, ceph-fuse and glusterfs would look like a local FUSE filesystem, and
the magic numbers would need a table of our own; mountinfo names the type
the way ``mount`` and the operator do (``nfs4``, ``fuse.sshfs``), including
the subtype of a FUSE mount, and a bind mount shows the type of the
filesystem it exposes. The directory need not exist yet: the check runs
before the cache creates anything, so a refused directory is left as it was.
"""

import collections
import logging
import os

from glance_store_remote import exceptions

LOG = logging.getLogger(__name__)

MOUNTINFO = '/proc/self/mountinfo'

#: Filesystems served to this host by another one (``virtiofs`` and ``9p``:
#: by a VM's host). ``fuse.X`` is a FUSE filesystem of subtype X, as
#: mountinfo names it.
NETWORK = frozenset((
    'nfs', 'nfs4', 'cifs', 'smb3', 'smbfs', 'ncpfs', 'coda', 'afs',
    'openafs', '9p', 'virtiofs', 'davfs', 'fuse.davfs2', 'fuse.sshfs',
    'fuse.s3fs', 'fuse.rclone', 'fuse.gcsfuse', 'fuse.goofys',
    'fuse.blobfuse', 'fuse.blobfuse2',
))

#: Filesystems made to be mounted by several hosts at once.
CLUSTER = frozenset((
    'ceph', 'fuse.ceph-fuse', 'fuse.ceph', 'glusterfs', 'fuse.glusterfs',
    'lustre', 'gpfs', 'beegfs', 'orangefs', 'pvfs2', 'ocfs2', 'gfs2',
    'fuse.juicefs', 'fuse.mfs', 'fuse.moosefs', 'fuse.lizardfs',
    'panfs', 'quobyte', 'fuse.quobyte',
))

#: Local filesystems: accepted without a word.
LOCAL = frozenset((
    'ext2', 'ext3', 'ext4', 'xfs', 'btrfs', 'zfs', 'f2fs', 'jfs',
    'reiserfs', 'bcachefs', 'nilfs2', 'tmpfs', 'ramfs', 'overlay', 'aufs',
    'fuse.fuse-overlayfs',
))

_WHY = {
    'network': 'a network filesystem',
    'cluster': 'a cluster filesystem',
}

Mount = collections.namedtuple('Mount', 'mount_point fstype')


def _unescape(field):
    """A mountinfo path field, unescaped.

    The kernel writes space, tab, newline and backslash as three octal
    digits after a backslash.
    """
    if '\\' not in field:
        return field
    out, i = [], 0
    while i < len(field):
        code = field[i + 1:i + 4]
        octal = len(code) == 3 and all(c in '01234567' for c in code)
        if field[i] == '\\' and octal:
            out.append(chr(int(code, 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return ''.join(out)


def parse_mountinfo(text):
    """The mounts of a mountinfo text, in its order.

    A line is ``ID PARENT MAJ:MIN ROOT MOUNT_POINT OPTIONS [OPTIONAL...] -
    FSTYPE SOURCE SUPER_OPTIONS`` (proc(5)); lines that do not parse are
    skipped.
    """
    mounts = []
    for line in text.splitlines():
        fields = line.split(' ')
        try:
            dash = fields.index('-', 6)
            mounts.append(Mount(_unescape(fields[4]), fields[dash + 1]))
        except (ValueError, IndexError):
            continue
    return mounts


def _contains(mount_point, path):
    if mount_point == '/':
        return path.startswith('/')
    return path == mount_point or path.startswith(mount_point + '/')


def find_mount(path, mountinfo_text):
    """The mount holding *path* (an absolute real path), or None."""
    found = None
    for mount in parse_mountinfo(mountinfo_text):
        # >=: of mounts stacked on one point, the last listed is on top.
        if _contains(mount.mount_point, path) and (
                found is None or
                len(mount.mount_point) >= len(found.mount_point)):
            found = mount
    return found


def _read_mountinfo():
    with open(MOUNTINFO, encoding='utf-8', errors='surrogateescape') as f:
        return f.read()


def kind(fstype):
    """``'local'``, ``'network'``, ``'cluster'`` or ``'unknown'``."""
    if fstype in LOCAL:
        return 'local'
    if fstype in NETWORK:
        return 'network'
    if fstype in CLUSTER:
        return 'cluster'
    return 'unknown'


def check(root, read_mountinfo=None):
    """Refuse a cache directory that is not on a local filesystem.

    :param root: the cache directory (it need not exist yet)
    :param read_mountinfo: returns the text of the mount table (tests);
        by default, ``/proc/self/mountinfo`` is read
    :returns: the Mount holding *root*, or None when it cannot be told
    :raises CacheError: *root* is on a network or cluster filesystem; the
        message (which Cache prefixes with "cache directory ROOT cannot be
        used: ") names its type and mount point, why, and what to do
    """
    path = os.path.realpath(root)
    try:
        mount = find_mount(path, (read_mountinfo or _read_mountinfo)())
    except OSError as e:
        LOG.warning('cache directory %s: cannot tell which filesystem holds '
                    'it (%s); the cache is only safe on a local filesystem',
                    root, e)
        return None
    if mount is None:
        LOG.warning('cache directory %s: no mount of %s holds %s; the cache '
                    'is only safe on a local filesystem', root, MOUNTINFO,
                    path)
        return None
    where = kind(mount.fstype)
    if where in _WHY:
        raise exceptions.CacheError(
            'it is on %s (%s, mounted on %s), where the cache is not safe: '
            'its SQLite index in WAL mode needs memory shared by the '
            'processes of one host, and its flock locks do not hold '
            'reliably across hosts; give each glance-api node a cache '
            'directory on a local filesystem (ext4, xfs, btrfs, zfs, ...)'
            % (mount.fstype, _WHY[where], mount.mount_point))
    if where == 'unknown':
        LOG.warning('cache directory %s is on a filesystem of type %s '
                    '(mounted on %s) that this release does not know: it is '
                    'used, but the cache is only safe on a local filesystem; '
                    'move it if %s is a network or cluster filesystem',
                    root, mount.fstype, mount.mount_point, mount.fstype)
    return mount
