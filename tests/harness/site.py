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

"""The parts of a multi-node ("HA") edge site on loopback, for the
functional tests: a private MariaDB server, an haproxy in front of several
edge glance-api nodes, an etcd for site coordination, and ``EdgeSiteLab``,
which puts them together with the lab's usual central.

Each daemon is Debian's own binary (doc/source/contributor/lab.rst), run
as tests.harness.daemon runs every part of the lab: in the foreground as a
child of the test process that leads a process group of its own and gets
SIGTERM if the thread that started it dies (PR_SET_PDEATHSIG). stop()
signals that group by PID (SIGTERM, then SIGKILL after a short grace) and
reaps it; every part still running at interpreter exit is stopped. Nothing
is killed by name. Every file a part writes (datadir, config, sockets,
logs) stays in the directory its caller gives; EdgeSiteLab's is the lab's
temporary directory, removed at stop() also after a failed start().

The MariaDB password is generated per server; it is written only to the
server (through the root socket) and to the Glance configs that need it,
never to a log: ``MariaDB.url`` holds it, ``repr()`` and errors do not.
"""

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time

import requests

from tests.harness import daemon
from tests.harness import lab as lab_module

HOST = lab_module.HOST
# Debian package of each binary the site needs, as .ci/run installs them.
BINARIES = {'mariadbd': 'mariadb-server',
            'mariadb-install-db': 'mariadb-server',
            'haproxy': 'haproxy', 'etcd': 'etcd-server'}
PACKAGES = ('mariadb-server', 'haproxy', 'etcd-server')
# Binaries outside root's usual PATH on some images.
SBIN = ('/usr/sbin', '/sbin', '/usr/local/sbin')

READY_TIMEOUT = 60    # seconds for a daemon to answer after launch
STOP_GRACE = daemon.STOP_GRACE
COMMAND_TIMEOUT = 120


class SiteError(RuntimeError):
    """A part of the site failed to start or to answer."""


def which(binary):
    return shutil.which(binary) or shutil.which(
        binary, path=os.pathsep.join(SBIN))


def unavailable_reason(binaries=tuple(BINARIES), python=sys.executable):
    """Why this machine cannot run the edge-site tier, or None.

    Only missing packages make it unavailable: each missing binary is
    named with its Debian package, and PyMySQL with the virtualenv it is
    missing from.
    """
    missing = ['%s (package %s)' % (b, BINARIES[b]) for b in binaries
               if not which(b)]
    checked = subprocess.run([python, '-c', 'import pymysql'],
                             capture_output=True, cwd='/')
    if checked.returncode:
        missing.append('the Python module pymysql in %s (PyPI PyMySQL, '
                       'test-requirements.txt)' % python)
    return daemon.skip_reason('edge site', missing, PACKAGES)


