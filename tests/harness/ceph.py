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

"""A real single-node Ceph on loopback for the functional tests' Ceph tier.

One monitor and one memstore OSD (the data lives in the OSD's memory,
capped by ``memstore device bytes``), cephx on, pools of size 1, no
ceph-mgr (pools, RBD I/O, snapshots and clones do not need one). Built by
hand the way Ceph's own vstart.sh does it; see
doc/source/contributor/lab.rst for the facts behind the choices.

Everything the cluster writes (config, keyrings, monitor store, OSD dir,
logs, pid files, admin sockets, crash dumps) stays in the directory the
caller gives; the caller owns and removes it. Each daemon runs as
tests.harness.daemon runs every part of the lab: in the foreground as a
child leading a process group of its own, with SIGTERM if the process that
started it dies (PR_SET_PDEATHSIG), stopped by its process group at stop()
and at interpreter exit, SIGKILL after a short grace. Nothing is killed by
name.

Two clusters coexist on one machine (stestr runs two workers): the monitor
listens on two free ports of the lab's (tests.harness.daemon.free_port;
it starts again on fresh ones if another process took one before its
bind), and each OSD binds the first
free ports of its ``ms_bind_port_min..max`` range (Ceph moves on to the
next port when one is taken), so clusters sharing the range share it
without clashing.
"""

import glob
import json
import os
import shutil
import subprocess
import sys
import time
import uuid

from tests.harness import daemon
from tests.harness import lab as lab_module

HOST = lab_module.HOST
# The Debian packages (Ceph 16.2, Debian 12) the tier needs, as .ci/run
# installs them.
PACKAGES = ('ceph-mon', 'ceph-osd', 'ceph-common', 'python3-rados',
            'python3-rbd')
BINARIES = {'ceph-mon': 'ceph-mon', 'ceph-osd': 'ceph-osd',
            'ceph': 'ceph-common', 'rbd': 'ceph-common',
            'ceph-authtool': 'ceph-common', 'monmaptool': 'ceph-common'}
# The Python bindings, built for Debian's CPython 3.11: a virtualenv of any
# CPython 3.11 loads them (see link_bindings), other versions cannot.
BINDINGS_DIR = '/usr/lib/python3/dist-packages'
BINDINGS_VERSION = (3, 11)
BINDINGS = {'rados': 'python3-rados', 'rbd': 'python3-rbd'}

MiB = 1024 * 1024
MEMSTORE_BYTES = 1024 * MiB   # default cap of the OSD's in-memory store
# Ceph's own default range for daemon ports: below Linux's ephemeral range
# (32768+), so no outgoing connection takes them.
OSD_PORTS = (6800, 7300)
PG_NUM = 8

QUORUM_TIMEOUT = 30    # seconds for the monitor to form its quorum of one
OSD_UP_TIMEOUT = 60    # seconds for the OSD to be up
COMMAND_TIMEOUT = 60   # seconds for one ceph/rbd command
STOP_GRACE = 5         # seconds after SIGTERM before SIGKILL
MON_BIND_ATTEMPTS = 3  # monitor starts on fresh ports if one was taken


class CephError(RuntimeError):
    """The cluster failed to start or a command failed."""


def _binding_file(module):
    """The binding's file (``rados.cpython-311-<multiarch>.so``); the
    x86_64 name when there is none.
    """
    prefix = os.path.join(BINDINGS_DIR, '%s.cpython-%d%d-'
                          % ((module,) + BINDINGS_VERSION))
    found = sorted(glob.glob(prefix + '*.so'))
    return found[0] if found else prefix + 'x86_64-linux-gnu.so'


def unavailable_reason():
    """Why this machine cannot run the Ceph tier, or None when it can.

    Only missing packages make it unavailable; the reason names each
    missing binary or binding and its Debian package.
    """
    missing = []
    for binary, package in sorted(BINARIES.items()):
        if not shutil.which(binary):
            missing.append('%s (package %s)' % (binary, package))
    for module, package in sorted(BINDINGS.items()):
        if not os.path.exists(_binding_file(module)):
            missing.append('%s (package %s)' % (_binding_file(module),
                                                package))
    return daemon.skip_reason('Ceph', missing, PACKAGES)


def ceph_available():
    return unavailable_reason() is None


