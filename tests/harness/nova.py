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

"""A REAL nova 34 at the edge, for the functional tests' nova tier.

``NovaLab`` is the Keystone tier's lab (tests.harness.keystone: a real
Keystone, central in RegionOne, the edge in RegionTwo with this driver and the
record-copy filter behind keystonemiddleware) plus an edge compute site:

* RabbitMQ (Debian's rabbitmq-server) with its own epmd, both on free
  loopback ports, a private node name, data and log directories;
* a private libvirtd (its sockets in the lab) and virtlogd, with qemu in
  TCG (``virt_type = qemu``, ``cpu_mode = none``): no KVM is needed;
* placement (``openstack-placement`` 16, gunicorn), nova-api (gunicorn,
  through tests/harness/nova_wsgi.py), nova-conductor, nova-scheduler and
  nova-compute (libvirt driver), from nova 34 (the release of Glance 33) in
  a virtualenv of their own (tools/nova_env.py, found through
  ``GSR_NOVA_PYTHON``), on a private MariaDB (tests.harness.site);
* a loopback STAND-IN for neutron (NeutronStandIn): servers are created
  with ``networks='none'``, yet nova still lists ports and security
  groups; the stand-in answers those lists, empty. No real neutron runs.

Nova's ``[glance]`` is an edge compute's: ``endpoint_override`` = the EDGE
Glance, ``num_retries = 0``; nova passes the user's token, which the edge
validates with Keystone. Every process is a child of the test process
leading its own process group (tests.harness.site.Daemon): stopped by PID, in
the order doc/source/contributor/lab.rst gives (nova and placement first, then
RabbitMQ and epmd, then libvirt, after the lab's domains are destroyed and
undefined),
also after a failed start, at exit, and (PR_SET_PDEATHSIG) when the test
process dies. Nothing is killed by name. The lab directory is removed.

libvirtd runs as root in system mode: its state (``/run/libvirt/qemu``,
``/etc/libvirt/qemu``, virtlogd's socket) is the machine's. The lab names
its domains ``gsr-<lab>-<n>`` and only ever touches those; a second
libvirtd on the machine makes start() fail (libvirtd's own pid-file lock).
"""

import glob
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time

import requests

from tests.harness import daemon
from tests.harness import keystone
from tests.harness import lab as lab_module
from tests.harness import site
from tests.harness import web_server

HOST = lab_module.HOST
NOVA_PYTHON_ENV = 'GSR_NOVA_PYTHON'
RABBITMQ_SERVER = '/usr/lib/rabbitmq/bin/rabbitmq-server'
QEMU_LOGS = '/var/log/libvirt/qemu'
# Debian package of each binary the tier needs, as .ci/run installs them.
BINARIES = {'epmd': 'erlang-base', 'libvirtd': 'libvirt-daemon-system',
            'virtlogd': 'libvirt-daemon-system', 'virsh': 'libvirt-clients',
            'qemu-system-x86_64': 'qemu-system-x86',
            'qemu-img': 'qemu-utils', 'unshare': 'util-linux',
            'mariadbd': 'mariadb-server',
            'mariadb-install-db': 'mariadb-server'}
PACKAGES = ('rabbitmq-server', 'libvirt-daemon-system', 'qemu-system-x86',
            'qemu-utils', 'libvirt-dev', 'pkg-config', 'mariadb-server')
DATABASES = ('nova_api', 'nova_cell0', 'nova_cell1', 'placement')

SETUP_TIMEOUT = 240   # seconds: compute registered in placement and cells
COMMAND_TIMEOUT = 180
COMPUTE_HOST = 'edge-compute-1'

# name: (password, project, roles), in Keystone next to
# tests.harness.keystone's.
SERVICE_USERS = {
    'nova': ('nova-lab-pw', 'service', ('admin', 'service')),
    'placement': ('placement-lab-pw', 'service', ('admin', 'service')),
}


def nova_python():
    """The interpreter of nova's virtualenv (tools/nova_env.py), or None."""
    python = os.environ.get(NOVA_PYTHON_ENV)
    return python if python and os.path.exists(python) else None