class Daemon:
    """One foreground daemon living in directory *root*, its output in
    ``<root>/<name>.out``. Subclasses give command() and ready().
    """

    name = 'daemon'

    def __init__(self, root):
        self.root = os.path.abspath(root)
        os.makedirs(self.root, exist_ok=True)
        self.proc = None
        self.out_file = os.path.join(self.root, self.name + '.out')

    def command(self):
        raise NotImplementedError

    def ready(self):
        """True once the daemon serves."""
        raise NotImplementedError

    def start(self, timeout=READY_TIMEOUT):
        """Launch the daemon and wait until it is ready; on failure stop
        it and raise SiteError with its output's tail. Returns self.
        """
        self.launch()
        with daemon.starting(self):
            self.wait_ready(timeout)
        return self

    def launch(self):
        """Start the daemon without waiting (see wait_ready()); stop it
        if that fails.
        """
        with daemon.starting(self):
            self._prepare()
            self.proc = daemon.spawn(self.command(), self.out_file,
                                     self.root)

    def wait_ready(self, timeout=READY_TIMEOUT):
        """Wait until the launched daemon is ready; raise SiteError with
        its output's tail when it exits or the time is up.
        """
        daemon.wait_until(self.ready, timeout, {self.name: self.proc},
                          'an answer from ' + self.name, self.log_tail,
                          error=SiteError)

    def _prepare(self):
        """Work before the first launch (one-off setup)."""

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc is not None else None

    def signal(self, signum):
        """Send *signum* to the daemon's process group."""
        daemon.signal_group(self.proc, signum)

    def stop(self, grace=STOP_GRACE):
        """SIGTERM the daemon's process group, SIGKILL after *grace*
        seconds, reap it. Safe to call twice; files stay.
        """
        daemon.stop(self.proc, grace)
        self.proc = None
        daemon.forget(self)

    def kill(self):
        """SIGKILL the process group at once (a crash), and reap it."""
        daemon.kill(self.proc)
        self.proc = None
        daemon.forget(self)

    def log_files(self):
        return (self.out_file,)

    def log_text(self):
        text = []
        for path in self.log_files():
            try:
                with open(path, errors='replace') as f:
                    text.append(f.read())
            except FileNotFoundError:
                pass
        return ''.join(text)

    def log_tail(self, lines=30):
        return '\n'.join(self.log_text().splitlines()[-lines:]) or \
            '(no output in %s)' % self.root

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class MariaDB(Daemon):
    """A private MariaDB server: its own datadir, unix socket and loopback
    port, a database and a password user for Glance.

    :param root: its directory (datadir, socket, logs); the caller removes
        it after stop()
    :param database: the database made for Glance
    :param user: the user that owns *database*, with a random password

    After start(): ``url`` (SQLAlchemy, with the password: for configs
    only), ``port``, ``socket``, ``query()``. A restart (stop(), start())
    keeps the data, the port and the password. Cost: about 3 s and 100 MB.
    """

    name = 'mariadbd'

    def __init__(self, root, database='glance', user='glance'):
        super().__init__(root)
        self.database = database
        self.user = user
        self._password = secrets.token_hex(16)
        self.port = daemon.free_port()
        self.datadir = os.path.join(self.root, 'data')
        self.socket = os.path.join(self.root, 'mysqld.sock')
        self.error_log = os.path.join(self.root, 'error.log')
        self._installed = False

    def __repr__(self):
        return '<MariaDB %s@%s:%d/%s>' % (self.user, HOST, self.port,
                                          self.database)

    @property
    def url(self):
        """Glance's ``[database] connection`` (holds the password)."""
        return 'mysql+pymysql://%s:%s@%s:%d/%s?charset=utf8mb4' % (
            self.user, self._password, HOST, self.port, self.database)

    @property
    def password(self):
        """For tests that prove it never leaks."""
        return self._password

    def _prepare(self):
        if self._installed:
            return
        os.makedirs(self.datadir, exist_ok=True)
        result = subprocess.run(
            [which('mariadb-install-db'), '--no-defaults',
             '--datadir=' + self.datadir, '--user=root',
             '--auth-root-authentication-method=normal', '--skip-test-db',
             '--skip-name-resolve'],
            capture_output=True, text=True, cwd=self.root,
            timeout=COMMAND_TIMEOUT, stdin=subprocess.DEVNULL)
        if result.returncode:
            raise SiteError('mariadb-install-db failed (%s): %s%s' % (
                result.returncode, result.stdout[-2000:],
                result.stderr[-2000:]))
        self._installed = 'setup'

    def command(self):
        return [which('mariadbd'), '--no-defaults',
                '--datadir=' + self.datadir, '--socket=' + self.socket,
                '--port=%d' % self.port, '--bind-address=' + HOST,
                '--user=root',
                '--pid-file=' + os.path.join(self.root, 'mysqld.pid'),
                '--log-error=' + self.error_log, '--skip-name-resolve',
                '--max-connections=500', '--character-set-server=utf8mb4',
                '--collation-server=utf8mb4_general_ci',
                # A lab's data: durability traded for speed.
                '--innodb-flush-log-at-trx-commit=2',
                '--innodb-buffer-pool-size=64M']

    def ready(self):
        if not os.path.exists(self.socket):
            return False
        self.query('SELECT 1')
        if self._installed == 'setup':
            self.query('CREATE DATABASE IF NOT EXISTS `%s` CHARACTER SET '
                       'utf8mb4' % self.database)
            # The password goes to the server only, as a bound parameter.
            for host in (HOST, 'localhost'):
                self.query("CREATE USER IF NOT EXISTS '%s'@'%s' IDENTIFIED "
                           "BY %%s" % (self.user, host),
                           (self._password,))
                self.query("GRANT ALL ON `%s`.* TO '%s'@'%s'" % (
                    self.database, self.user, host))
            self._installed = True
        return True

    def connect(self, database=None):
        """A PyMySQL connection as root through the unix socket."""
        import pymysql
        return pymysql.connect(unix_socket=self.socket, user='root',
                               database=database, autocommit=True,
                               connect_timeout=5, read_timeout=60,
                               write_timeout=60)

    def query(self, sql, args=None, database=None):
        """Run one statement as root; returns its rows (tuples)."""
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, args)
                return cursor.fetchall()
        finally:
            connection.close()

    def log_files(self):
        return (self.out_file, self.error_log)


