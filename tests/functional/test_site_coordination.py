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

"""Site coordination against REAL parts: three edge glance-api nodes behind
haproxy on one MariaDB, the lab's central, and an etcd through which the
nodes coordinate their fills (tooz's etcd3gw driver); edge-1 advertises a
proxy of the test's as its peer URL, honest until a test makes it lie.

What is proved here: concurrent first reads of an image spread over the
site make central send it once, and every client gets central's bytes; a
peer that lies is caught by the reader's verification, nothing wrong is
kept or served complete, and the reader then reads central; with etcd
stopped each node fills by itself (logged once) and reads stay correct,
and coordination resumes when etcd returns; the peer endpoint refuses
requests without a valid signature, replays, signatures for another node or
range, and any request through the balancer; a member written to etcd
without the site key is never read nor sent a request.
"""

import concurrent.futures
import hashlib
import http.client
import http.server
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse

import requests
from testtools import content

from glance_store_remote import cache as cache_module
from glance_store_remote import coordination
from glance_store_remote.peers import signing
from tests.functional import test_edge_site as edge_site
from tests.harness import lab as lab_module
from tests.harness import site as site_module

SIZE = 4 * 1024 * 1024 + 13


class LyingProxy:
    """Forwards GET and HEAD to *target* (a node); while ``lie`` is set,
    flips the first byte of every body it forwards.
    """

    def __init__(self, port, target):
        self.port = port
        self.url = 'http://%s:%d' % (lab_module.HOST, port)
        self.target = urllib.parse.urlsplit(target)
        self.lie = False
        self.server = None

    def start(self):
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def log_message(self, *args):
                pass

            def do_HEAD(self):
                self._forward(body=False)

            def do_GET(self):
                self._forward(body=True)

            def _forward(self, body):
                connection = http.client.HTTPConnection(
                    proxy.target.hostname, proxy.target.port, timeout=60)
                try:
                    connection.request(self.command, self.path,
                                       headers=dict(self.headers))
                    answer = connection.getresponse()
                    self.send_response(answer.status)
                    for key, value in answer.getheaders():
                        if key.lower() not in ('connection',
                                               'transfer-encoding'):
                            self.send_header(key, value)
                    self.send_header('Connection', 'close')
                    self.end_headers()
                    first = True
                    while body:
                        chunk = answer.read(65536)
                        if not chunk:
                            break
                        if first and proxy.lie:
                            chunk = bytes([chunk[0] ^ 0xff]) + chunk[1:]
                        first = False
                        self.wfile.write(chunk)
                finally:
                    connection.close()
                    self.close_connection = True

        self.server = http.server.ThreadingHTTPServer(
            (lab_module.HOST, self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever,
                         daemon=True).start()

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


class TestSiteCoordination(edge_site.SiteTestCase):

    PROXY_PORT = lab_module.free_port()
    # A timeout longer than a test's freeze of central (the lab's is 5 s).
    LAB = {'coordination': True, 'on_demand': True,
           'edge_options': {'central': {'timeout': 30}},
           'peer_urls': {'edge-1': 'http://%s:%d' % (lab_module.HOST,
                                                     PROXY_PORT)}}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.proxy = LyingProxy(cls.PROXY_PORT, cls.lab.node('edge-1').url)
        cls.proxy.start()

    @classmethod
    def tearDownClass(cls):
        cls.proxy.stop()
        super().tearDownClass()

    def setUp(self):
        super().setUp()
        if not self.lab.etcd.running:
            self.lab.etcd.start()
        self.proxy.lie = False
        self.addCleanup(setattr, self.proxy, 'lie', False)

    def _attach_logs(self, exc_info):
        super()._attach_logs(exc_info)
        self.addDetail('etcd-log', content.text_content(
            self.lab.etcd.log_tail(40)))

    # -- helpers -----------------------------------------------------------

    def linked(self, size=SIZE):
        central, data = self.central_image(size=size)
        edge = self.link_with_patch(central.id)
        return central, edge, data

    def node_fetch(self, server, image_id):
        """GET the image at *server*: (status, bytes received, error)."""
        response, received, error = self.fetch(image_id, server=server)
        return response.status_code, received, error

    def central_file_gets(self, central_id):
        return self.central_requests(
            method='GET', path_part='/%s/file' % central_id)

    def wait_site_fills_done(self):
        for index in range(len(self.lab.nodes)):
            self.wait_fills_done(cache_dir=self.lab.cache_dir(index))

    def log_count(self, node, text):
        return node.log_text().count(text)

    def first_reads_everywhere(self, edge_id):
        """Two direct reads on each node and three through the balancer,
        all at once; each result checked against central's hash.
        """
        targets = list(self.lab.nodes) * 2 + [self.lab.balancer] * 3
        return self.together([
            (lambda t=t: self.node_fetch(t, edge_id)) for t in targets])

    def assert_all_good(self, results, data):
        digest = hashlib.sha512(data).hexdigest()
        for status, received, error in results:
            self.assertEqual((200, None), (status, error))
            self.assertEqual(digest, hashlib.sha512(received).hexdigest())

    # -- one pull per site -------------------------------------------------

    def site_counters(self, *names):
        """The sum over the nodes of each counter in *names*."""
        totals = dict.fromkeys(names, 0)
        for index in range(len(self.lab.nodes)):
            counters = cache_module.Cache(self.lab.cache_dir(index),
                                          1).counters()
            for name in names:
                totals[name] += counters[name]
        return totals

    def test_concurrent_first_reads_over_the_site_pull_central_once(self):
        central, edge, data = self.linked()
        peer_fills = sum(self.log_count(node, 'filling from peer')
                         for node in self.lab.nodes)
        counted = ('bytes_from_central', 'bytes_from_peers')
        before = self.site_counters(*counted)
        results = self.first_reads_everywhere(edge.id)
        self.assert_all_good(results, data)
        self.wait_site_fills_done()
        after = self.site_counters(*counted)
        self.assertEqual({'bytes_from_central': SIZE,
                          'bytes_from_peers': 2 * SIZE},
                         {name: after[name] - before[name]
                          for name in counted})
        gets = self.central_file_gets(central.id)
        whole = [g for g in gets if g.status in ('200', '206')]
        # A Range probe answered 400 sends no image bytes.
        self.assertEqual(1, len(whole), gets)
        sent = sum(int(g.sent) for g in whole if g.sent.isdigit())
        self.addDetail('central-sent', content.text_content(
            '%d bytes in %d GET(s) for a %d-byte image; all: %s' % (
                sent, len(whole), SIZE, gets)))
        self.assertEqual(SIZE, sent)
        # Every node keeps a verified copy; two of them got it from a peer.
        for index in range(len(self.lab.nodes)):
            with open('%s/entries/%s.data' % (self.lab.cache_dir(index),
                                              central.id), 'rb') as f:
                self.assertEqual(central.os_hash_value,
                                 hashlib.sha512(f.read()).hexdigest())
        self.assertEqual(peer_fills + 2, sum(
            self.log_count(node, 'filling from peer')
            for node in self.lab.nodes))

    # -- a lying peer ------------------------------------------------------

    def test_a_lying_peer_is_caught_and_central_serves_the_reader(self):
        central, edge, data = self.linked(size=1024 * 1024 + 5)
        edge1, edge2 = self.lab.node('edge-1'), self.lab.node('edge-2')
        self.assertEqual(200, self.node_fetch(edge1, edge.id)[0])
        self.wait_site_fills_done()
        self.proxy.lie = True
        mismatch = "does not match central's record"
        before = self.log_count(edge2, mismatch)
        status, received, error = self.node_fetch(edge2, edge.id)
        # Never complete-looking: a short body.
        self.assertLess(len(received), len(data))
        self.assertEqual(before + 1, self.log_count(edge2, mismatch))
        self.wait_site_fills_done()
        cache2 = self.lab.cache_dir(1)
        self.assertFalse(os.path.exists('%s/entries/%s.data' % (
            cache2, central.id)))
        # The next read skips the liar: central's bytes, kept.
        self.assert_all_good([self.node_fetch(edge2, edge.id)], data)
        self.wait_site_fills_done()
        self.assertEqual(2, len([g for g in self.central_file_gets(
            central.id) if g.status == '200']))
        with open('%s/entries/%s.data' % (cache2, central.id), 'rb') as f:
            self.assertEqual(data, f.read())

    # -- the coordinator fails ---------------------------------------------

    def test_etcd_stopped_then_started_again(self):
        failed, back = 'site coordinator failed', 'site coordinator is back'
        before = {n.name: self.log_count(n, failed) for n in self.lab.nodes}
        self.lab.etcd.stop()
        for _ in range(2):
            central, edge, data = self.linked(size=1024 * 1024 + 3)
            results = self.together([
                (lambda n=n: self.node_fetch(n, edge.id))
                for n in self.lab.nodes])
            self.assert_all_good(results, data)
            self.wait_site_fills_done()
        # Logged once per node for the whole outage.
        self.assertEqual({name: count + 1 for name, count in before.items()},
                         {n.name: self.log_count(n, failed)
                          for n in self.lab.nodes})
        self.lab.etcd.start()
        time.sleep(coordination.RETRY_INTERVAL + 1)
        # A node reconnects at its next fill: one read on each node, one
        # after the other, then every node has said it is back.
        _, warm, warm_data = self.linked(size=64 * 1024 + 1)
        for node in self.lab.nodes:
            self.assert_all_good([self.node_fetch(node, warm.id)], warm_data)
        self.wait_site_fills_done()
        deadline = time.monotonic() + 60
        while not all(back in node.log_text() for node in self.lab.nodes):
            self.assertLess(time.monotonic(), deadline, 'not back')
            time.sleep(0.2)
        central, edge, data = self.linked()
        self.assert_all_good(self.first_reads_everywhere(edge.id), data)
        self.wait_site_fills_done()
        self.assertEqual(1, len([g for g in self.central_file_gets(
            central.id) if g.status == '200']))
        for node in self.lab.nodes:
            self.assertIn(back, node.log_text(), node.name)

    # -- a node dies mid-fill ----------------------------------------------

    def wait_partial(self, index, image_id, at_least, timeout=60):
        path = '%s/partial/%s.data' % (self.lab.cache_dir(index), image_id)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if os.path.exists(path) and os.path.getsize(path) >= at_least:
                return os.path.getsize(path)
            time.sleep(0.01)
        self.fail('%s did not reach %d bytes' % (path, at_least))

    def test_a_node_killed_mid_fill_the_others_take_over(self):
        size = 32 * 1024 * 1024 + 9
        # Imported on demand, not linked: a link makes Glance hash the
        # image in the background, a read of its own racing this test's.
        central, data = self.central_image(size=size)
        # edge-3 fills (edge-1 advertises the test's proxy, which another
        # test may have made a node distrust).
        edge1, edge2, edge3 = self.lab.nodes
        self.node_glance(edge3).images.get(central.id)
        # edge-3 fills from central; central freezes part way (for less
        # than the nodes' timeout), so the fill is held mid-image while the
        # others read it from edge-3.
        first = self.together_later(lambda: self.node_fetch(edge3,
                                                            central.id))
        self.wait_partial(2, central.id, 1)
        self.lab.central.freeze()
        self.addCleanup(self.lab.central.thaw)
        held = self.wait_partial(2, central.id, 1)
        others = [self.together_later(lambda n=n: self.node_fetch(
            n, central.id)) for n in (edge1, edge2)]
        for index in (0, 1):
            self.wait_partial(index, central.id, held)
        self.kill_node(edge3)
        self.lab.central.thaw()
        status, received, error = first.result(timeout=120)
        self.assertLess(len(received), size)
        digest = hashlib.sha512(data).hexdigest()
        for future in others:
            status, received, error = future.result(timeout=120)
            self.assertEqual((200, None), (status, error))
            self.assertEqual(digest, hashlib.sha512(received).hexdigest())
        for index in (0, 1):
            self.wait_fills_done(cache_dir=self.lab.cache_dir(index))
            with open('%s/entries/%s.data' % (self.lab.cache_dir(index),
                                              central.id), 'rb') as f:
                self.assertEqual(digest, hashlib.sha512(f.read()).hexdigest())
        # Central re-sent only the rest, to each follower: no second read
        # from byte 0.
        gets = [g for g in self.central_file_gets(central.id)
                if g.status in ('200', '206')]
        self.addDetail('central-gets', content.text_content(repr(gets)))
        self.assertEqual(1, len([g for g in gets if g.status == '200']))
        resumed = [g for g in gets if g.status == '206']
        self.assertTrue(resumed, gets)
        for g in resumed:
            self.assertGreaterEqual(int(g.range.split('=')[1].split('-')[0]),
                                    held, g)

    def together_later(self, call):
        pool = concurrent.futures.ThreadPoolExecutor(1)
        self.addCleanup(pool.shutdown)
        return pool.submit(call)

    def kill_node(self, node):
        os.killpg(node.proc.pid, signal.SIGKILL)
        node.stop()

    # -- central asked once per site ---------------------------------------

    def record_gets(self, central_id):
        """The edges' GETs of central's record of *central_id*."""
        return [g for g in self.central_requests(method='GET')
                if g.path.endswith('/images/%s' % central_id) and
                g.agent.startswith('glance-store-remote')]

    def test_concurrent_first_shows_ask_central_once_per_site(self):
        # On-demand: 9 concurrent image-shows by central ID, 3 per node.
        central, data = self.central_image(size=64 * 1024 + 7)
        calls = [lambda n=n: self.node_glance(n).images.get(central.id).id
                 for n in self.lab.nodes for _ in range(3)]
        self.assertEqual([central.id] * 9, self.together(calls))
        gets = self.record_gets(central.id)
        self.assertEqual(1, len(gets), gets)
        # An ID central does not know: 404 everywhere, central asked once.
        unknown = '00000000-0000-4000-8000-%012x' % int(time.time())
        calls = [lambda n=n: self.node_status(n, unknown)
                 for n in self.lab.nodes for _ in range(3)]
        self.assertEqual([404] * 9, self.together(calls))
        self.assertEqual(1, len(self.record_gets(unknown)))

    def node_status(self, node, image_id):
        return node.session(lab_module.ADMIN).get(
            '%s/v2/images/%s' % (node.url, image_id), raise_exc=False,
            timeout=60).status_code

    # -- offline: the site serves what one node holds ----------------------

    def test_central_cut_any_node_serves_what_one_node_holds(self):
        central, edge, data = self.linked(size=1024 * 1024 + 11)
        _, other, _ = self.linked(size=64 * 1024)
        edge2 = self.lab.node('edge-2')
        self.assert_all_good([self.node_fetch(edge2, edge.id)], data)
        self.wait_site_fills_done()
        self.lab.central.stop()
        self.addCleanup(self.start_central)
        targets = [n for n in self.lab.nodes if n is not edge2] + [
            self.lab.balancer] * 3
        self.assert_all_good(self.together([
            (lambda t=t: self.node_fetch(t, edge.id)) for t in targets]),
            data)
        self.wait_site_fills_done()
        # Every node now holds it, verified; central sent it once.
        for index in range(len(self.lab.nodes)):
            with open('%s/entries/%s.data' % (self.lab.cache_dir(index),
                                              central.id), 'rb') as f:
                self.assertEqual(data, f.read())
        # What no node holds stays unavailable, at once.
        for node in self.lab.nodes:
            self.assertEqual(503, self.node_fetch(node, other.id)[0])

    # -- the site's view of its caches --------------------------------------

    def site_cli(self, node, *args):
        """glance-remote with *node*'s configuration (a
        CompletedProcess).
        """
        return subprocess.run(self.cli_command(node, *args),
                              capture_output=True, text=True, timeout=300,
                              env=self.cli_env(node))

    def test_cache_list_and_stats_of_the_whole_site(self):
        central, edge, data = self.linked(size=64 * 1024 + 1)
        edge2 = self.lab.node('edge-2')
        self.assertEqual(200, self.node_fetch(edge2, edge.id)[0])
        self.wait_site_fills_done()
        # Run on edge-1, which does not hold the image.
        result = self.site_cli(self.lab.node('edge-1'), 'cache', 'list',
                               '--site')
        self.assertEqual(0, result.returncode, result.stderr)
        rows = [r for r in json.loads(result.stdout)
                if r['image_id'] == central.id]
        self.assertEqual([(edge2.url, 'complete', len(data))],
                         [(r['node'], r['state'], r['size']) for r in rows])
        result = self.site_cli(self.lab.node('edge-3'), 'cache', 'stats',
                               '--site')
        self.assertEqual(0, result.returncode, result.stderr)
        stats = json.loads(result.stdout)
        self.assertEqual(3, len(stats['nodes']))
        self.assertEqual(
            sum(node['bytes_from_central']
                for node in stats['nodes'].values()),
            stats['site']['bytes_from_central'])
        self.assertGreaterEqual(stats['site']['site_images'], 1)
        # A byte flipped in edge-2's copy: verify --site, run on edge-1,
        # names the image and the node; the fix is edge-2's own.
        path = '%s/entries/%s.data' % (self.lab.cache_dir(1), central.id)
        with open(path, 'r+b') as f:
            first = f.read(1)
            f.seek(0)
            f.write(bytes([first[0] ^ 0xff]))
        result = self.site_cli(self.lab.node('edge-1'), 'cache', 'verify',
                               '--site')
        self.assertEqual(1, result.returncode, result.stderr)
        report = json.loads(result.stdout)
        self.assertEqual([(central.id, edge2.url)], [
            (r['image_id'], r['node']) for r in report['bad']])
        self.assertEqual([], report['unreachable'])
        result = self.site_cli(edge2, 'cache', 'verify', '--fix')
        self.assertEqual(1, result.returncode, result.stderr)
        self.assertFalse(os.path.exists(path))
        # A node that is down is named, and the exit code says so.
        self.kill_node(self.lab.node('edge-3'))
        result = self.site_cli(edge2, 'cache', 'stats', '--site')
        self.assertEqual(1, result.returncode)
        self.assertIn('cannot be asked', result.stderr)
        self.assertNotIn(self.lab.peer_secret, result.stdout + result.stderr)

    # -- the peer endpoint -------------------------------------------------

    def test_peer_requests_without_a_valid_signature_get_403(self):
        central, edge, data = self.linked(size=64 * 1024)
        node = self.lab.node('edge-2')
        self.assertEqual(200, self.node_fetch(node, edge.id)[0])
        self.wait_site_fills_done()
        path = signing.peer_path('central', central.id)
        url = node.url + path
        secret = self.lab.peer_secret

        def sign(method='GET', key=secret, target=node.url):
            return signing.auth_header(key, method, path, target)
        good = sign()
        expiry, nonce, _ = good.split(':')
        zeros = '%s:%s:%s' % (expiry, nonce, '0' * 64)
        for headers in ({}, {signing.AUTH_HEADER: zeros},
                        {signing.AUTH_HEADER: sign(key='not-the-site-secret')},
                        {signing.AUTH_HEADER: sign(method='HEAD')},
                        # Signed for another node, or with a range.
                        {signing.AUTH_HEADER: sign(
                            target=self.lab.node('edge-3').url)},
                        {signing.AUTH_HEADER: sign(), 'Range': 'bytes=0-9'},
                        {signing.AUTH_HEADER: '\u00b2:x'.encode('latin-1')}):
            response = requests.get(url, headers=headers, timeout=30)
            self.assertEqual(403, response.status_code, headers)
            self.assertNotIn(secret, response.text)
        # The site's own signature is served (the image's bytes), once.
        response = requests.get(url, headers={signing.AUTH_HEADER: good},
                                timeout=30)
        self.assertEqual((200, data), (response.status_code,
                                       response.content))
        replayed = requests.get(url, headers={signing.AUTH_HEADER: good},
                                timeout=30)
        self.assertEqual(403, replayed.status_code)
        for part in [self.lab.central] + self.lab.nodes:
            self.assertNotIn(secret, part.log_text(), part.name)
            self.assertNotIn('invalid literal for int()', part.log_text(),
                             part.name)

    def test_the_peer_path_is_never_answered_through_the_balancer(self):
        central, edge, data = self.linked(size=64 * 1024)
        for node in self.lab.nodes[1:]:
            self.assertEqual(200, self.node_fetch(node, edge.id)[0])
        self.wait_site_fills_done()
        path = signing.peer_path('central', central.id)
        vip = self.lab.balancer.url
        secret = self.lab.peer_secret
        # A request the site signed for a node, sent to the VIP (with the
        # node's Host too): whichever node haproxy picks refuses it.
        for node in self.lab.nodes[1:]:
            host = urllib.parse.urlsplit(node.url).netloc
            for headers in ({}, {'Host': host}):
                for _ in range(len(self.lab.nodes)):
                    headers[signing.AUTH_HEADER] = signing.auth_header(
                        secret, 'GET', path, node.url)
                    response = requests.get(vip + path, headers=headers,
                                            timeout=30)
                    self.assertEqual(403, response.status_code, headers)
                    self.assertNotEqual(data, response.content)
        self.assertIn('came through a proxy or balancer',
                      ''.join(n.log_text() for n in self.lab.nodes))
        # Sent straight to that node, the same kind of request is served.
        node = self.lab.node('edge-3')
        response = requests.get(node.url + path, headers={
            signing.AUTH_HEADER: signing.auth_header(secret, 'GET', path,
                                                     node.url)}, timeout=30)
        self.assertEqual((200, data), (response.status_code,
                                       response.content))
        # A balancer configured as ha-site.rst says refuses the path
        # itself; the API passes.
        front = site_module.HAProxy(
            os.path.join(self.lab.root, 'haproxy-deny'), self.lab.nodes,
            deny_peer_path=True)
        self.addCleanup(front.stop)
        front.start()
        response = requests.get(front.url + path, headers={
            signing.AUTH_HEADER: signing.auth_header(secret, 'GET', path,
                                                     node.url)}, timeout=30)
        self.assertEqual(403, response.status_code)
        self.assertEqual(200, requests.get(front.url + '/healthcheck',
                                           timeout=30).status_code)

    def test_a_member_written_to_etcd_is_never_read_nor_sent_a_request(self):
        # Someone who can write to etcd adds a "node" that says it fills
        # the image and holds its site lock; its server records what it is
        # sent.
        central, edge, data = self.linked(size=256 * 1024 + 3)
        seen = []

        class Rogue(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):
                seen.append((self.command, dict(self.headers)))
                self.send_response(200)
                self.send_header(signing.STATE_HEADER, 'complete')
                self.send_header('Content-Length', str(len(data)))
                self.end_headers()
            do_GET = do_HEAD
        rogue = http.server.ThreadingHTTPServer((lab_module.HOST, 0), Rogue)
        rogue.daemon_threads = True
        threading.Thread(target=rogue.serve_forever, daemon=True).start()
        self.addCleanup(rogue.server_close)
        self.addCleanup(rogue.shutdown)
        rogue_url = 'http://%s:%d' % (lab_module.HOST, rogue.server_port)
        from tooz import coordination as tooz_coordination
        writer = tooz_coordination.get_coordinator(
            self.lab.etcd.tooz_url, b'rogue-node')
        writer.start(start_heart=True)
        self.addCleanup(writer.stop)
        writer.join_group(b'remote-glance.central', capabilities={
            'peer_url': rogue_url, 'filling': [central.id],
            'member': 'rogue-node', 'sig': '0' * 64}).get()
        lock = writer.get_lock(
            ('remote-glance.central.%s' % central.id).encode())
        self.assertTrue(lock.acquire(blocking=False))
        self.addCleanup(lock.release)
        node = self.lab.node('edge-2')
        self.assertEqual((200, data, None), self.node_fetch(node, edge.id))
        self.wait_site_fills_done()
        self.assertEqual([], seen)
        self.assertIn("site member 'rogue-node' is not signed with the "
                      "site key", node.log_text())


class TestSiteSync(edge_site.SiteTestCase):
    """``glance-remote sync`` takes the site's lock: the nodes share one
    database, and two syncs at once could each add a tag or member row.
    (Unauthenticated edges: the CLI talks to the edge API.)
    """

    LAB = {'coordination': True, 'edge_flavor': 'trusted'}

    # -- one sync at a time for the site -----------------------------------

    def test_a_sync_while_another_node_syncs_does_nothing(self):
        # The test holds the site's sync lock, as a sync on another node
        # would.
        site = coordination.Site('central', self.lab.etcd.tooz_url, None,
                                 secret=self.lab.peer_secret)
        self.addCleanup(site.stop)
        lock = site.try_lock('sync', claim=True)
        self.assertIsNotNone(lock)
        node = self.lab.node('edge-1')
        code, results, stderr = self.cli(node, 'sync')
        # Not a success: revocations did not run.
        self.assertEqual((1, {}), (code, results), stderr)
        self.assertIn('sync did NOT run', stderr)
        lock.release()
        central, data = self.central_image(size=1024)
        self.assertEqual(0, self.cli(node, 'import', central.id)[0])
        code, results, stderr = self.cli(node, 'sync')
        self.assertEqual(0, code, stderr)
        self.assertIn(central.id, results)
        self.assertNotIn('another node', stderr)
        # The lock is free again once a sync ends.
        lock = site.try_lock('sync')
        self.assertIsNotNone(lock)
        lock.release()