def unavailable_reason():
    """Why this machine cannot run the nova tier, or None. Only missing
    packages make it unavailable.
    """
    missing = ['%s (package %s)' % (b, package)
               for b, package in BINARIES.items() if not site.which(b)]
    if not os.path.exists(RABBITMQ_SERVER):
        missing.append('%s (package rabbitmq-server)' % RABBITMQ_SERVER)
    if nova_python() is None:
        missing.append("nova's virtualenv (%s, built by tools/nova_env.py "
                       'with tox -e functional or -e nova; needs libvirt-dev '
                       'and pkg-config)' % NOVA_PYTHON_ENV)
    return daemon.skip_reason('nova', missing, PACKAGES)


def _env_command(env, command):
    """*command* run through env(1) with *env* added: env execs, so the PID
    stays the daemon's.
    """
    return ['env'] + ['%s=%s' % item for item in env.items()] + command


def _http_ok(url):
    return requests.get(url, timeout=2).status_code < 500


class Epmd(site.Daemon):
    """Erlang's port mapper on a loopback port of its own (RabbitMQ would
    otherwise start a detached one on the machine's port 4369).
    """

    name = 'epmd'

    def __init__(self, root):
        super().__init__(root)
        self.port = daemon.free_port()

    def command(self):
        return [site.which('epmd'), '-port', str(self.port),
                '-address', HOST]

    def ready(self):
        return daemon.port_open(self.port)


class RabbitMQ(site.Daemon):
    """A private RabbitMQ node: its own name, AMQP and distribution ports,
    data, log and config directories, talking to *epmd*. Cost: about 8 s.
    """

    name = 'rabbitmq'

    def __init__(self, root, epmd):
        super().__init__(root)
        self.epmd = epmd
        self.port = daemon.free_port()
        self.dist_port = daemon.free_port()
        self.node = 'gsr%s@localhost' % secrets.token_hex(4)
        self.transport_url = 'rabbit://guest:guest@%s:%d/' % (HOST,
                                                              self.port)

    def _prepare(self):
        for sub in ('mnesia', 'log', 'home'):
            os.makedirs(os.path.join(self.root, sub), exist_ok=True)
        with open(os.path.join(self.root, 'rabbitmq.conf'), 'w') as f:
            f.write('listeners.tcp.default = %s:%d\n'
                    'loopback_users.guest = true\n' % (HOST, self.port))
        with open(os.path.join(self.root, 'enabled_plugins'), 'w') as f:
            f.write('[].\n')

    def command(self):
        env = {
            'HOME': os.path.join(self.root, 'home'),
            'RABBITMQ_NODENAME': self.node,
            'RABBITMQ_NODE_IP_ADDRESS': HOST,
            'RABBITMQ_NODE_PORT': str(self.port),
            'RABBITMQ_DIST_PORT': str(self.dist_port),
            'RABBITMQ_MNESIA_BASE': os.path.join(self.root, 'mnesia'),
            'RABBITMQ_LOG_BASE': os.path.join(self.root, 'log'),
            'RABBITMQ_CONFIG_FILE': os.path.join(self.root, 'rabbitmq.conf'),
            'RABBITMQ_ENABLED_PLUGINS_FILE': os.path.join(
                self.root, 'enabled_plugins'),
            'RABBITMQ_PID_FILE': os.path.join(self.root, 'rabbitmq.pid'),
            'RABBITMQ_CONF_ENV_FILE': os.path.join(self.root, 'none.env'),
            'ERL_EPMD_ADDRESS': HOST,
            'ERL_EPMD_PORT': str(self.epmd.port),
            'RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS': '-start_epmd false',
        }
        return _env_command(env, [RABBITMQ_SERVER])

    def ready(self):
        """An AMQP 0-9-1 handshake gets a Connection.Start method frame."""
        with socket.create_connection((HOST, self.port), timeout=2) as sock:
            sock.sendall(b'AMQP\x00\x00\x09\x01')
            return sock.recv(1) == b'\x01'


class Virtlogd(site.Daemon):
    """libvirt's log daemon (qemu's console output), in the foreground."""

    name = 'virtlogd'
    SOCKET = '/run/libvirt/virtlogd-sock'

    def command(self):
        return [site.which('virtlogd')]

    def ready(self):
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(2)
            return sock.connect_ex(self.SOCKET) == 0


