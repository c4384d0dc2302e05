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

"""A plain web server holding image files, for a central Glance on
glance_store's ``http`` store (read only: the image data lives on a web
server and Glance records its URL). Like rbd, swift and s3, that store
cannot read from an offset, so such a central answers a Range with 400.

A thread of the test process on a free loopback port; it serves GET and
HEAD of the files in its folder, whole (Python's handler ignores Range,
which the http store never sends). Stopped with ``stop()``, also at exit.
"""

import functools
import hashlib
import http.server
import os
import threading
import uuid

from tests.harness import daemon


class _QuietHandler(http.server.SimpleHTTPRequestHandler):

    def log_message(self, *args):
        pass


class LoopbackServer:
    """A threading HTTP server of the test process on a free loopback
    port, serving *handler*; stopped with stop(), also at exit.
    """

    name = 'loopback-server'

    def __init__(self):
        self._server = None
        self._thread = None
        self.port = self.url = None

    def handler(self):
        raise NotImplementedError

    def start(self):
        self._server = http.server.ThreadingHTTPServer(
            (daemon.HOST, 0), self.handler())
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.url = 'http://%s:%d' % (daemon.HOST, self.port)
        self._thread = threading.Thread(target=self._server.serve_forever,
                                        name=self.name, daemon=True)
        self._thread.start()
        daemon.track(self)
        return self

    def stop(self):
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
            self._thread.join(10)
        daemon.forget(self)


class ImageWebServer(LoopbackServer):

    name = 'image-web-server'

    def __init__(self, root):
        super().__init__()
        self.root = root
        os.makedirs(root, exist_ok=True)

    def handler(self):
        return functools.partial(_QuietHandler, directory=self.root)

    def publish(self, data):
        """Keep *data* as a new file; return (its URL, Glance's validation
        data for it: checksum, os_hash_algo, os_hash_value).
        """
        name = uuid.uuid4().hex + '.img'
        with open(os.path.join(self.root, name), 'wb') as f:
            f.write(data)
        return '%s/%s' % (self.url, name), {
            'checksum': hashlib.md5(data).hexdigest(),
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest()}