def link_bindings(python=sys.executable):
    """Make the virtualenv of interpreter *python* able to import ``rados``
    and ``rbd``: a symlink to each of the two binding files in its
    site-packages (not ``--system-site-packages``, which would bring every
    Debian python3 package). Idempotent and safe to run concurrently (each
    link is made under a temporary name and renamed into place).

    :param python: the virtualenv's interpreter (default: this one)
    :returns: the site-packages directory
    :raises CephError: the bindings are missing, *python* is not in a
        virtualenv or not a CPython 3.11, or the import still fails
    Cost: two interpreter starts (about 0.2 s).
    """
    reason = unavailable_reason()
    if reason:
        raise CephError(reason)
    out = subprocess.run(
        [python, '-c', 'import sys, sysconfig; print(sys.prefix != sys.'
         'base_prefix, sys.implementation.name, "%d.%d" % sys.version_info'
         '[:2], sysconfig.get_paths()["platlib"])'],
        capture_output=True, text=True, check=True, cwd='/',
        timeout=COMMAND_TIMEOUT).stdout.split(None, 3)
    in_venv, implementation, site = out[0] == 'True', out[1], out[3].strip()
    version = tuple(int(part) for part in out[2].split('.'))
    if not in_venv:
        raise CephError('%s is not the interpreter of a virtualenv: not '
                        'linking the Ceph bindings into %s' % (python, site))
    if implementation != 'cpython' or version != BINDINGS_VERSION:
        raise CephError(
            'the Ceph bindings in %s are built for CPython %s; %s is %s %s '
            'and cannot load them' % (
                BINDINGS_DIR, '.'.join(map(str, BINDINGS_VERSION)), python,
                implementation, '.'.join(map(str, version))))
    for module in BINDINGS:
        target = _binding_file(module)
        link = os.path.join(site, os.path.basename(target))
        if os.path.islink(link) and os.readlink(link) == target:
            continue
        temporary = '%s.%s.tmp' % (link, uuid.uuid4().hex)
        os.symlink(target, temporary)
        os.replace(temporary, link)
    checked = subprocess.run(
        [python, '-c', 'import rados, rbd'], capture_output=True, text=True,
        timeout=COMMAND_TIMEOUT, cwd='/')
    if checked.returncode:
        raise CephError('%s cannot import rados and rbd after linking them '
                        'into %s:\n%s' % (python, site, checked.stderr))
    return site


def _ceph_env():
    # The ceph CLI is a Debian python3 script: keep the test virtualenv's
    # Python settings away from it.
    env = dict(os.environ)
    for name in ('PYTHONPATH', 'PYTHONHOME', 'CEPH_ARGS'):
        env.pop(name, None)
    return env