class Etcd(Daemon):
    """A single-member etcd (v3 API) on two loopback ports.

    :param tls: serve clients over https and accept only clients with a
        certificate of the lab's CA (``--client-cert-auth``): ``tls``
        then holds (ca_file, cert_file, key_file), the certificate being
        both the server's and the nodes' client certificate

    After start(): ``url`` (the client URL) and ``tooz_url`` (tooz's etcd3gw
    driver, with the TLS options when *tls*). Cost: about 1 s and 30 MB.
    """

    name = 'etcd'

    def __init__(self, root, tls=False):
        super().__init__(root)
        self.port = daemon.free_port()
        self.peer_port = daemon.free_port()
        self.tls = None
        if tls:
            folder = os.path.join(self.root, 'tls')
            os.makedirs(folder, exist_ok=True)
            self.tls = lab_module.make_tls(folder)[:3]
        self.url = '%s://%s:%d' % ('https' if tls else 'http', HOST,
                                   self.port)
        self.tooz_url = 'etcd3+' + self.url
        if tls:
            ca_file, cert_file, key_file = self.tls
            self.tooz_url += '?ca_cert=%s&cert_cert=%s&cert_key=%s' % (
                ca_file, cert_file, key_file)

    def command(self):
        peer = 'http://%s:%d' % (HOST, self.peer_port)
        command = [which('etcd'), '--name', 'site',
                   '--data-dir', os.path.join(self.root, 'data'),
                   '--listen-client-urls', self.url,
                   '--advertise-client-urls', self.url,
                   '--listen-peer-urls', peer,
                   '--initial-advertise-peer-urls', peer,
                   '--initial-cluster', 'site=' + peer]
        if self.tls:
            ca_file, cert_file, key_file = self.tls
            command += ['--cert-file', cert_file, '--key-file', key_file,
                        '--client-cert-auth', '--trusted-ca-file', ca_file]
        return command

    def ready(self):
        kwargs = {}
        if self.tls:
            ca_file, cert_file, key_file = self.tls
            kwargs = {'verify': ca_file, 'cert': (cert_file, key_file)}
        response = requests.get(self.url + '/health', timeout=2, **kwargs)
        return response.status_code == 200 and \
            response.json().get('health') == 'true'


