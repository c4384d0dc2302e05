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

"""A loopback lab of real Glance API servers: one central, one edge (or,
with ChainLab, a far edge reading an edge that reads central).

Both are the ``glance`` package from PyPI served by gunicorn (or, for the
edge, uWSGI: devstack's way, see GlanceServer) on free 127.0.0.1 ports, each
with its own sqlite database, image, staging, task and lock directories in
one temporary directory. The edge has
``enabled_backends = local:file, central:remote-glance`` with this driver.

The demo, the functional tests and the benchmarks all use this module. It
waits for readiness, keeps each server's logs (central's access log is
parsed so tests can count what reached central), can stop, restart, freeze
and thaw central to cut the WAN, can run the edge with several worker
processes, and always stops every process it started (by process group,
through tests.harness.daemon) and removes its directory: on ``stop()``, on a
failed ``start()``, at interpreter exit, and, through PR_SET_PDEATHSIG, when
the process that started a server dies without cleaning up.

Identity without Keystone (see doc/source/contributor/lab.rst):

* central runs the unauthenticated flavor with a policy that lets that
  (admin) context through: the driver's ``auth_type = none`` reads it the way
  a service credential that sees every image would;
* the edge runs ``headerauth``, the stock keystone pipeline minus
  ``authtoken``, so each request's project and roles come from
  ``X-Project-Id`` / ``X-Roles`` headers and Glance's default policy applies.
  Loopback test labs only; never a shipped configuration.
"""

import collections
import os
import shutil
import signal
import subprocess
import sys
import tempfile

import requests

from tests.harness import daemon
from tests.harness import faults

GLANCE_ETC = os.path.join(sys.prefix, 'etc', 'glance')
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
BIN = os.path.dirname(sys.executable)
HOST = daemon.HOST

START_TIMEOUT = 60     # seconds for a server to answer after launch
STOP_TIMEOUT = 10      # seconds for a graceful stop before SIGKILL

# A server's access log, one request a line, tab separated; pid is the
# worker process that answered.
ACCESS_FIELDS = ('method', 'path', 'query', 'status', 'sent', 'range',
                 'agent', 'pid')
ACCESS_FORMAT = '\t'.join(('%(m)s', '%(U)s', '%(q)s', '%(s)s', '%(B)s',
                           '%({range}i)s', '%({user-agent}i)s', '%(p)s'))
AccessEntry = collections.namedtuple('AccessEntry', ACCESS_FIELDS)
# The same fields in uWSGI's request log (which writes '-' for an empty
# query).
UWSGI_ACCESS_FORMAT = '\t'.join((
    '%(method)', '%(var.PATH_INFO)', '%(var.QUERY_STRING)', '%(status)',
    '%(rsize)', '%(var.HTTP_RANGE)', '%(uagent)', '%(pid)'))
WSGI_SERVERS = ('gunicorn', 'uwsgi')

# The policy that lets the unauthenticated (admin, roleless) context through.
ADMIN_EVERYONE = {'context_is_admin': '@', 'service_api': '@'}

Identity = collections.namedtuple('Identity', 'project_id user_id roles')
ADMIN = Identity('edge-admins', 'operator',
                 ('admin', 'member', 'reader', 'service'))