class Libvirtd(site.Daemon):
    """libvirtd in the foreground, no TCP listener, its sockets in the lab
    (``uri``). Domains named *prefix*... are the lab's: destroy_domains()
    stops and undefines them, and only them.
    """

    name = 'libvirtd'

    def __init__(self, root, prefix):
        super().__init__(root)
        self.prefix = prefix
        self.sock_dir = os.path.join(self.root, 'run')
        self.uri = 'qemu:///system?socket=%s/libvirt-sock' % self.sock_dir
        self.config = os.path.join(self.root, 'libvirtd.conf')

    def _prepare(self):
        os.makedirs(self.sock_dir, exist_ok=True)
        with open(self.config, 'w') as f:
            f.write('unix_sock_dir = "%s"\nauth_unix_ro = "none"\n'
                    'auth_unix_rw = "none"\nlog_outputs = "3:stderr"\n'
                    % self.sock_dir)

    def command(self):
        # /dev/kvm is there but not usable by qemu's user (no udev: mode
        # 0600): libvirt then finds its cached qemu capabilities stale at
        # every lookup and probes qemu again, about a minute per boot. In
        # a mount namespace of its own, libvirtd sees an empty file there
        # (no KVM, consistently: TCG, as virt_type = qemu wants anyway) and
        # a qemu.conf of the lab's over the machine's, without per-domain
        # mount namespaces (they would try to move that bind mount into
        # the domain's /dev). unshare and sh exec: the PID stays
        # libvirtd's. Nothing outside this namespace changes.
        nokvm = os.path.join(self.root, 'no-kvm')
        open(nokvm, 'w').close()
        qemu_conf = os.path.join(self.root, 'qemu.conf')
        with open(qemu_conf, 'w') as f:
            f.write('namespaces = []\n')
        script = ('if [ -e /dev/kvm ]; then mount --bind "$0" /dev/kvm || '
                  'exit 1; fi; mount --bind "$1" /etc/libvirt/qemu.conf || '
                  'exit 1; shift; exec "$@"')
        return [site.which('unshare'), '--mount', '--propagation',
                'private', 'sh', '-c', script, nokvm, qemu_conf,
                site.which('libvirtd'), '-f', self.config]

    def virsh(self, *args, check=True):
        return subprocess.run([site.which('virsh'), '-c', self.uri] +
                              list(args), capture_output=True, text=True,
                              timeout=60, check=check,
                              stdin=subprocess.DEVNULL)

    def ready(self):
        return self.virsh('version', check=False).returncode == 0

    def domains(self):
        """Names of the lab's domains, running or not."""
        listed = self.virsh('list', '--all', '--name', check=False)
        return [name for name in listed.stdout.split()
                if name.startswith(self.prefix)]

    def destroy_domains(self):
        for name in self.domains():
            self.virsh('destroy', name, check=False)
            self.virsh('undefine', '--nvram', name, check=False)

    def stop(self, grace=site.STOP_GRACE):
        if self.running:
            try:
                self.destroy_domains()
            except Exception:
                pass
        super().stop(grace)
        # qemu's console logs of the lab's domains (libvirt keeps them).
        for name in glob.glob(os.path.join(QEMU_LOGS, self.prefix + '*')):
            try:
                os.remove(name)
            except OSError:
                pass


class PythonService(site.Daemon):
    """A command of nova's virtualenv (nova-conductor, ...)."""

    def __init__(self, root, name, argv, env=None, url=None, logs=()):
        self.name = name
        super().__init__(root)
        self.argv = argv
        self.env = env or {}
        self.url = url
        self.logs = tuple(logs)

    def log_files(self):
        return (self.out_file,) + self.logs

    def command(self):
        return _env_command(self.env, self.argv)

    def ready(self):
        # A WSGI service answers; the others report through nova's
        # service list (NovaLab waits on it).
        return _http_ok(self.url) if self.url else True


