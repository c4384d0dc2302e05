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

"""glance-api workers forked while the node joins its site through a SLOW
etcd, against REAL parts: a coordinated edge node whose glance-api loads
Glance (and so this driver, which starts joining the site in the
background) in a master and then forks two workers, under gunicorn
``--preload`` and under uWSGI without ``lazy-apps`` (both documented as
safe), with the site's etcd reached through a proxy that holds back every
answer.

What is proved here: each worker was forked while the master's join was
waiting for etcd (measured, not assumed), and yet reads through every
worker end in bounded time: the link of a central image (the site's record
relay), its first download (a fill under the site's per-image lock and a
site WAN slot). Before the fix the join held the site's lock across its
calls to etcd; a worker forked meanwhile inherited it locked, and every
read that touched the site hung for ever.
"""

import concurrent.futures
import hashlib
import os
import secrets
import socket
import threading
import time
import uuid

import requests
from testtools import content

from tests.functional import base
from tests.functional import test_edge_site as edge_site
from tests.harness import lab as lab_module
from tests.harness import site

MiB = 1024 * 1024
# Seconds etcd's every answer is held back while the node starts: its join
# takes several calls (a lease, the group, the member entry), so it is in
# flight for ten seconds or more, while the master forks its workers.
STARTUP_DELAY = 3.0
# Seconds per answer while the workers read: still slow, and each read
# makes a dozen calls.
READ_DELAY = 0.2
# Seconds a request may take before it counts as hung.
REQUEST_TIMEOUT = 60
# Concurrent link-and-read clients per round; rounds until each worker has
# served reads.
CLIENTS = 6
ROUNDS = 4
SIZE = 512 * 1024 + 9


class SlowEtcd:
    """A TCP proxy in front of etcd's client port (etcd3gw speaks HTTP to
    its gRPC gateway over kept-alive connections) that holds back every
    answer until *delay* seconds after its request arrived.

    ``exchanges``: ``[request time, answer time or None]`` of every
    request (wall clock), in arrival order; ``tooz_url`` the coordination
    URL through the proxy.
    """

    def __init__(self, upstream_port, delay):
        self.upstream_port = upstream_port
        self.delay = delay
        self.exchanges = []
        self.port = lab_module.free_port()
        self.tooz_url = 'etcd3+http://%s:%d' % (lab_module.HOST, self.port)
        self._lock = threading.Lock()
        self._sockets = set()
        self._listener = socket.create_server((lab_module.HOST, self.port))
        self._stopped = False

    def start(self):
        threading.Thread(target=self._accept, name='slow-etcd',
                         daemon=True).start()
        return self

    def _accept(self):
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(
                    (lab_module.HOST, self.upstream_port), timeout=5)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._sockets.update((client, upstream))
            pending = []   # the exchange waiting for its answer, if any
            threading.Thread(target=self._requests, daemon=True,
                             args=(client, upstream, pending)).start()
            threading.Thread(target=self._answers, daemon=True,
                             args=(upstream, client, pending)).start()

    def _requests(self, client, upstream, pending):
        try:
            while True:
                data = client.recv(65536)
                if not data:
                    break
                with self._lock:
                    if not pending:
                        exchange = [time.time(), None]
                        self.exchanges.append(exchange)
                        pending.append(exchange)
                upstream.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    def _answers(self, upstream, client, pending):
        try:
            while True:
                data = upstream.recv(65536)
                if not data:
                    break
                with self._lock:
                    exchange = pending.pop() if pending else None
                if exchange is not None:
                    time.sleep(max(0.0, exchange[0] + self.delay -
                                   time.time()))
                    exchange[1] = time.time()
                client.sendall(data)
        except OSError:
            pass
        finally:
            self._close(client, upstream)

    def _close(self, *sockets):
        for sock in sockets:
            with self._lock:
                self._sockets.discard(sock)
            try:
                sock.close()
            except OSError:
                pass

    def stop(self):
        self._stopped = True
        self._listener.close()
        with self._lock:
            sockets = list(self._sockets)
        self._close(*sockets)