def make_tls(folder):
    """A test CA, a server certificate for 127.0.0.1 signed by it, and a
    second, unrelated CA. Returns (ca_file, cert_file, key_file,
    other_ca_file). Loopback labs only.
    """
    import datetime
    import ipaddress

    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives import serialization
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(text):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, text)])

    def certificate(subject, issuer, key, signer, extensions):
        builder = x509.CertificateBuilder().subject_name(
            name(subject)).issuer_name(name(issuer)).public_key(
            key.public_key()).serial_number(x509.random_serial_number()
                                            ).not_valid_before(
            now - datetime.timedelta(days=1)).not_valid_after(
            now + datetime.timedelta(days=2))
        for extension, critical in extensions:
            builder = builder.add_extension(extension, critical=critical)
        return builder.sign(signer, hashes.SHA256())

    def write(path, *items):
        with open(path, 'wb') as f:
            for item in items:
                f.write(item)
        return path

    pem = serialization.Encoding.PEM
    files = []
    for ca_name in ('gsr-test-ca', 'gsr-other-ca'):
        key = ec.generate_private_key(ec.SECP256R1())
        ca = certificate(ca_name, ca_name, key, key, [
            (x509.BasicConstraints(ca=True, path_length=None), True)])
        files.append((key, ca, write(os.path.join(folder, ca_name + '.pem'),
                                     ca.public_bytes(pem))))
    ca_key, ca, ca_file = files[0]
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = certificate('127.0.0.1', 'gsr-test-ca', server_key, ca_key, [
        (x509.SubjectAlternativeName([x509.IPAddress(
            ipaddress.ip_address(HOST))]), False)])
    cert_file = write(os.path.join(folder, 'central.pem'),
                      server.public_bytes(pem))
    key_file = write(os.path.join(folder, 'central.key'),
                     server_key.private_bytes(
                         pem, serialization.PrivateFormat.PKCS8,
                         serialization.NoEncryption()))
    return ca_file, cert_file, key_file, files[1][2]


def proc_stats():
    """(pid, the fields of /proc/<pid>/stat after the command name) of
    every process that still exists.
    """
    for entry in os.listdir('/proc'):
        if not entry.isdigit():
            continue
        try:
            with open('/proc/%s/stat' % entry) as f:
                yield int(entry), f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue


def rss(pid):
    """Resident memory of a process, in bytes."""
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1]) * 1024
    return 0


# A free port of 127.0.0.1 for a server of the lab (see tests.harness.daemon).
free_port = daemon.free_port


# This package's paste filters, in the order the edge example gives them.
OUR_FILTERS = 'remote-glance-record-copy remote-glance-on-demand'
# The same with the filter that shows remote-glance stores read-only
# (glance_store_remote/store_info.py), for the flavors that name it.
ALL_FILTERS = 'remote-glance-store-info ' + OUR_FILTERS


def _paste_ini(glance_etc=GLANCE_ETC):
    """The stock paste file plus test flavors:

    * ``headerauth``: identity from headers, with this package's filters
      (the edge's usual flavor here);
    * ``trusted``: unauthenticated (admin, no roles), with the filters;
    * ``headfile``: unauthenticated, with the benchmark's HEAD filter (see
      tests/harness/head_filter.py);
    * ``headerauth+storeinfo``: ``headerauth`` with the store-info filter
      too;
    * ``keystone+cachemanagement+edge``: the edge as the docs describe it,
      for the tempest tier: ``keystone+cachemanagement`` (Glance's own
      image cache and its API) with every filter of this package.
    """
    with open(os.path.join(glance_etc, 'glance-api-paste.ini')) as f:
        text = f.read()
    lines = []
    for line in text.splitlines():
        lines.append(line)
        if line.startswith('keystone = '):
            lines.append('headerauth = ' + line[len('keystone = '):]
                         .replace('authtoken context ',
                                  'context ' + OUR_FILTERS + ' '))
            lines.append('keystonehook = ' + line[len('keystone = '):]
                         .replace('context ', 'context ' + OUR_FILTERS + ' '))
            lines.append('headerauth+storeinfo = ' + line[len('keystone = '):]
                         .replace('authtoken context ',
                                  'context ' + ALL_FILTERS + ' '))
        elif line.startswith('keystone+cachemanagement = '):
            lines.append('keystone+cachemanagement+edge = ' + line[len(
                'keystone+cachemanagement = '):].replace(
                'context ', 'context ' + ALL_FILTERS + ' '))
        elif line.startswith('default = '):
            default = line[len('default = '):]
            lines.append('headfile = ' + default.replace(
                ' rootapp', ' headfile rootapp'))
            lines.append('trusted = ' + default.replace(
                ' rootapp', ' %s rootapp' % OUR_FILTERS))
    for flavor in ('headerauth', 'keystonehook', 'trusted', 'headfile',
                   'headerauth+storeinfo', 'keystone+cachemanagement+edge'):
        lines += ['', '[composite:glance-api-%s]' % flavor,
                  'paste.composite_factory = glance.api:root_app_factory',
                  '/: api', '/healthcheck: healthcheck']
    lines += ['', '[filter:headfile]',
              'paste.filter_factory = '
              'tests.harness.head_filter:filter_factory',
              '', '[filter:remote-glance-record-copy]',
              'paste.filter_factory = glance_store_remote.record_copy:'
              'filter_factory',
              '', '[filter:remote-glance-on-demand]',
              'paste.filter_factory = glance_store_remote.ondemand:'
              'filter_factory',
              '', '[filter:remote-glance-store-info]',
              'paste.filter_factory = glance_store_remote.store_info:'
              'filter_factory', '']
    return '\n'.join(lines)