class _NeutronHandler(http.server.BaseHTTPRequestHandler):
    """Answers every list with an empty one and every delete with 204;
    records what nova asked.
    """

    protocol_version = 'HTTP/1.1'

    def _answer(self, status, body=None):
        data = json.dumps(body).encode() if body is not None else b''
        self.send_response(status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        if data:
            self.wfile.write(data)

    def _collection(self):
        path = self.path.split('?')[0].rstrip('/')
        name = path.rsplit('/', 1)[-1]
        if name.endswith('.json'):
            name = name[:-5]
        return name.replace('-', '_')

    def do_GET(self):
        self.server.asked.append(('GET', self.path))
        path = self.path.split('?')[0].rstrip('/')
        if path in ('', '/'):
            return self._answer(200, {'versions': [
                {'id': 'v2.0', 'status': 'CURRENT', 'links': []}]})
        return self._answer(200, {self._collection(): []})

    def do_DELETE(self):
        self.server.asked.append(('DELETE', self.path))
        self._answer(204)

    def do_POST(self):
        self.server.asked.append(('POST', self.path))
        length = int(self.headers.get('Content-Length') or 0)
        self.rfile.read(length)
        self._answer(404, {'NeutronError': {
            'type': 'NotFound', 'message': 'neutron stand-in: no networks',
            'detail': ''}})

    do_PUT = do_POST

    def log_message(self, *args):
        pass


class NeutronStandIn(web_server.LoopbackServer):
    """A loopback STAND-IN for neutron (not neutron-server): empty lists for
    the ports, security groups, networks and extensions nova asks for with
    ``networks='none'``. ``asked`` keeps (method, path) of every request.
    """

    name = 'neutron-stand-in'

    @property
    def asked(self):
        return self._server.asked if self._server else []

    def handler(self):
        return _NeutronHandler

    def start(self):
        super().start()
        self._server.asked = []
        return self


def _wait_ready(part, timeout=site.READY_TIMEOUT, relaunch=False):
    """The second half of site.Daemon.start() for a launched *part*: wait
    until it serves; stop it on failure.

    :param relaunch: launch it once more if it exited (seen once: a
        nova-conductor exiting 1 at start on a loaded machine); the first
        exit's log tail goes to stderr
    """
    try:
        try:
            part.wait_ready(timeout)
        except site.SiteError as e:
            if not relaunch or part.running:
                raise
            print('%s exited at start; launching it again. %s' % (
                part.name, e), file=sys.stderr)
            part.stop()
            part.launch()
            part.wait_ready(timeout)
    except BaseException:
        part.stop()
        raise


class _Group:
    """Stops its members in the given order (for LabBase._parts)."""

    def __init__(self, *members):
        self.members = members

    def stop(self):
        for member in self.members:
            if member is not None:
                try:
                    member.stop()
                except Exception:
                    pass


class NovaLab(keystone.KeystoneLab):
    """The Keystone tier's central and edge plus a nova edge compute site
    (see the module docstring). After start(): ``nova_url``, ``compute()``
    (a keystoneauth1 adapter to nova as a user), ``sdk()``,
    ``instances_path``, ``base_dir`` (nova's image cache), ``setup_time``.
    """

    def __init__(self, cache_max_size=1024 ** 3):
        super().__init__(cache_max_size=cache_max_size)
        self.python = nova_python()
        self.bin = os.path.dirname(self.python) if self.python else None
        self.neutron = self.epmd = self.rabbit = self.mariadb = None
        self.virtlogd = self.libvirtd = None
        self.placement = self.nova_api = None
        self.services = {}
        self.setup_time = None

    def _parts(self):
        services = self.services
        return (_Group(services.get('nova-compute'),
                       services.get('nova-scheduler'),
                       services.get('nova-conductor'),
                       self.nova_api, self.placement),
                _Group(self.rabbit, self.epmd, self.mariadb),
                _Group(self.libvirtd, self.virtlogd, self.neutron),
                ) + super()._parts()

    @property
    def nova_root(self):
        return os.path.join(self.root, 'nova')

    @property
    def instances_path(self):
        return os.path.join(self.nova_root, 'instances')

    @property
    def base_dir(self):
        """nova's image cache on the compute (``_base``)."""
        return os.path.join(self.instances_path, '_base')

    def _start(self):
        began = time.monotonic()
        if self.python is None:
            raise RuntimeError(unavailable_reason())
        super()._start()
        # qemu runs as libvirt-qemu: it must traverse to its disks.
        os.chmod(self.root, 0o711)
        os.makedirs(self.instances_path)
        os.chmod(self.nova_root, 0o711)
        os.chmod(self.instances_path, 0o711)
        self.prefix = 'gsr-%s-' % os.path.basename(self.root)[-6:].replace(
            '_', 'x')
        self.neutron = NeutronStandIn().start()
        self.placement_port = daemon.free_port()
        self.nova_port = daemon.free_port()
        self.placement_url = 'http://%s:%d' % (HOST, self.placement_port)
        self.nova_url = 'http://%s:%d/v2.1' % (HOST, self.nova_port)
        self._provision_nova()
        # The slow daemons start side by side, launched from this thread:
        # PR_SET_PDEATHSIG fires when the launching THREAD ends.
        self.epmd = Epmd(os.path.join(self.root, 'epmd'))
        self.epmd.start()
        self.rabbit = RabbitMQ(os.path.join(self.root, 'rabbitmq'),
                               self.epmd)
        self.virtlogd = Virtlogd(os.path.join(self.root, 'virtlogd'))
        self.libvirtd = Libvirtd(os.path.join(self.root, 'libvirtd'),
                                 self.prefix)
        # MariaDB, not sqlite: under load, nova's conductor, API and
        # scheduler writing one sqlite file fail with "database is locked".
        self.mariadb = site.MariaDB(os.path.join(self.root, 'mariadb'),
                                    database='nova_api', user='nova')
        for part in (self.rabbit, self.virtlogd, self.mariadb):
            part.launch()
        _wait_ready(self.mariadb)
        for database in DATABASES[1:]:
            self.mariadb.query('CREATE DATABASE IF NOT EXISTS `%s`' %
                               database)
            for host in (HOST, 'localhost'):
                self.mariadb.query("GRANT ALL ON `%s`.* TO 'nova'@'%s'" % (
                    database, host))
        self._write_configs()
        self._db_setup()
        for part in (self.rabbit, self.virtlogd):
            _wait_ready(part)
        self.libvirtd.start()
        self._start_services()
        self._wait_compute()
        self.setup_time = time.monotonic() - began

    # -- configuration ---------------------------------------------------

    def _provision_nova(self):
        admin = self.keystone.admin()
        domain = admin.domains.find(name=keystone.DOMAIN)
        self.create_users(admin, domain, SERVICE_USERS)
        for kind, name, url in (('compute', 'nova', self.nova_url),
                                ('placement', 'placement',
                                 self.placement_url),
                                ('network', 'neutron', self.neutron.url)):
            service = admin.services.create(name, type=kind)
            for interface in ('public', 'internal'):
                admin.endpoints.create(service, url, interface=interface,
                                       region='RegionTwo')

    def _auth(self, user, **extra):
        password, project, _ = SERVICE_USERS[user]
        return dict({
            'auth_type': 'password', 'auth_url': self.keystone.url,
            'username': user, 'password': password, 'project_name': project,
            'user_domain_name': keystone.DOMAIN,
            'project_domain_name': keystone.DOMAIN,
            'region_name': 'RegionTwo'}, **extra)

    def _authtoken(self, user):
        return dict(self._auth(user), www_authenticate_uri=self.keystone.url,
                    region_name='RegionOne', service_token_roles_required=True)

    def glance_options(self):
        """Nova's ``[glance]`` at an edge compute: the EDGE Glance."""
        return {'endpoint_override': self.edge.url, 'num_retries': 0,
                'region_name': 'RegionTwo'}

    def _db(self, name):
        return self.mariadb.url.replace('/nova_api?', '/%s?' % name)

    def _write_configs(self):
        root = self.nova_root
        self.nova_conf = os.path.join(root, 'nova.conf')
        privsep = '%s --config-file %s' % (
            os.path.join(self.bin, 'privsep-helper'), self.nova_conf)
        sections = {
            'DEFAULT': {
                'host': COMPUTE_HOST, 'my_ip': HOST,
                'state_path': os.path.join(root, 'state'),
                'instances_path': self.instances_path,
                'instance_name_template': self.prefix + '%08x',
                'transport_url': self.rabbit.transport_url,
                'compute_driver': 'libvirt.LibvirtDriver',
                'log_dir': os.path.join(root, 'log'),
                'debug': True,
                'use_rootwrap_daemon': False,
                'heal_instance_info_cache_interval': -1,
                'osapi_compute_workers': 1, 'metadata_workers': 1,
                'instance_build_timeout': 120,
                # Periodic tasks (host discovery) from the start, and a
                # quick stop.
                'periodic_fuzzy_delay': 0,
                'graceful_shutdown_timeout': 2,
            },
            'api_database': {'connection': self._db('nova_api')},
            'database': {'connection': self._db('nova_cell1')},
            'api': {'auth_strategy': 'keystone'},
            'keystone_authtoken': self._authtoken('nova'),
            'placement': self._auth('nova'),
            'neutron': self._auth('nova',
                                  endpoint_override=self.neutron.url),
            'glance': self.glance_options(),
            'service_user': dict(self._auth('nova'),
                                 send_service_user_token=False),
            'libvirt': {'virt_type': 'qemu', 'cpu_mode': 'none',
                        'connection_uri': self.libvirtd.uri},
            'conductor': {'workers': 1},
            # max_attempts = 1: a build that fails is not rescheduled, so
            # the server's fault is the compute's error (with the default
            # 3 and one compute, it is "Exceeded maximum number of
            # retries..."); see doc/source/admin/nova-edge.rst.
            'scheduler': {'workers': 1, 'max_attempts': 1,
                          'discover_hosts_in_cells_interval': 2},
            'oslo_concurrency': {'lock_path': os.path.join(root, 'locks')},
            'oslo_messaging_rabbit': {'heartbeat_timeout_threshold': 0},
            'vnc': {'enabled': False},
            'spice': {'enabled': False},
            'serial_console': {'enabled': False},
            'nova_sys_admin': {'helper_command': privsep},
            'compute': {'consecutive_build_service_disable_threshold': 0},
            'wsgi': {'api_paste_config': os.path.join(root,
                                                      'api-paste.ini')},
        }
        for sub in ('state', 'log', 'locks'):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        with open(self.nova_conf, 'w') as f:
            f.write(lab_module._ini(sections))
        etc = os.path.join(os.path.dirname(self.bin), 'etc', 'nova')
        shutil.copyfile(os.path.join(etc, 'api-paste.ini'),
                        os.path.join(root, 'api-paste.ini'))
        placement_root = os.path.join(self.root, 'placement')
        os.makedirs(placement_root)
        with open(os.path.join(placement_root, 'placement.conf'), 'w') as f:
            f.write(lab_module._ini({
                'DEFAULT': {'log_file': os.path.join(placement_root,
                                                     'placement.log'),
                            'debug': True},
                'placement_database': {'connection': self._db('placement')},
                'api': {'auth_strategy': 'keystone'},
                'keystone_authtoken': self._authtoken('placement'),
            }))
        self.placement_root = placement_root

    def _run(self, *argv):
        result = subprocess.run(
            [os.path.join(self.bin, argv[0])] + list(argv[1:]),
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT,
            stdin=subprocess.DEVNULL, cwd=self.nova_root)
        if result.returncode:
            raise site.SiteError('%s failed (%s): %s' % (
                ' '.join(argv[:3]), result.returncode,
                (result.stdout + result.stderr)[-3000:]))
        return result.stdout

    def _db_setup(self):
        """The databases, in three chains side by side (each command is
        about 2 s of imports). The last ``db sync`` migrates cell0 (cell1
        is already done: a no-op there).
        """
        conf = ('--config-file', self.nova_conf)
        failures = []

        def run(*commands):
            try:
                for command in commands:
                    self._run(*command)
            except Exception as e:
                failures.append(e)

        chains = (
            [('placement-manage', '--config-file',
              os.path.join(self.placement_root, 'placement.conf'), 'db',
              'sync')],
            [('nova-manage', *conf, 'db', 'sync', '--local_cell')],
            [('nova-manage', *conf, 'api_db', 'sync'),
             ('nova-manage', *conf, 'cell_v2', 'map_cell0',
              '--database_connection', self._db('nova_cell0')),
             ('nova-manage', *conf, 'cell_v2', 'create_cell', '--name',
              'cell1'),
             ('nova-manage', *conf, 'db', 'sync')])
        threads = [threading.Thread(target=run, args=chain)
                   for chain in chains]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]

    # -- services --------------------------------------------------------

    def _gunicorn(self, name, port, app, env):
        return PythonService(
            os.path.join(self.root, name), name,
            [self.python, '-m', 'gunicorn', '--bind', '%s:%d' % (HOST, port),
             '--workers', '1', '--worker-class', 'gthread', '--threads',
             '8', '--timeout', '300', '--graceful-timeout', '3',
             '--no-control-socket', app],
            env=dict(env, PYTHONPATH=lab_module.PROJECT_ROOT),
            url='http://%s:%d/' % (HOST, port))

    def _start_services(self):
        self.placement = self._gunicorn(
            'placement', self.placement_port,
            'tests.harness.nova_wsgi:placement',
            {'OS_PLACEMENT_CONFIG_DIR': self.placement_root})
        self.nova_api = self._gunicorn(
            'nova-api', self.nova_port, 'tests.harness.nova_wsgi:compute',
            {'OS_NOVA_CONFIG_DIR': self.nova_root})
        for name in ('nova-conductor', 'nova-scheduler', 'nova-compute'):
            self.services[name] = PythonService(
                os.path.join(self.root, name), name,
                [os.path.join(self.bin, name), '--config-file',
                 self.nova_conf],
                logs=[os.path.join(self.nova_root, 'log', name + '.log')])
        # nova-compute waits 10 s for a conductor that does not answer yet:
        # it starts once the conductor is up.
        compute = self.services.pop('nova-compute')
        daemons = (self.placement, self.nova_api, *self.services.values())
        for part in daemons:
            part.launch()
        for part in daemons:
            _wait_ready(part, SETUP_TIMEOUT, relaunch=True)
        self._wait_service('nova-conductor')
        self.services['nova-compute'] = compute
        compute.launch()

    def _wait_service(self, binary):
        adapter = self.compute('operator')
        deadline = time.monotonic() + SETUP_TIMEOUT
        while True:
            try:
                services = adapter.get('/os-services', raise_exc=False,
                                       params={'binary': binary}).json()
                if any(s['state'] == 'up' for s in services['services']):
                    return
            except (requests.RequestException, ValueError, KeyError):
                pass
            if time.monotonic() > deadline:
                raise site.SiteError('%s not up in %ss:\n%s' % (
                    binary, SETUP_TIMEOUT, self.service_log(binary, 30)))
            time.sleep(0.5)

    def _wait_compute(self):
        """Until the compute is a hypervisor in the cell, with its
        inventory in placement (the scheduler discovers hosts every 2 s).
        """
        adapter = self.compute('operator')
        deadline = time.monotonic() + SETUP_TIMEOUT
        while True:
            for part in self.services.values():
                if not part.running:
                    raise site.SiteError('%s exited:\n%s' % (
                        part.name, self.service_log(part.name, 30)))
            try:
                hypervisors = adapter.get(
                    '/os-hypervisors/detail', raise_exc=False,
                    microversion='2.88').json().get('hypervisors', [])
                if hypervisors and hypervisors[0].get('state') == 'up':
                    return
            except (requests.RequestException, ValueError):
                pass
            if time.monotonic() > deadline:
                raise site.SiteError(
                    'the compute did not register in %ss:\n%s' % (
                        SETUP_TIMEOUT, self.service_log('nova-compute', 40)))
            time.sleep(1)

    # -- clients and logs --------------------------------------------------

    def compute(self, user):
        """A keystoneauth1 adapter to nova as *user* (a user
        tests.harness.keystone made).
        """
        from keystoneauth1 import adapter
        return adapter.Adapter(self.session(user), service_type='compute',
                               endpoint_override=self.nova_url)

    def sdk(self, user):
        """An openstacksdk connection to nova as *user*."""
        import openstack
        return openstack.connection.Connection(
            session=self.session(user), compute_endpoint_override=(
                self.nova_url), compute_api_version='2.95')

    def service_log(self, name, lines=None):
        """Text of a nova service's log (nova's log_dir) and output."""
        text = []
        for path in (os.path.join(self.nova_root, 'log', name + '.log'),
                     os.path.join(self.root, name, name + '.out')):
            try:
                with open(path, errors='replace') as f:
                    text.append(f.read())
            except FileNotFoundError:
                pass
        text = ''.join(text)
        if lines:
            text = '\n'.join(text.splitlines()[-lines:])
        return text
