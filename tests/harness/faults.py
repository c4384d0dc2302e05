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

"""A central that lies, dies or crawls on demand: an HTTP proxy on loopback
between the edge and the REAL central.

It forwards every request to central unchanged and streams the answer back,
and for the body of ``GET .../file`` answers it can, from a given body
offset: flip one byte, cut the connection, stall until released, or throttle
to a rate. Faults are one-shot or sticky as set; ``reset()`` clears them.
Used through ``tests.harness.lab.Lab(proxy=True)``.
"""

import http.client
import http.server
import json
import re
import threading
import time
import urllib.parse

from tests.harness import daemon

HOP_BY_HOP = {'connection', 'keep-alive', 'proxy-authenticate',
              'proxy-authorization', 'te', 'trailer', 'transfer-encoding',
              'upgrade'}
PIECE = 64 * 1024
RECORD = re.compile(r'^/v2/images/[0-9a-f-]{36}$')


class Faults:
    """What the proxy does to the next image bodies (offsets in bytes)."""

    def __init__(self):
        self.reset()

    def reset(self):
        self.flip_at = None       # XOR one byte at this body offset
        self.cut_at = None        # close the connection at this offset
        self.stall_at = None      # stop sending at this offset until release
        self.rate = None          # bytes per second, for the whole body
        self.sticky = False       # keep faults after the first /file answer
        self.length_delta = 0     # add this to the image's Content-Length
        self.record_patch = None  # dict merged into image records (sticky)
        self.released = threading.Event()
        self.stalled = threading.Event()
        self.aborted = False

    def release(self):
        self.released.set()

    def abort(self):
        """End a stalled body by cutting the connection there: central
        died at that byte, whatever it had already sent.
        """
        self.aborted = True
        self.released.set()


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.0'

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._forward()

    def do_HEAD(self):
        self._forward()

    def _forward(self):
        proxy = self.server.proxy
        target = urllib.parse.urlsplit(proxy.upstream)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() not in HOP_BY_HOP and k.lower() != 'host'}
        conn = http.client.HTTPConnection(target.hostname, target.port,
                                          timeout=60)
        try:
            conn.request(self.command, self.path, headers=headers)
            resp = conn.getresponse()
        except OSError:
            self.send_error(502, 'central unreachable')
            return
        is_image = self.command == 'GET' and self.path.endswith('/file')
        proxy.seen.append((self.command, self.path,
                           self.headers.get('Range')))
        patch = proxy.faults.record_patch
        if patch and self.command == 'GET' and RECORD.match(self.path):
            self._send_patched_record(resp, patch)
            conn.close()
            return
        self.send_response(resp.status)
        for key, value in resp.getheaders():
            if key.lower() == 'content-length' and is_image:
                value = str(int(value) + proxy.faults.length_delta)
            if key.lower() not in HOP_BY_HOP:
                self.send_header(key, value)
        self.end_headers()
        faults = proxy.faults if is_image else None
        if faults is not None and not faults.sticky:
            proxy.faults = Faults()
        try:
            self._copy_body(resp, faults)
        except OSError:
            pass
        finally:
            conn.close()

    def _send_patched_record(self, resp, patch):
        record = json.loads(resp.read())
        record.update(patch)
        body = json.dumps(record).encode()
        self.send_response(resp.status)
        self.send_header('Content-Type', 'application/json')
        self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _copy_body(self, resp, faults):
        sent = 0
        started = time.monotonic()
        while True:
            piece = resp.read(PIECE)
            if not piece:
                return
            if faults is not None:
                piece = bytearray(piece)
                end = sent + len(piece)
                if faults.flip_at is not None and sent <= faults.flip_at < end:
                    piece[faults.flip_at - sent] ^= 0xFF
                if faults.cut_at is not None and sent <= faults.cut_at < end:
                    self.wfile.write(piece[:faults.cut_at - sent])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                if (faults.stall_at is not None and
                        sent <= faults.stall_at < end):
                    head = faults.stall_at - sent
                    self.wfile.write(piece[:head])
                    self.wfile.flush()
                    sent, piece = sent + head, piece[head:]
                    faults.stalled.set()
                    faults.released.wait(120)
                    faults.stall_at = None
                    if faults.aborted:
                        self.close_connection = True
                        return
                if faults.rate:
                    ahead = (sent + len(piece)) / faults.rate - (
                        time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
            self.wfile.write(piece)
            sent += len(piece)


class FaultyCentral:
    """The proxy; ``url`` is what the edge uses as central."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.faults = Faults()
        self.seen = []
        self.port = daemon.free_port()
        self.url = 'http://%s:%d' % (daemon.HOST, self.port)
        self._server = http.server.ThreadingHTTPServer(
            (daemon.HOST, self.port), _Handler)
        self._server.daemon_threads = True
        self._server.proxy = self
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name='faulty-central', daemon=True)

    def start(self):
        self._thread.start()
        return self

    def arm(self, **faults):
        """Set faults for the next image body; returns them.

        Keep the result to wait for ``stalled`` or to ``release()``.
        """
        armed = Faults()
        for name, value in faults.items():
            if not hasattr(armed, name):
                raise AttributeError(name)
            setattr(armed, name, value)
        self.faults = armed
        return armed

    def stop(self):
        self.faults.release()
        self._server.shutdown()
        self._server.server_close()

    def image_gets(self):
        """(path, Range) of each image data GET forwarded, oldest first."""
        return [(path, rng) for method, path, rng in self.seen
                if method == 'GET' and path.endswith('/file')]