def _ini(sections):
    out = []
    for section, values in sections.items():
        out.append('[%s]' % section)
        for key, value in values.items():
            if isinstance(value, bool):
                value = str(value).lower()
            out.append('%s = %s' % (key, value))
        out.append('')
    return '\n'.join(out)


def _merge(base, extra):
    merged = {section: dict(values) for section, values in base.items()}
    for section, values in (extra or {}).items():
        merged.setdefault(section, {}).update(values)
    return merged


class GlanceServer:
    """One glance-api under gunicorn or uWSGI, living in ``root``.

    uWSGI runs as devstack runs glance-api, except that the application is
    loaded once in the master and the workers are forked from it (uWSGI's
    default, without ``lazy-apps``; devstack sets lazy-apps): what the
    driver opened while Glance configured its stores is inherited by every
    worker. Found by running it here, it needs: the config dir in the
    environment (uWSGI passes no argv to Glance); ``--need-app`` (else it
    serves errors when Glance fails to load); ``--die-on-term`` (else
    SIGTERM reloads and stop() waits for SIGKILL); ``--no-orphans``
    (workers die with their master); ``Connection: close`` (its plain
    ``--http-socket`` does no keep-alive: a client reusing a connection is
    reset); ``--chunked-input-limit`` (glanceclient uploads chunked: 500
    without it).

    :param wsgi_server: 'gunicorn' or 'uwsgi'
    :param preload: gunicorn only: ``--preload`` (the application loaded
        in the master, then the workers forked, as uWSGI does by default)
    """

    def __init__(self, name, root, flavor='', backends=None, options=None,
                 workers=1, threads=8, policy=None, tls=None,
                 python=sys.executable, wsgi_server='gunicorn',
                 preload=False):
        if wsgi_server not in WSGI_SERVERS:
            raise ValueError('wsgi_server: one of %s' % (WSGI_SERVERS,))
        if tls and wsgi_server != 'gunicorn':
            raise ValueError('the lab serves TLS with gunicorn only')
        if preload and wsgi_server != 'gunicorn':
            raise ValueError('preload is a gunicorn option (uWSGI preloads '
                             'by default)')
        self.name = name
        self.wsgi_server = wsgi_server
        # The interpreter of the virtualenv whose Glance this server runs.
        self.python = python
        self.root = root
        self.port = free_port()
        self.tls = tls  # (ca_file, cert_file, key_file) or None
        self.url = '%s://%s:%d' % ('https' if tls else 'http', HOST,
                                   self.port)
        self.verify = tls[0] if tls else True
        self.workers = workers
        self.threads = threads
        self.preload = preload
        self.log_file = os.path.join(root, 'glance-api.log')
        self.server_log = os.path.join(root, wsgi_server + '.log')
        self.access_log = os.path.join(root, 'access.log')
        self.db_file = os.path.join(root, 'glance.sqlite')
        self.proc = None
        for sub in ('images', 'staging', 'tasks', 'locks', 'cache'):
            os.makedirs(os.path.join(root, sub), exist_ok=True)
        backends = backends or {'local': 'file'}
        sections = {
            'DEFAULT': {
                'enabled_backends': ', '.join(
                    '%s:%s' % item for item in backends.items()),
                'log_file': self.log_file,
                'debug': True,
                'worker_self_reference_url': self.url,
                'show_multiple_locations': True,
                'image_cache_dir': os.path.join(root, 'cache'),
            },
            'database': {'connection': 'sqlite:///' + self.db_file},
            'glance_store': {'default_backend': 'local'},
            'local': {'filesystem_store_datadir':
                      os.path.join(root, 'images')},
            'os_glance_staging_store': {'filesystem_store_datadir':
                                        os.path.join(root, 'staging')},
            'os_glance_tasks_store': {'filesystem_store_datadir':
                                      os.path.join(root, 'tasks')},
            'oslo_concurrency': {'lock_path': os.path.join(root, 'locks')},
            'paste_deploy': {'flavor': flavor},
        }
        if policy:
            policy_file = os.path.join(root, 'policy.yaml')
            with open(policy_file, 'w') as f:
                f.writelines('"%s": "%s"\n' % item for item in policy.items())
            sections['oslo_policy'] = {'policy_file': policy_file}
        self.config = _merge(sections, options)
        self.write_config()
        with open(os.path.join(root, 'glance-api-paste.ini'), 'w') as f:
            f.write(_paste_ini(os.path.join(
                os.path.dirname(os.path.dirname(python)), 'etc', 'glance')))

    @property
    def config_file(self):
        return os.path.join(self.root, 'glance-api.conf')

    def write_config(self):
        with open(self.config_file, 'w') as f:
            f.write(_ini(self.config))

    def set_options(self, options):
        """Change options; they apply at the next start."""
        self.config = _merge(self.config, options)
        self.write_config()

    # -- lifecycle ---------------------------------------------------------

    def launch(self):
        """Start the server without waiting; see wait_ready().

        It leads a process group of its own, workers included: stop()
        signals that group, and the master gets SIGTERM if the process
        that launched it dies.
        """
        env = dict(os.environ, OS_GLANCE_CONFIG_DIR=self.root,
                   PYTHONPATH=PROJECT_ROOT)
        cmd = (self._uwsgi_command() if self.wsgi_server == 'uwsgi'
               else self._gunicorn_command())
        self.proc = daemon.spawn(cmd, self.server_log, self.root, env)
        daemon.track(self)

    def _gunicorn_command(self):
        tls = ['--certfile', self.tls[1], '--keyfile', self.tls[2]] \
            if self.tls else []
        return [self.python, '-m', 'gunicorn',
                '--bind', '%s:%d' % (HOST, self.port),
                '--workers', str(self.workers),
                '--worker-class', 'gthread', '--threads', str(self.threads),
                '--timeout', '600', '--graceful-timeout', '3',
                '--no-control-socket',
                '--access-logfile', self.access_log,
                '--access-logformat', ACCESS_FORMAT] + tls + (
            ['--preload'] if self.preload else []) + [
            'glance.wsgi.api:application']

    def _uwsgi_command(self):
        """uWSGI's command line; see the class docstring."""
        return [os.path.join(os.path.dirname(self.python), 'uwsgi'),
                '--http-socket', '%s:%d' % (HOST, self.port),
                '--module', 'glance.wsgi.api:application',
                '--master', '--processes', str(self.workers),
                '--threads', str(self.threads),
                '--need-app', '--die-on-term', '--no-orphans',
                '--reload-mercy', '3', '--worker-reload-mercy', '3',
                '--add-header', 'Connection: close',
                '--chunked-input-limit', str(64 * 1024 * 1024),
                '--buffer-size', '65535',
                '--req-logger', 'file:' + self.access_log,
                '--logformat', UWSGI_ACCESS_FORMAT]

    def wait_ready(self, timeout=START_TIMEOUT):
        daemon.wait_until(
            lambda: requests.get(self.url + '/versions', timeout=2,
                                 verify=self.verify).status_code == 200,
            timeout, {self.name + ' glance-api': self.proc},
            'an answer from %s glance-api' % self.name, self.log_tail)

    def start(self):
        self.launch()
        self.wait_ready()

    @property
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, signum):
        daemon.signal_group(self.proc, signum)

    def stop(self):
        """Stop the server and every worker (they share the master's
        process group); safe to call twice.
        """
        daemon.stop(self.proc, STOP_TIMEOUT)
        self.proc = None
        daemon.forget(self)

    def kill(self):
        """SIGKILL the server and every worker at once (a crash), and
        reap the master; start() brings it back.
        """
        daemon.kill(self.proc, STOP_TIMEOUT)
        self.proc = None
        daemon.forget(self)

    def restart(self):
        self.stop()
        self.start()

    def freeze(self):
        """Keep accepting connections but never answer (SIGSTOP)."""
        self._signal_group(signal.SIGSTOP)

    def thaw(self):
        self._signal_group(signal.SIGCONT)

    def worker_pids(self):
        """PIDs of the worker processes (the master's children)."""
        master = str(self.proc.pid)
        pids = []
        for pid, fields in proc_stats():
            if fields[1] == master:
                pids.append(pid)
        return pids

    # -- logs --------------------------------------------------------------

    def _read(self, path):
        try:
            with open(path, errors='replace') as f:
                return f.read()
        except FileNotFoundError:
            return ''

    def log_text(self):
        return self._read(self.log_file) + self._read(self.server_log)

    def log_tail(self, lines=40):
        return '\n'.join(self.log_text().splitlines()[-lines:])

    def access_entries(self):
        """Requests this server answered, oldest first."""
        entries = []
        for line in self._read(self.access_log).splitlines():
            fields = line.split('\t')
            if len(fields) == len(ACCESS_FIELDS):
                # gunicorn writes the pid as <1234>
                entries.append(AccessEntry(*fields[:-1],
                                           fields[-1].strip('<>')))
        return entries

    # -- clients -----------------------------------------------------------

    def session(self, identity=None):
        """A keystoneauth1 session to this server.

        With *identity*, requests carry the identity headers the edge's
        ``headerauth`` flavor trusts.
        """
        from keystoneauth1 import noauth
        from keystoneauth1 import session as ks_session
        headers = {}
        if identity is not None:
            headers = {'X-Identity-Status': 'Confirmed',
                       'X-Project-Id': identity.project_id,
                       'X-User-Id': identity.user_id,
                       'X-Roles': ','.join(identity.roles)}
        return ks_session.Session(auth=noauth.NoAuth(endpoint=self.url),
                                  additional_headers=headers,
                                  verify=self.verify)

    def glance(self, identity=None):
        """python-glanceclient v2, as nova and operators use it."""
        from glanceclient import client
        return client.Client('2', session=self.session(identity))

    def clouds_yaml(self, folder):
        """Write a clouds.yaml naming this server as cloud ``edge`` (auth
        ``none``) and return its path, for OS_CLIENT_CONFIG_FILE.
        """
        path = os.path.join(folder, 'clouds.yaml')
        with open(path, 'w') as f:
            f.write('clouds:\n  edge:\n    auth_type: none\n    auth:\n'
                    '      endpoint: %s\n' % self.url)
        return path

    def sdk(self, identity=None):
        """An openstacksdk connection."""
        import openstack
        return openstack.connection.Connection(
            session=self.session(identity), image_endpoint_override=self.url)