class ForkLab(lab_module.LabBase):
    """A central and ONE coordinated edge node of two workers forked from a
    master that loaded Glance, its site's etcd behind SlowEtcd
    (``lab.proxy``); the site's reads from central are capped by WAN slots
    (one per client of the test: a read never waits for one). The node's
    database is a MariaDB, as a site's: concurrent links from two workers
    would find Glance's SQLite locked.

    :param wsgi_server: 'gunicorn' (with ``--preload``) or 'uwsgi'
        (without ``lazy-apps``, the lab's way)
    """

    def __init__(self, wsgi_server):
        self.wsgi_server = wsgi_server
        self.central = self.edge = self.etcd = self.proxy = self.db = None

    @property
    def cache_dir(self):
        return os.path.join(self.root, 'edge-cache')

    def _parts(self):
        return (self.edge, self.central, self.proxy, self.etcd, self.db)

    def caches(self):
        return ((self.cache_dir, 'central'),)

    def _start(self):
        self.etcd = site.Etcd(os.path.join(self.root, 'etcd')).start()
        self.proxy = SlowEtcd(self.etcd.port, STARTUP_DELAY).start()
        self.db = site.MariaDB(os.path.join(self.root, 'mariadb')).start()
        self.central = lab_module.GlanceServer(
            'central', os.path.join(self.root, 'central'),
            policy=lab_module.ADMIN_EVERYONE)
        self.edge = lab_module.edge_server(
            'edge', os.path.join(self.root, 'edge'), self.central.url,
            workers=2, wsgi_server=self.wsgi_server,
            preload=self.wsgi_server == 'gunicorn',
            backend_options=dict(
                lab_module.cache_options(self.cache_dir, 1024 ** 3),
                remote_glance_coordination_url=self.proxy.tooz_url,
                remote_glance_peer_secret=secrets.token_hex(24),
                remote_glance_max_fills=CLIENTS,
                remote_glance_fill_slot_wait=REQUEST_TIMEOUT),
            options={'database': {'connection': self.db.url}})
        site.EdgeSiteLab._add_peer_filter(self.edge)
        for server in (self.central, self.edge):
            lab_module.db_sync(server)
            server.launch()
        for server in (self.central, self.edge):
            server.wait_ready()


def fork_time(pid):
    """When process *pid* was started (forked), in wall-clock seconds, to
    the kernel's clock tick.
    """
    fields = dict(lab_module.proc_stats())[pid]
    with open('/proc/uptime') as f:
        uptime = float(f.read().split()[0])
    now = time.time()
    return now - (uptime - int(fields[19]) / os.sysconf('SC_CLK_TCK'))