class HAProxy(Daemon):
    """haproxy in the foreground (``-db``) balancing HTTP over *servers*
    (each with ``name`` and ``port``, e.g. GlanceServer), round robin,
    with an HTTP health check of each on *health_path* every second. It
    adds ``X-Forwarded-For`` to what it forwards (``option forwardfor``,
    as a balancer in front of Glance does); with *deny_peer_path* it also
    refuses ``/remote-glance/peer/`` itself, as ha-site.rst advises.

    Also usable as a client target like a GlanceServer: ``url``,
    ``session()``, ``glance()``, ``clouds_yaml()``.
    After start(): ``server_states()`` from its stats socket.
    """

    name = 'haproxy'
    verify = True

    def __init__(self, root, servers, health_path='/healthcheck',
                 timeout=600, deny_peer_path=False):
        super().__init__(root)
        self.servers = list(servers)
        self.deny_peer_path = deny_peer_path
        self.health_path = health_path
        self.timeout = timeout
        self.port = daemon.free_port()
        self.url = 'http://%s:%d' % (HOST, self.port)
        self.config_file = os.path.join(self.root, 'haproxy.cfg')
        self.stats_socket = os.path.join(self.root, 'stats.sock')

    session = lab_module.GlanceServer.session
    glance = lab_module.GlanceServer.glance
    clouds_yaml = lab_module.GlanceServer.clouds_yaml

    def _prepare(self):
        lines = [
            'global',
            '    maxconn 2000',
            '    stats socket %s mode 600 level admin' % self.stats_socket,
            'defaults',
            '    mode http',
            '    retries 2',
            '    option redispatch',
            '    timeout connect 5s',
            '    timeout client %ds' % self.timeout,
            '    timeout server %ds' % self.timeout,
            '    timeout check 2s',
            '    option forwardfor',
            'frontend site',
            '    bind %s:%d' % (HOST, self.port),
        ] + ([
            '    http-request deny deny_status 403 if '
            '{ path_beg /remote-glance/peer/ }',
        ] if self.deny_peer_path else []) + [
            '    default_backend glance',
            'backend glance',
            '    balance roundrobin',
            '    option httpchk GET %s' % self.health_path,
            '    http-check expect status 200',
        ] + ['    server %s %s:%d check inter 1s fall 2 rise 1' % (
            server.name, HOST, server.port) for server in self.servers]
        with open(self.config_file, 'w') as f:
            f.write('\n'.join(lines) + '\n')
        checked = subprocess.run(
            [which('haproxy'), '-c', '-q', '-f', self.config_file],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        if checked.returncode:
            raise SiteError('haproxy refuses its config: %s%s'
                            % (checked.stdout, checked.stderr))

    def command(self):
        return [which('haproxy'), '-db', '-f', self.config_file]

    def ready(self):
        return daemon.port_open(self.port) and all(
            state == 'UP' for state in self.server_states().values())

    def server_states(self):
        """{server name: 'UP', 'DOWN', ...} as haproxy's checks see them."""
        with socket.socket(socket.AF_UNIX) as sock:
            sock.settimeout(5)
            sock.connect(self.stats_socket)
            sock.sendall(b'show stat\n')
            data = b''
            while True:
                piece = sock.recv(65536)
                if not piece:
                    break
                data += piece
        lines = data.decode().splitlines()
        header = lines[0].lstrip('# ').split(',')
        states = {}
        for line in lines[1:]:
            row = dict(zip(header, line.split(',')))
            if row.get('pxname') == 'glance' and row.get('svname') not in (
                    'FRONTEND', 'BACKEND'):
                states[row['svname']] = row['status'].split()[0]
        return states

    def wait_states(self, wanted, timeout=READY_TIMEOUT):
        """Wait until each server named in *wanted* ({name: state}) has
        that state; raise SiteError after *timeout* seconds.
        """
        deadline = time.monotonic() + timeout
        while True:
            states = self.server_states()
            if all(states.get(n) == s for n, s in wanted.items()):
                return states
            if time.monotonic() > deadline:
                raise SiteError('haproxy servers %s, wanted %s' % (states,
                                                                   wanted))
            time.sleep(0.2)


class SiteFront(HAProxy):
    """The site's balancer as the functional tests' ``lab.edge``: a client
    target, whose logs are every node's.
    """

    def __init__(self, root, nodes, **kw):
        super().__init__(root, nodes, **kw)
        self.nodes = nodes

    def log_text(self):
        return ''.join(node.log_text() for node in self.nodes)

    def log_tail(self, lines=30):
        return '\n'.join('--- %s\n%s' % (node.name, node.log_tail(lines))
                         for node in self.nodes)


class EdgeSiteLab(lab_module.LabBase):
    """One central (the lab's usual, on its file store) and an edge site:
    *nodes* edge glance-api servers sharing one MariaDB database, each with
    its own remote-glance cache and ``worker_self_reference_url``, behind
    haproxy. Use as a context manager.

    ``lab.edge`` is the balancer (clients reach the site there);
    ``lab.nodes`` the edge servers (``edge-1``...), ``lab.db`` the MariaDB,
    ``lab.balancer`` the haproxy (the same object as ``lab.edge``).

    :param nodes: edge servers
    :param cache_max_size: each node's cache cap, in bytes
    :param on_demand: enable remote_glance_import_on_demand: True for
        every node, or the names of the nodes that import on demand
    :param edge_flavor: the nodes' paste flavor (as Lab's)
    :param edge_options: ``{section: {key: value}}`` for every node
    :param node_workers: gunicorn workers of each node
    :param coordination: coordinate the site's fills through an etcd of
        the lab's (``lab.etcd``): every node gets
        remote_glance_coordination_url, a shared remote_glance_peer_secret
        (``lab.peer_secret``) and the ``remote-glance-peer`` filter before
        versionnegotiation in its pipelines
    :param peer_urls: ``{node name: URL}`` a node advertises to its peers
        instead of its own (a proxy of the test's)
    Cost: about 15 s to start (MariaDB, Glance's migrations on it, five
    Glance servers) and about 700 MB; etcd adds about 1 s.
    """

    # Threads of each node's worker (a class attribute: set it on the lab
    # before start(), as the benchmark does for 24 concurrent boots).
    node_threads = 8

    def __init__(self, nodes=3, cache_max_size=1024 ** 3, on_demand=False,
                 edge_flavor='headerauth', edge_options=None,
                 node_workers=1, coordination=False, peer_urls=None):
        self.node_count = nodes
        self.cache_max_size = cache_max_size
        self.on_demand = on_demand
        self.edge_flavor = edge_flavor
        self.edge_options = edge_options
        self.node_workers = node_workers
        self.coordination = coordination
        self.peer_urls = dict(peer_urls or {})
        self.peer_secret = secrets.token_hex(24) if coordination else None
        self.central = self.db = self.balancer = self.etcd = None
        self.nodes = []

    @property
    def edge(self):
        return self.balancer

    def _parts(self):
        return [self.balancer] + list(self.nodes) + [self.central, self.db,
                                                     self.etcd]

    def cache_dir(self, index):
        return os.path.join(self.root, 'cache-%d' % index)

    def caches(self):
        return tuple((self.cache_dir(i), 'central')
                     for i in range(len(self.nodes)))

    def node(self, name):
        return [n for n in self.nodes if n.name == name][0]

    def _site_options(self, name):
        """The backend options of node *name* for site coordination."""
        if not self.coordination:
            return {}
        options = {'remote_glance_coordination_url': self.etcd.tooz_url,
                   'remote_glance_peer_secret': self.peer_secret}
        if name in self.peer_urls:
            options['remote_glance_peer_url'] = self.peer_urls[name]
        return options

    @staticmethod
    def _add_peer_filter(node):
        """Put ``remote-glance-peer`` before versionnegotiation (which
        would answer a path it does not know with 300) in every pipeline
        of the node's paste file.
        """
        path = os.path.join(node.root, 'glance-api-paste.ini')
        with open(path) as f:
            text = f.read()
        text = text.replace(' versionnegotiation ',
                            ' remote-glance-peer versionnegotiation ')
        text += ('\n[filter:remote-glance-peer]\npaste.filter_factory = '
                 'glance_store_remote.peers:filter_factory\n')
        with open(path, 'w') as f:
            f.write(text)

    def _start(self):
        if self.coordination:
            self.etcd = Etcd(os.path.join(self.root, 'etcd')).start()
        self.db = MariaDB(os.path.join(self.root, 'mariadb')).start()
        self.central = lab_module.GlanceServer(
            'central', os.path.join(self.root, 'central'),
            policy=lab_module.ADMIN_EVERYONE)
        for index in range(self.node_count):
            name = 'edge-%d' % (index + 1)
            self.nodes.append(lab_module.edge_server(
                name, os.path.join(self.root, name), self.central.url,
                flavor=self.edge_flavor, workers=self.node_workers,
                threads=self.node_threads,
                backend_options=dict(lab_module.cache_options(
                    self.cache_dir(index), self.cache_max_size,
                    self.on_demand is True or name in (self.on_demand or ())),
                    **self._site_options(name)),
                options=lab_module._merge(
                    {'database': {'connection': self.db.url}},
                    self.edge_options)))
            if self.coordination:
                self._add_peer_filter(self.nodes[-1])
        # One db_sync for the site's database (a second would be a no-op).
        lab_module.db_sync(self.central)
        lab_module.db_sync(self.nodes[0])
        for server in [self.central] + self.nodes:
            server.launch()
        for server in [self.central] + self.nodes:
            server.wait_ready()
        self.balancer = SiteFront(os.path.join(self.root, 'haproxy'),
                                  self.nodes).start()

    def edge_query(self, sql, args=None):
        """Rows of *sql* run on the site's Glance database."""
        return self.db.query(sql, args, database=self.db.database)