def db_sync(server):
    bin_dir = os.path.dirname(server.python)
    subprocess.run([os.path.join(bin_dir, 'glance-manage'), '--config-file',
                    server.config_file, 'db_sync'],
                   check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.PIPE, timeout=120)


class LabBase:
    """Servers living in one temporary directory: start() makes the
    directory and calls _start(); stop() stops every part (also after a
    failed start) and removes it. A context manager.
    """

    root = None
    central = None

    def _parts(self):
        """What stop() stops, in order (None entries are skipped)."""
        return ()

    def upstreams(self):
        """The servers a remote-glance driver of this lab reads: each must
        only ever see GET and HEAD from it.
        """
        return (self.central,)

    def caches(self):
        """(cache directory, backend name) of each remote-glance cache."""
        return ()

    def start(self):
        self.root = tempfile.mkdtemp(prefix='gsr-lab-')
        with daemon.starting(self):
            self._start()
        return self

    def _start(self):
        raise NotImplementedError

    def _launch(self, first, *others):
        """One db_sync, copied to the other servers that run the same
        Glance; start all of them; wait for all of them.
        """
        db_sync(first)
        for server in others:
            if server.python == first.python:
                shutil.copyfile(first.db_file, server.db_file)
            else:
                db_sync(server)
        for server in (first,) + others:
            server.launch()
        for server in (first,) + others:
            server.wait_ready()

    def stop(self):
        """Stop every part and remove the lab directory."""
        for part in self._parts():
            if part is not None:
                part.stop()
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
        daemon.forget(self)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


