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

"""The peer protocol's wire: paths, header names and signatures.

What a node trusts (doc/source/admin/ha-site.rst):

* a request, only when ``X-Remote-Glance-Peer-Auth: <expiry>:<nonce>:<hex
  HMAC-SHA256>`` under the backend's ``remote_glance_peer_secret`` covers
  its method, THIS node's peer URL, its path, its Range header, the expiry
  (at most MAX_EXPIRY seconds ahead) and a nonce never seen before on this
  node (the nonces are remembered until their expiry, in the cache's lock
  folder: every worker process of the node sees them). A signature is
  good for one request to one node;
* an answer (status, state, length, range, and the body of a record or a
  view) only when ``X-Remote-Glance-Peer-Answer`` signs it for the request
  it answers. Image bytes are not signed as such: every byte a peer sends
  goes into a fill that verifies the whole image against central's record,
  or into a whole-image read hashed against it, or is a range of the
  peer's verified entry whose SHA-256 the signed answer carries.

The server (server.py) and the client (client.py) both build on this
module; it imports neither. The secret is never logged nor put in an
answer or an error.
"""

import hashlib
import hmac
import logging
import os
import re
import secrets
import threading
import time

LOG = logging.getLogger(__name__)

PREFIX = '/remote-glance/peer/'
AUTH_HEADER = 'X-Remote-Glance-Peer-Auth'
STATE_HEADER = 'X-Remote-Glance-Peer-State'
# Asked by a node that serves a range from a peer (value: sha256); answered
# with the hex SHA-256 of the range's bytes, from a complete entry only.
DIGEST_HEADER = 'X-Remote-Glance-Peer-Digest'
ANSWER_HEADER = 'X-Remote-Glance-Peer-Answer'
# The headers of an answer its signature covers (with its status and, for
# a record or a view, its body).
SIGNED_HEADERS = (STATE_HEADER, 'Content-Length', 'Content-Range',
                  DIGEST_HEADER)
# Headers a proxy or balancer adds: a peer request carrying one did not
# Seconds a signed request stays valid; a server refuses an expiry further
# than MAX_EXPIRY in its future (allowing for the nodes' clocks to differ).
# A nonce is remembered until its expiry, so no request is served twice.
SIGNATURE_TTL = 10
MAX_EXPIRY = 30
# ASCII digits only: str.isdigit() also takes '²', which int() refuses.
_AUTH = re.compile(r'^([0-9]{1,12}):([0-9a-f]{32}):([0-9a-f]{64})\Z')


def peer_path(backend, image_id):
    return '%s%s/%s' % (PREFIX, backend, image_id)


def cache_view_path(backend, verify=False):
    return '%s%s/cache%s' % (PREFIX, backend, '/verify' if verify else '')


def target_of(url):
    """A node's peer URL as signatures name it."""
    return (url or '').strip().rstrip('/')


def sign(secret, method, target, path, range_header, expiry, nonce):
    """The hex HMAC-SHA256 of a peer request to the node at *target*."""
    message = '\n'.join(('peer-request-v2', method, target_of(target), path,
                         range_header or '', '%d' % expiry, nonce)).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def auth_header(secret, method, path, target, range_header=None, now=None):
    """The header value that signs one request, to the node whose peer URL
    is *target*, with a fresh nonce.
    """
    expiry = int(now if now is not None else time.time()) + SIGNATURE_TTL
    nonce = secrets.token_hex(16)
    return '%d:%s:%s' % (expiry, nonce, sign(
        secret, method, target, path, range_header, expiry, nonce))


def answer_mac(secret, request_auth, status, headers, body=None):
    """The hex HMAC-SHA256 that signs a peer's answer: its status, its
    SIGNED_HEADERS and its body (None: image bytes, which the reader
    verifies against the record), bound to the request's own signature,
    so that an answer cannot be forged, altered or replayed for another
    request.
    """
    lines = ['peer-answer-v2', request_auth, '%d' % status]
    lines += ['%s: %s' % (name.lower(), headers.get(name) or '')
              for name in SIGNED_HEADERS]
    lines.append('-' if body is None else hashlib.sha256(body).hexdigest())
    return hmac.new(secret.encode(), '\n'.join(lines).encode(),
                    hashlib.sha256).hexdigest()


def check_auth(secret, method, target, path, range_header, header, now=None,
               first_use=None):
    """Whether *header* authenticates *method* on *path* with
    *range_header* to the node *target* now. Constant-time in the
    signature; never raises.

    :param first_use: callable(nonce, expiry) -> False when the nonce was
        seen before (a replay); asked only of a valid signature
    """
    if not secret or not header or not target:
        return False
    found = _AUTH.match(header)
    if found is None:
        return False
    expiry, nonce, given = int(found[1]), found[2], found[3]
    now = int(now if now is not None else time.time())
    if expiry < now or expiry > now + MAX_EXPIRY:
        return False
    if not hmac.compare_digest(
            sign(secret, method, target, path, range_header, expiry,
                 nonce).encode(), given.encode()):
        return False
    return first_use is None or first_use(nonce, expiry)


class Nonces:
    """The nonces of the peer requests a node accepted, each until its
    expiry: one file each in *folder* (created exclusively, so the node's
    worker processes share them), else (no folder: no cache) in this
    process.

    Cost per request: one file created; every PRUNE_INTERVAL seconds, one
    listing of the folder and the expired ones removed.
    """

    PRUNE_INTERVAL = 5

    def __init__(self, folder=None, clock=time.time):
        self.folder = folder
        self._clock = clock
        self._lock = threading.Lock()
        self._seen = {}
        self._pruned = 0
        self._made = False

    def first_use(self, nonce, expiry):
        """True the first time *nonce* is presented, False after (also when
        it cannot be remembered: a replay is never served).
        """
        now = self._clock()
        if self.folder is None:
            with self._lock:
                if now - self._pruned > self.PRUNE_INTERVAL:
                    self._seen = {n: e for n, e in self._seen.items()
                                  if e >= now}
                    self._pruned = now
                if nonce in self._seen:
                    return False
                self._seen[nonce] = expiry
                return True
        try:
            if not self._made:
                os.makedirs(self.folder, mode=0o700, exist_ok=True)
                self._made = True
            if now - self._pruned > self.PRUNE_INTERVAL:
                self._pruned = now
                self._prune(now)
            fd = os.open(os.path.join(self.folder, '%d-%s' % (expiry, nonce)),
                         os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return False
        except OSError as e:
            LOG.error('peer requests: nonces cannot be kept in %s (%s): '
                      'refused', self.folder, e)
            return False
        os.close(fd)
        return True

    def _prune(self, now):
        for name in os.listdir(self.folder):
            expiry, _, _ = name.partition('-')
            if expiry.isascii() and expiry.isdigit() and int(expiry) < now:
                try:
                    os.unlink(os.path.join(self.folder, name))
                except FileNotFoundError:
                    pass