class CephCluster:
    """A single-node Ceph living in directory *root*; start() brings it up
    (monitor, one memstore OSD, the pools, the Glance user), stop() stops
    every daemon. A context manager.

    :param root: the cluster's directory (made if missing; the caller
        removes it after stop())
    :param pools: RBD pools to create and ``rbd pool init``
    :param memstore_bytes: the OSD's capacity, in bytes; memstore holds
        the data in RAM, so it is also the cap of its data's memory
    :param glance_user: the restricted cephx user (``client.<name>``) with
        ``profile rbd`` on *pools*, its keyring in ``glance_keyring``
    :param osd_ports: (min, max) of the ports the OSD may bind
    :param pg_num: placement groups of each pool
    :param options: ``{section: {key: value}}`` merged into ceph.conf

    Call start() from a thread that outlives the cluster (the main
    thread): PR_SET_PDEATHSIG fires when the *thread* that started a daemon
    ends, so a cluster started from a short-lived worker thread gets
    SIGTERM as soon as that thread returns (as do tests.harness.lab's servers).

    After start(): ``conf_file``, ``fsid``, ``admin_keyring``,
    ``glance_user``, ``glance_keyring``, ``mon_host``, ``pids()``.
    Cost: about 3 s (4-5 s while another cluster starts) and two daemons
    of about 40 MB each, plus the data.
    """

    def __init__(self, root, pools=('images',),
                 memstore_bytes=MEMSTORE_BYTES, glance_user='glance',
                 osd_ports=OSD_PORTS, pg_num=PG_NUM, options=None):
        self.root = os.path.abspath(root)
        self.pools = tuple(pools)
        self.memstore_bytes = int(memstore_bytes)
        self.glance_user = glance_user
        self.osd_ports = osd_ports
        self.pg_num = pg_num
        self.options = options
        self.fsid = str(uuid.uuid4())
        self.mon_ports = (daemon.free_port(), daemon.free_port())
        self.conf_file = os.path.join(self.root, 'ceph.conf')
        self.admin_keyring = os.path.join(self.root, 'keyring')
        self.glance_keyring = os.path.join(
            self.root, 'client.%s.keyring' % glance_user)
        self.log_dir = os.path.join(self.root, 'log')
        self.procs = {}   # daemon name -> Popen, in start order
        self.start_seconds = None

    @property
    def mon_host(self):
        """The monitor's addresses, as ``mon host`` in ceph.conf."""
        return '[v2:%s:%d,v1:%s:%d]' % (HOST, self.mon_ports[0], HOST,
                                        self.mon_ports[1])

    @property
    def glance_client(self):
        """The Glance user's full cephx name."""
        return 'client.' + self.glance_user

    # -- lifecycle ---------------------------------------------------------

    def start(self):
        """Bring the cluster up; on failure stop what started and raise
        CephError with the logs' tail. Returns self.
        """
        began = time.monotonic()
        with daemon.starting(self):
            self._start()
        self.start_seconds = time.monotonic() - began
        return self

    def _start(self):
        for sub in ('run', 'log', 'crash', 'osd.0'):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        # Keys: the monitors' shared key and the admin, in one keyring.
        self._run('ceph-authtool', '--create-keyring', self.admin_keyring,
                  '--gen-key', '-n', 'mon.', '--cap', 'mon', 'allow *')
        self._run('ceph-authtool', self.admin_keyring, '--gen-key', '-n',
                  'client.admin', '--cap', 'mon', 'allow *', '--cap', 'osd',
                  'allow *', '--cap', 'mds', 'allow *', '--cap', 'mgr',
                  'allow *')
        self._start_mon()

        osd_uuid = str(uuid.uuid4())
        key = self._run('ceph-authtool', '--gen-print-key').strip()
        osd_dir = os.path.join(self.root, 'osd.0')
        secret = os.path.join(osd_dir, 'new.json')
        with open(secret, 'w') as f:
            json.dump({'cephx_secret': key}, f)
        osd_id = self.ceph('osd', 'new', osd_uuid, '-i', secret,
                           fmt=None).strip()
        os.unlink(secret)
        if osd_id != '0':
            raise CephError('expected osd id 0, got %r' % osd_id)
        self._run('ceph-osd', '-c', self.conf_file, '-i', '0', '--mkfs',
                  '--key', key, '--osd-uuid', osd_uuid)
        with open(os.path.join(osd_dir, 'keyring'), 'w') as f:
            f.write('[osd.0]\n\tkey = %s\n' % key)
        self._spawn('osd.0', 'ceph-osd', '-i', '0')
        self._wait('num_up_osds: 1', OSD_UP_TIMEOUT, self._osd_up)

        for pool in self.pools:
            self.ceph('osd', 'pool', 'create', pool, str(self.pg_num),
                      str(self.pg_num), fmt=None)
            self.rbd('pool', 'init', pool)
        osd_caps = ', '.join('profile rbd pool=%s' % p for p in self.pools)
        self.ceph('auth', 'get-or-create', self.glance_client,
                  'mon', 'profile rbd', 'osd', osd_caps, 'mgr', osd_caps,
                  '-o', self.glance_keyring, fmt=None)

    def _start_mon(self):
        """Make and start the monitor, on other free ports while another
        process took its ports between their choice and its bind.
        """
        mon_dir = os.path.join(self.root, 'mon.a')
        monmap = os.path.join(self.root, 'monmap')
        for attempt in range(1, MON_BIND_ATTEMPTS + 1):
            self._write_conf()
            shutil.rmtree(mon_dir, ignore_errors=True)
            os.makedirs(mon_dir)
            self._run('monmaptool', '--create', '--clobber', '--fsid',
                      self.fsid, '--addv', 'a', self.mon_host, monmap)
            self._run('ceph-mon', '-c', self.conf_file, '--mkfs', '-i', 'a',
                      '--monmap', monmap, '--keyring', self.admin_keyring)
            self._spawn('mon.a', 'ceph-mon', '-i', 'a')
            try:
                self._wait('the monitor quorum', QUORUM_TIMEOUT,
                           self._has_quorum)
                return
            except CephError:
                if attempt == MON_BIND_ATTEMPTS or \
                        'unable to bind monitor' not in self._read_log(
                            'mon.a.log'):
                    raise
            self._stop_daemon('mon.a')
            os.rename(os.path.join(self.log_dir, 'mon.a.log'),
                      os.path.join(self.log_dir, 'mon.a.log.%d' % attempt))
            self.mon_ports = (daemon.free_port(), daemon.free_port())

    def _write_conf(self):
        root = self.root
        sections = {
            'global': {
                'fsid': self.fsid,
                'mon host': self.mon_host,
                'public network': '%s/8' % HOST,
                'ms bind ipv6': False,
                'auth cluster required': 'cephx',
                'auth service required': 'cephx',
                'auth client required': 'cephx',
                'auth allow insecure global id reclaim': False,
                'mon warn on insecure global id reclaim allowed': False,
                'run dir': os.path.join(root, 'run'),
                'crash dir': os.path.join(root, 'crash'),
                'osd pool default size': 1,
                'osd pool default min size': 1,
                'osd pool default pg autoscale mode': 'off',
                'osd pool default pg num': self.pg_num,
                'osd pool default pgp num': self.pg_num,
                'osd crush chooseleaf type': 0,
                'mon allow pool size one': True,
                'mon allow pool delete': True,
                'mon warn on pool no redundancy': False,
                # Lab directories live on whatever disk CI has.
                'mon data avail warn': 2,
                'mon data avail crit': 1,
                'mon cluster log file': os.path.join(
                    root, 'log', 'cluster.$channel.log'),
            },
            # A keyring line in [global] would replace the daemons' own.
            'client': {
                'keyring': self.admin_keyring,
                'log file': os.path.join(root, 'log', '$name.$pid.log'),
            },
            'client.' + self.glance_user: {'keyring': self.glance_keyring},
            'mon': {
                'mon data': os.path.join(root, 'mon.$id'),
                # A taken port fails the start in 1 s, not 10 (see
                # _start_mon).
                'ms bind retry count': 1,
                'ms bind retry delay': 1,
                # Commit map changes after 0.1 s instead of 1 s: the start
                # (OSD boot, pool create, rbd pool init) takes about 3 s
                # instead of 8.
                'paxos propose interval': 0.1,
                'pid file': os.path.join(root, 'run', '$name.pid'),
                'log file': os.path.join(root, 'log', '$name.log'),
            },
            'osd': {
                'osd data': os.path.join(root, 'osd.$id'),
                'osd objectstore': 'memstore',
                'memstore device bytes': self.memstore_bytes,
                'ms bind port min': self.osd_ports[0],
                'ms bind port max': self.osd_ports[1],
                # On SIGTERM the OSD tells the monitor it goes down and
                # waits for the answer (5 s by default): when the monitor
                # died first (PR_SET_PDEATHSIG signals both at once), 1 s.
                'osd mon shutdown timeout': 1,
                'pid file': os.path.join(root, 'run', '$name.pid'),
                'log file': os.path.join(root, 'log', '$name.log'),
            },
        }
        with open(self.conf_file, 'w') as f:
            f.write(lab_module._ini(lab_module._merge(sections,
                                                      self.options)))

    def _spawn(self, name, binary, *args):
        """Start a daemon in the foreground, leading its own process group,
        with SIGTERM when this process dies.
        """
        self.procs[name] = daemon.spawn(
            [binary, '-f', '-c', self.conf_file] + list(args),
            os.path.join(self.log_dir, name + '.out'), self.root,
            env=_ceph_env())

    def _wait(self, what, timeout, ready):
        daemon.wait_until(ready, timeout, self.procs, what, self.log_tail,
                          error=CephError, interval=0.2)

    def _has_quorum(self):
        try:
            # Briefly: a monitor that failed to bind is seen exiting
            # between two tries.
            status = self.ceph('quorum_status', timeout=10,
                               connect_timeout=2)
        except CephError:
            return False
        return bool(status.get('quorum'))

    def _osd_up(self):
        return self.ceph('osd', 'stat', timeout=20).get('num_up_osds') == 1

    def stop(self):
        """Stop every daemon by its process group: SIGTERM, then SIGKILL
        after STOP_GRACE seconds; reap them. Safe to call twice; the
        directory stays for the caller to remove.
        """
        # The OSD first: with its monitor gone it waits for it a while.
        for name in reversed(list(self.procs)):
            self._stop_daemon(name)
        self.procs = {}
        daemon.forget(self)

    def _stop_daemon(self, name):
        daemon.stop(self.procs.pop(name), STOP_GRACE)

    @property
    def running(self):
        return bool(self.procs) and all(
            proc.poll() is None for proc in self.procs.values())

    def pids(self):
        """{daemon name: pid} of the daemons started and not stopped."""
        return {name: proc.pid for name, proc in self.procs.items()}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # -- commands ----------------------------------------------------------

    def _run(self, *cmd, timeout=COMMAND_TIMEOUT):
        try:
            result = subprocess.run(
                list(cmd), capture_output=True, text=True, timeout=timeout,
                env=_ceph_env(), cwd=self.root, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise CephError('%s did not finish in %ss:\n%s'
                            % (' '.join(cmd), timeout, self.log_tail()))
        if result.returncode:
            raise CephError('%s failed (%s): %s%s' % (
                ' '.join(cmd), result.returncode, result.stderr,
                result.stdout))
        return result.stdout

    def ceph(self, *args, fmt='json', user='admin', timeout=COMMAND_TIMEOUT,
             connect_timeout=None):
        """Run the ceph CLI on this cluster as client.<user>; returns the
        parsed JSON (or the text with ``fmt=None``). Cost: about 0.4 s.
        """
        cmd = ['ceph', '-c', self.conf_file, '--name', 'client.' + user,
               '--connect-timeout', str(connect_timeout or timeout)]
        if fmt:
            cmd += ['--format', fmt]
        out = self._run(*(cmd + list(args)), timeout=timeout)
        return json.loads(out) if fmt == 'json' and out.strip() else out

    def rbd(self, *args, user='admin', timeout=COMMAND_TIMEOUT):
        """Run the rbd CLI on this cluster as client.<user>; returns its
        output.
        """
        return self._run('rbd', '-c', self.conf_file, '--id', user,
                         *args, timeout=timeout)

    # -- logs --------------------------------------------------------------

    def _read_log(self, name):
        try:
            with open(os.path.join(self.log_dir, name),
                      errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def log_tail(self, lines=30):
        """The last *lines* of each daemon's log and output."""
        parts = []
        for name in ('mon.a.log', 'mon.a.out', 'osd.0.log', 'osd.0.out'):
            text = self._read_log(name).splitlines()[-lines:]
            if text:
                parts.append('--- %s\n%s' % (os.path.join(self.log_dir, name),
                                             '\n'.join(text)))
        return '\n'.join(parts) or '(no daemon log in %s)' % self.log_dir


def rbd_backend_options(cluster, backend_name='ceph', pool='images',
                        default=True, chunk_size=8):
    """The ``{section: {key: value}}`` of a Glance 33 glance-api.conf for
    an rbd store *backend_name* on *pool* of *cluster*, as the Glance user;
    merged over tests.harness.lab.GlanceServer's own config (``options=``,
    ``central_options=``).

    :param default: make it the only and default backend (Glance then
        stores uploads as ``rbd://<fsid>/<pool>/<image id>/snap``); else
        add it next to the lab's ``local:file``
    :param chunk_size: RBD object size, in MiB
    """
    backends = '%s:rbd' % backend_name
    if not default:
        backends = 'local:file, ' + backends
    options = {
        'DEFAULT': {'enabled_backends': backends},
        backend_name: {
            'rbd_store_pool': pool,
            'rbd_store_user': cluster.glance_user,
            'rbd_store_ceph_conf': cluster.conf_file,
            'rbd_store_chunk_size': chunk_size,
            'store_description': 'RBD pool %s of the lab Ceph' % pool,
        },
    }
    if default:
        options['glance_store'] = {'default_backend': backend_name}
    return options