class Lab(LabBase):
    """A central and an edge Glance; use as a context manager.

    :param edge_workers: worker processes of the edge
    :param cache_max_size: cap of the edge's remote-glance cache in bytes;
        None runs the edge without a cache
    :param cache_dir: the edge's cache directory (default: in the lab)
    :param proxy: put tests.harness.faults.FaultyCentral between edge and
        central
    :param central_python: the interpreter of another virtualenv whose
        (older) Glance central runs; default: this one
    :param central_tls: serve central over HTTPS with a test CA (the edge
        gets ``cafile``; ``ca_file`` and ``other_ca_file`` are kept here)
    :param edge_threads: threads per edge worker
    :param edge_wsgi_server: 'gunicorn' or 'uwsgi' (see GlanceServer)
    :param edge_flavor: paste flavor of the edge: 'headerauth' (identity
        from headers) or 'trusted' (every request an admin without roles,
        for clients that cannot send identity headers, such as the CLI)
    :param central_flavor: paste flavor of central ('' unauthenticated,
        'headfile' adds the benchmark's HEAD filter)
    :param central_options, edge_options: ``{section: {key: value}}`` merged
        into each server's glance-api.conf
    """

    def __init__(self, edge_workers=1, cache_max_size=1024 ** 3,
                 cache_dir=None, proxy=False, central_options=None,
                 edge_options=None, edge_threads=8, central_flavor='',
                 edge_flavor='headerauth', central_tls=False,
                 central_python=None, edge_wsgi_server='gunicorn'):
        self.central_python = central_python or sys.executable
        self.central_tls = central_tls
        self.ca_file = self.other_ca_file = None
        self.edge_threads = edge_threads
        self.edge_wsgi_server = edge_wsgi_server
        self.edge_flavor = edge_flavor
        self.central_flavor = central_flavor
        self.use_proxy = proxy
        self.proxy = None
        self.edge_workers = edge_workers
        self.cache_max_size = cache_max_size
        self.cache_dir = cache_dir
        self.central_options = central_options
        self.edge_options = edge_options
        self.central = None
        self.edge = None

    def _parts(self):
        return (self.edge, self.central, self.proxy)

    def caches(self):
        return ((self.cache_dir, 'central'),) if self.cache_dir else ()

    def _start(self):
        cache = {}
        if self.cache_max_size is not None:
            self.cache_dir = self.cache_dir or os.path.join(
                self.root, 'edge-cache')
            cache = cache_options(self.cache_dir, self.cache_max_size)
        tls = None
        if self.central_tls:
            tls = make_tls(self.root)
            self.ca_file, self.other_ca_file = tls[0], tls[3]
            cache['cafile'] = self.ca_file
        self.central = GlanceServer(
            'central', os.path.join(self.root, 'central'),
            flavor=self.central_flavor, policy=ADMIN_EVERYONE,
            options=self.central_options, tls=tls and tls[:3],
            python=self.central_python)
        central_url = self.central.url
        if self.use_proxy:
            self.proxy = faults.FaultyCentral(self.central.url).start()
            central_url = self.proxy.url
        self.edge = edge_server(
            'edge', os.path.join(self.root, 'edge'), central_url,
            flavor=self.edge_flavor, backend_options=cache,
            workers=self.edge_workers, threads=self.edge_threads,
            options=self.edge_options, wsgi_server=self.edge_wsgi_server)
        self._launch(self.central, self.edge)