class ForkedWorkersUnderASlowEtcd:
    """The tests; a class gives ``LAB``."""

    LAB_CLASS = ForkLab

    @classmethod
    def setUpClass(cls):
        if edge_site.UNAVAILABLE:
            raise cls.skipException(edge_site.UNAVAILABLE)
        super().setUpClass()

    def request(self, method, path, **kw):
        """*method* on the edge as the admin identity; the response, or
        'hung' when it did not come in REQUEST_TIMEOUT seconds.
        """
        identity = lab_module.ADMIN
        headers = dict(kw.pop('headers', {}), **{
            'X-Identity-Status': 'Confirmed',
            'X-Project-Id': identity.project_id,
            'X-User-Id': identity.user_id,
            'X-Roles': ','.join(identity.roles)})
        try:
            return requests.request(method, self.lab.edge.url + path,
                                    headers=headers, timeout=REQUEST_TIMEOUT,
                                    **kw)
        except requests.Timeout:
            return 'hung'

    def link_and_read(self, central, data):
        """Link *central* to a new edge image (the record relay) and read
        it once (a fill, a WAN slot); None, or what went wrong.
        """
        created = self.request('POST', '/v2/images', json={
            'name': 'fork-%s' % uuid.uuid4().hex[:8], 'disk_format': 'raw',
            'container_format': 'bare'})
        if created == 'hung' or created.status_code != 201:
            return 'create: %s' % created
        edge_id = created.json()['id']
        linked = self.request(
            'PATCH', '/v2/images/%s' % edge_id, headers={
                'Content-Type': edge_site.V21}, json=[{
                    'op': 'add', 'path': '/locations/-', 'value': {
                        'url': self.location_of(central.id),
                        'metadata': {}}}])
        if linked == 'hung' or linked.status_code != 200:
            return 'link: %s' % linked
        read = self.request('GET', '/v2/images/%s/file' % edge_id)
        if read == 'hung' or read.status_code != 200:
            return 'read: %s' % read
        if hashlib.sha256(read.content).digest() != hashlib.sha256(
                data).digest():
            return 'read: other bytes'
        return None

    def test_workers_forked_while_the_site_join_waits_serve_every_read(self):
        edge = self.lab.edge
        # gunicorn forks its second worker after the first answers.
        deadline = time.monotonic() + 30
        while (len(edge.worker_pids()) < 2 and
               time.monotonic() < deadline):
            time.sleep(0.1)
        workers = sorted(edge.worker_pids())
        self.assertEqual(2, len(workers))
        forked = {pid: fork_time(pid) for pid in workers}
        exchanges = [tuple(e) for e in self.lab.proxy.exchanges]
        self.addDetail('fork', content.text_content(
            'workers forked at %s; etcd exchanges (request, answer): %s' % (
                forked, exchanges[:20])))
        # The scenario is real: the master had asked etcd (before any
        # worker existed, only it could) and was still waiting for the
        # answer when each worker was forked.
        for pid, at in forked.items():
            self.assertTrue(any(
                asked < at and (answered is None or answered > at)
                for asked, answered in exchanges),
                'worker %d was not forked during a call to etcd' % pid)

        # Every read through every worker ends, right, in bounded time.
        self.lab.proxy.delay = READ_DELAY
        served = set()
        for round_ in range(ROUNDS):
            images = [self.make_central_image(size=SIZE)
                      for _ in range(CLIENTS)]
            started = time.monotonic()
            with concurrent.futures.ThreadPoolExecutor(CLIENTS) as pool:
                outcomes = list(pool.map(lambda image: self.link_and_read(
                    image[0], image[1]), images))
            self.addDetail('round-%d' % round_, content.text_content(
                '%.1f s: %s' % (time.monotonic() - started, outcomes)))
            self.assertEqual([None] * CLIENTS, outcomes)
            served |= {int(e.pid) for e in edge.access_entries()
                       if e.path.endswith('/file') and e.status == '200'}
            if served >= set(workers):
                break
        self.assertEqual(set(workers), served & set(workers))
        # Each worker joined the site itself, as a member of its own.
        self.assertEqual(set(workers), set(workers) & self.member_pids())

    def member_pids(self):
        """The processes named by the members of the site's group."""
        from tooz import coordination
        coordinator = coordination.get_coordinator(
            self.lab.etcd.tooz_url, b'test-%d' % os.getpid())
        coordinator.start()
        try:
            members = coordinator.get_members(
                b'remote-glance.central').get()
        finally:
            coordinator.stop()
        # A member is <host>-<pid>-<8 hex>.
        return {int(m.decode().rsplit('-', 2)[1]) for m in members}


class TestGunicornPreload(ForkedWorkersUnderASlowEtcd, base.LabTestCase):

    LAB = {'wsgi_server': 'gunicorn'}


class TestUWSGIWithoutLazyApps(ForkedWorkersUnderASlowEtcd,
                               base.LabTestCase):

    LAB = {'wsgi_server': 'uwsgi'}