def cache_options(folder, max_size, on_demand=False):
    """A remote-glance group's cache (and on-demand import) options."""
    return {'remote_glance_cache_dir': folder,
            'remote_glance_cache_max_size': max_size,
            'remote_glance_import_on_demand': on_demand}


def edge_server(name, root, upstream_url, flavor='headerauth',
                backend='central', backend_options=None, options=None,
                **kw):
    """A GlanceServer with ``enabled_backends = local:file,
    <backend>:remote-glance`` reading the Glance at *upstream_url*.

    :param backend_options: more options of the backend group (the cache)
    :param kw: more GlanceServer arguments (workers, threads)
    """
    return GlanceServer(
        name, root, flavor=flavor,
        policy=ADMIN_EVERYONE if flavor == 'trusted' else None,
        backends={'local': 'file', backend: 'remote-glance'},
        options=_merge({backend: dict({
            'auth_type': 'none',
            'endpoint_override': upstream_url,
            'timeout': 5,
            'store_description': 'upstream Glance over the WAN',
        }, **(backend_options or {}))}, options), **kw)


class ChainLab(LabBase):
    """far edges -> edge -> central: two far edges read one edge that
    reads central, each level caching what it reads from the level above.

    The middle edge serves the far edge as central serves the edge: with
    the ``trusted`` flavor (every request an admin), which the far edge's
    driver reads with ``auth_type = none``. The far edges (``far``,
    ``far2``) run ``headerauth`` and name their backend ``regional``.

    :param on_demand: enable remote_glance_import_on_demand at both edges
    :param cache_max_size: each edge's cache cap, in bytes
    :param central_python: as in Lab (an older Glance as central)
    :param central_options: as in Lab (central on another store)
    """

    FAR_BACKEND = 'regional'

    def __init__(self, on_demand=True, cache_max_size=1024 ** 3,
                 central_python=None, central_options=None):
        self.on_demand = on_demand
        self.central_options = central_options
        self.cache_max_size = cache_max_size
        self.central_python = central_python or sys.executable
        self.central = self.edge = self.far = self.far2 = None

    @property
    def cache_dir(self):
        """The middle edge's cache (as Lab.cache_dir)."""
        return os.path.join(self.root, 'edge-cache')

    @property
    def far_cache_dir(self):
        return os.path.join(self.root, 'far-cache')

    def _parts(self):
        return (self.far, self.far2, self.edge, self.central)

    def upstreams(self):
        return (self.central, self.edge)

    def caches(self):
        return ((self.cache_dir, 'central'),
                (self.far_cache_dir, self.FAR_BACKEND),
                (os.path.join(self.root, 'far-cache-2'), self.FAR_BACKEND))

    def _cache(self, folder):
        return cache_options(folder, self.cache_max_size, self.on_demand)

    def _start(self):
        self.central = GlanceServer(
            'central', os.path.join(self.root, 'central'),
            policy=ADMIN_EVERYONE, python=self.central_python,
            options=self.central_options)
        self.edge = edge_server(
            'edge', os.path.join(self.root, 'edge'), self.central.url,
            flavor='trusted', backend_options=self._cache(self.cache_dir))
        self.far, self.far2 = (edge_server(
            name, os.path.join(self.root, name), self.edge.url,
            backend=self.FAR_BACKEND,
            backend_options=self._cache(os.path.join(self.root, cache)))
            for name, cache in (('far-edge', 'far-cache'),
                                ('far-edge-2', 'far-cache-2')))
        self._launch(self.edge, self.far, self.far2, self.central)
