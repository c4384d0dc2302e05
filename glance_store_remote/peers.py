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

"""Peer reads: the nodes of an edge site read images from each other.

* ``PeerFilter`` (paste ``[filter:remote-glance-peer]``, placed first in the
  edge's pipeline: a peer carries no Keystone token) answers
  ``GET``/``HEAD /remote-glance/peer/<backend>/<central image id>`` with this
  node's bytes of that image: a complete entry, or the partial file of a
  fill in progress, streamed as it grows (unverified: the reader verifies
  the whole image against central's record itself, so nothing is held
  back here). Range requests are served for resumes, and, from a complete
  entry only, for a node's own range reads: asked with DIGEST_HEADER, the
  answer carries the SHA-256 of the range's bytes, signed with the answer
  (the reader holds back the range's last byte until its bytes match).
  The same filter answers central's record of an image the node holds
  (``.../record``) or as the node knows it (``.../central-record``), and
  the node's cache view (``.../cache``, ``.../cache/verify``).
  Other paths pass through untouched.
* ``Peer``: the client side, a data source with the contract of
  upstream.Central.open_data, and the records and views.

What a node trusts (doc/source/admin/ha-site.rst):

* a request, only when ``X-Remote-Glance-Peer-Auth: <expiry>:<nonce>:<hex
  HMAC-SHA256>`` under the backend's ``remote_glance_peer_secret`` covers
  its method, THIS node's peer URL, its path, its Range header, the expiry
  (at most MAX_EXPIRY seconds ahead) and a nonce never seen before on this
  node (the nonces are remembered until their expiry, in the cache's lock
  folder: every worker process of the node sees them). A signature is
  good for one request to one node;
* a request only when it reaches the node directly: one that names another
  host than the node's peer URL, or that a proxy or balancer forwarded
  (``X-Forwarded-For``, ``Forwarded``, ``Via``...), is refused, so the
  peer path is never an API of the site's VIP;
* an answer (status, state, length, range, and the body of a record or a
  view) only when ``X-Remote-Glance-Peer-Answer`` signs it for the request
  it answers. Image bytes are not signed as such: every byte a peer sends
  goes into a fill that verifies the whole image against central's record,
  or into a whole-image read hashed against it, or is a range of the
  peer's verified entry whose SHA-256 the signed answer carries.

Anything refused is answered 403 here and never reaches Glance; refusals
are logged at most once per REFUSAL_LOG_INTERVAL, with their count.
Where a fill reads from, and how the site asks central once, is
site_source.py's.

The secret is never logged nor put in an answer or an error.
"""

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
import time
import urllib.parse

import urllib3
import webob

from glance_store_remote import cache as cache_module
from glance_store_remote import exceptions
from glance_store_remote import locations
from glance_store_remote import streams
from glance_store_remote import upstream

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
# come straight from a node of the site.
PROXY_HEADERS = ('X-Forwarded-For', 'X-Forwarded-Host', 'X-Forwarded-Proto',
                 'X-Real-IP', 'Forwarded', 'Via')
# Seconds a signed request stays valid; a server refuses an expiry further
# than MAX_EXPIRY in its future (allowing for the nodes' clocks to differ).
# A nonce is remembered until its expiry, so no request is served twice.
SIGNATURE_TTL = 10
MAX_EXPIRY = 30
# Seconds between two warnings about refused peer requests (each says how
# many were refused since the last).
REFUSAL_LOG_INTERVAL = 60
# Seconds a peer server waits for a fill it streams that makes no progress.
STALL_TIMEOUT = 30
POLL_INTERVAL = 0.01
CONNECT_TIMEOUT = 3
# Seconds a site-wide cache verify waits for a node's report.
VERIFY_TIMEOUT = 3600
# Bytes of a signed answer read at most: a record (as central's), a view.
MAX_ANSWER_BYTES = 1024 * 1024 + 1024
MAX_VIEW_BYTES = 64 * 1024 * 1024

_PATH = re.compile(r'^/remote-glance/peer/(?P<backend>%s)/(?P<id>%s)'
                   r'(?:/(?P<what>record|central-record))?\Z' % (
                       locations.BACKEND, locations.IMAGE_ID))
# The node's cache as a whole: ``glance-remote cache list/stats --site``.
_VIEW_PATH = re.compile(r'^/remote-glance/peer/(?P<backend>%s)/cache'
                        r'(?P<verify>/verify)?\Z' % locations.BACKEND)
_RANGE = re.compile(r'^bytes=([0-9]+)-([0-9]*)\Z')
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


class _RefusalLog:
    """One warning per *interval* about refused peer requests, with the
    number refused since the last: a probe per second must not flood the
    log.
    """

    def __init__(self, interval=REFUSAL_LOG_INTERVAL, clock=time.monotonic):
        self.interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._last = None
        self._since = 0

    def refused(self, why, request):
        with self._lock:
            now = self._clock()
            if self._last is not None and now - self._last < self.interval:
                self._since += 1
                return
            others, self._since, self._last = self._since, 0, now
        LOG.warning('peer request refused (%s): %s %s from %s%s', why,
                    request.method, request.path_info[:300],
                    request.remote_addr,
                    '; %d more refused in the last %d s' % (
                        others, self.interval) if others else '')


def _netloc(url_or_host, scheme=None):
    """(host, port) of a URL, or of a Host header with *scheme*'s default
    port; None when it cannot be read.
    """
    try:
        if scheme is None:
            parts = urllib.parse.urlsplit(url_or_host)
            scheme = parts.scheme
        else:
            parts = urllib.parse.urlsplit('//' + url_or_host)
        host = (parts.hostname or '').lower()
        port = parts.port or {'http': 80, 'https': 443}.get(scheme.lower())
    except ValueError:
        return None
    return (host, port) if host else None


# -- server side -------------------------------------------------------------


def _peer_stores():
    return locations.backend_stores()


class PeerFilter:
    """WSGI middleware; see the module docstring.

    :param find_stores: callable() -> {backend: Store} (this glance-api's
        remote-glance stores by default)
    """

    def __init__(self, app, find_stores=None, chunk_size=1024 * 1024):
        self.app = app
        self._find_stores = find_stores or _peer_stores
        self.chunk_size = chunk_size
        self._nonces = {}
        self._nonces_lock = threading.Lock()
        self._refusals = _RefusalLog()

    def __call__(self, environ, start_response):
        path = environ.get('PATH_INFO', '')
        if not path.startswith(PREFIX):
            return self.app(environ, start_response)
        return self._answer(webob.Request(environ))(environ, start_response)

    def _refuse(self, why, request):
        self._refusals.refused(why, request)
        return webob.Response(status=403, content_type='text/plain',
                              body=b'peer read refused\n')

    def _answer(self, request):
        match = (_PATH.match(request.path_info) or
                 _VIEW_PATH.match(request.path_info))
        store = None
        if match is not None:
            store = self._find_stores().get(match['backend'])
        secret = _secret_of(store)
        own_url = _own_peer_url(store)
        # Refused alike whether the backend exists or not: an
        # unauthenticated caller learns nothing.
        if request.method not in ('GET', 'HEAD'):
            return self._refuse('not GET or HEAD', request)
        proxied = [h for h in PROXY_HEADERS if h in request.headers]
        if proxied:
            return self._refuse('came through a proxy or balancer: %s'
                                % proxied[0], request)
        if own_url is None or _netloc(own_url) != _netloc(
                request.host, urllib.parse.urlsplit(own_url).scheme):
            return self._refuse('not addressed to this node\'s peer URL',
                                request)
        auth = request.headers.get(AUTH_HEADER)
        if not check_auth(secret, request.method, own_url, request.path_info,
                          request.headers.get('Range'), auth,
                          first_use=self._nonces_of(store).first_use):
            return self._refuse('no valid signature, or a replay', request)
        if match.re is _PATH and not match['what']:
            cache = getattr(store, 'cache', None)
            if cache is None:
                response = _not_found()
            else:
                response = self._serve(request, cache, match['id'])
            return _signed(response, secret, auth, body=False)
        # A record or a view: GET only.
        if request.method != 'GET':
            return webob.Response(status=405, content_type='text/plain',
                                  body=b'GET only\n')
        return _signed(_small_answer(store, match), secret, auth, body=True)

    def _nonces_of(self, store):
        """The Nonces of *store*'s node: in its cache's lock folder (every
        worker process of the node sees them), else this process's.
        """
        cache = getattr(store, 'cache', None)
        folder = None
        if cache is not None:
            folder = os.path.join(cache.lock_dir, 'peer-nonces')
        with self._nonces_lock:
            nonces = self._nonces.get(folder)
            if nonces is None:
                nonces = self._nonces[folder] = Nonces(folder)
            return nonces

    def _serve(self, request, cache, image_id):
        opened = None
        try:
            # A HEAD only asks whether the entry is here: no hit counted,
            # its place in the LRU order kept.
            opened = cache.open_complete(image_id,
                                         hit=request.method != 'HEAD')
        except exceptions.CacheError:
            opened = None
        if opened is not None:
            fd, lock, record = opened
            release = [lock.close] if lock is not None else []
            state = 'complete'
        else:
            fd = _open_partial(cache, image_id)
            if fd is None:
                return _not_found()
            release = []
            state = 'filling'
            try:
                record = cache.stored_record(image_id)
                running = record is not None and _fill_running(cache,
                                                               image_id)
            except (exceptions.CacheError, OSError) as e:
                # The cache cannot be read now (its index busy): the
                # partial file is not leaked, the reader asks elsewhere.
                os.close(fd)
                LOG.info('peer read of image %s: the cache cannot be read '
                         'now: %s', image_id, e)
                return webob.Response(status=503, content_type='text/plain',
                                      body=b'cache cannot be read now\n')
            if not running:
                os.close(fd)
                return _not_found()
        release.insert(0, lambda: os.close(fd))
        size = record['size']
        start, end = 0, size
        status = 200
        wanted = request.headers.get('Range')
        if wanted:
            found = _RANGE.match(wanted.strip())
            if found is None or int(found[1]) >= size or (
                    found[2] and int(found[2]) < int(found[1])):
                _release(release)
                return webob.Response(status=416, headers={
                    'Content-Range': 'bytes */%d' % size})
            start = int(found[1])
            end = min(size, int(found[2]) + 1) if found[2] else size
            status = 206
        headers = {STATE_HEADER: state, 'Content-Length': str(end - start),
                   'Content-Type': 'application/octet-stream'}
        if status == 206:
            headers['Content-Range'] = 'bytes %d-%d/%d' % (start, end - 1,
                                                           size)
        if request.method == 'HEAD':
            _release(release)
            return webob.Response(status=status, headers=headers)
        if request.headers.get(DIGEST_HEADER) == 'sha256':
            if state != 'complete':
                # Nobody verified a partial file's bytes: no digest for
                # them (the asking node goes elsewhere).
                _release(release)
                return _not_found()
            try:
                headers[DIGEST_HEADER] = self._digest(fd, start, end)
            except OSError as e:
                _release(release)
                LOG.info('peer read of image %s: its entry cannot be read: '
                         '%s', image_id, e)
                return _not_found()
        body = streams.Chunks(
            self._read(cache, image_id, fd, start, end, state == 'filling'),
            *release, name='peer read of image %s' % image_id)
        response = webob.Response(status=status, app_iter=body)
        response.headers.update(headers)
        return response

    def _digest(self, fd, start, end):
        """The hex SHA-256 of the entry's bytes [start, end). Cost: one
        read of the range (then in the page cache for the answer) and its
        hash, before the first byte of the answer.
        """
        hasher = hashlib.sha256()
        pos = start
        while pos < end:
            block = os.pread(fd, min(self.chunk_size, end - pos), pos)
            if not block:
                raise OSError('the entry ended at byte %d of %d' % (pos, end))
            hasher.update(block)
            pos += len(block)
        return hasher.hexdigest()

    def _read(self, cache, image_id, fd, pos, end, growing):
        """The file's bytes [pos, end); a growing (partial) file is followed
        until the fill writing it stops: then the answer ends short.
        """
        last_progress = time.monotonic()
        while pos < end:
            available = os.fstat(fd).st_size
            if available > pos:
                chunk = os.pread(fd, min(self.chunk_size, available - pos,
                                         end - pos), pos)
                if chunk:
                    pos += len(chunk)
                    last_progress = time.monotonic()
                    yield chunk
                    continue
            if not growing:
                break
            if not _fill_running(cache, image_id):
                if os.fstat(fd).st_size > pos:
                    continue
                break
            if time.monotonic() - last_progress > STALL_TIMEOUT:
                break
            time.sleep(POLL_INTERVAL)
        if pos < end:
            LOG.info('peer read of image %s ends short at byte %d of %d: the '
                     'fill stopped', image_id, pos, end)


def _secret_of(store):
    if store is None:
        return None
    try:
        return store.conf[store.backend_group].remote_glance_peer_secret
    except Exception:
        return None


def _own_peer_url(store):
    """This node's peer URL, as the site knows it (the backend's
    remote_glance_peer_url, else worker_self_reference_url), or None.
    """
    if store is None:
        return None
    try:
        url = store.conf[store.backend_group].remote_glance_peer_url or (
            getattr(store.conf, 'worker_self_reference_url', None))
    except Exception:
        return None
    return target_of(url) if isinstance(url, str) and url else None


def _signed(response, secret, request_auth, body):
    """*response* with its ANSWER_HEADER (of its body too when *body*)."""
    if 'Content-Length' not in response.headers and isinstance(
            response.app_iter, list):
        # Signed as the client sees it (the server would add it).
        response.content_length = len(response.body)
    response.headers[ANSWER_HEADER] = answer_mac(
        secret, request_auth, response.status_int, response.headers,
        response.body if body else None)
    return response


def _not_found():
    return webob.Response(status=404, content_type='text/plain',
                          body=b'image not held here\n')


def _json(raw):
    return webob.Response(status=200, content_type='application/json',
                          charset='utf-8', body=json.dumps(raw).encode())


def cache_view(cache):
    """This node's entries and stats, as ``glance-remote cache list``
    and ``stats`` show them.
    """
    return {'entries': [{'image_id': e.image_id, 'size': e.size,
                         'state': e.state, 'pinned': bool(e.pinned),
                         'last_access': e.last_access}
                        for e in reversed(cache.entries())],
            'stats': cache.stats()}


def _small_answer(store, match):
    """The answer to a request for a record or a cache view."""
    cache = getattr(store, 'cache', None)
    if match.re is _VIEW_PATH:
        if cache is None:
            return _not_found()
        if match['verify']:
            return _verify_once(cache)
        return _cache_view(cache_view, cache)
    if match['what'] == 'central-record':
        return _central_record(store, match['id'])
    if cache is None:
        return _not_found()
    return _held_record(cache, match['id'])


def _verify_once(cache):
    """One verify at a time on this node, whoever asks (a replayed request
    cannot pile them up).
    """
    try:
        lock = cache.lock('site-verify', 'lock')
    except exceptions.CacheError as e:
        LOG.warning('peer cache verify: %s', e)
        return webob.Response(status=503, content_type='text/plain',
                              body=b'cache cannot be read now\n')
    try:
        if not lock.try_lock():
            return webob.Response(status=409, content_type='text/plain',
                                  body=b'a verify runs on this node now\n')
        return _cache_view(cache_verify, cache)
    finally:
        lock.close()


def cache_verify(cache):
    """This node's ``glance-remote cache verify`` report (without fix:
    removing is done on the node itself).
    """
    return {'report': [
        {'image_id': image_id, 'problem': problem,
         'unchecked': isinstance(problem, cache_module.Unchecked)}
        for image_id, problem in cache.verify()]}


def _cache_view(view, cache):
    try:
        return _json(view(cache))
    except exceptions.CacheError as e:
        LOG.warning('peer cache view: %s', e)
        return webob.Response(status=503, content_type='text/plain',
                              body=b'cache cannot be read now\n')


def _held_record(cache, image_id):
    """Central's record of an image this node holds complete or fills
    now (what a node of the site needs to read it from here while
    central is cut); 404 otherwise.
    """
    try:
        record = cache.stored_record(image_id)
        held = record is not None and (
            os.path.exists(cache.data_path(image_id)) or
            cache.fill_locked(image_id))
    except exceptions.CacheError:
        held = False
    return _json(record) if held else _not_found()


def _central_record(store, image_id):
    """Central's record of an image as this node knows it (its memo, else
    one GET to central): the site asks central about an image through one
    node (SiteSource.central_record). Never relayed further, so differing
    views of the site cannot make a loop.
    """
    central = getattr(store, 'central', None)
    if central is None:
        return _not_found()
    try:
        record = central.record(image_id, relay=False)
        age = central.record_age(image_id)
    except exceptions.UpstreamNotActive:
        return webob.Response(status=404, content_type='text/plain',
                              headers={STATE_HEADER: 'not-active'},
                              body=b'central image not active\n')
    except exceptions.UpstreamNotFound:
        return webob.Response(status=404, content_type='text/plain',
                              headers={STATE_HEADER: 'unknown'},
                              body=b'central has no such image\n')
    except exceptions.UpstreamError as e:
        LOG.info('peer record request for image %s: %s', image_id, e)
        return webob.Response(status=503, content_type='text/plain',
                              body=b'central cannot be asked now\n')
    return _json({'record': record.raw, 'age': age})


def _open_partial(cache, image_id):
    for partial in (True, False):
        try:
            return os.open(cache.data_path(image_id, partial), os.O_RDONLY)
        except OSError:
            continue
    return None


def _fill_running(cache, image_id):
    """Whether a process of this node holds the image's fill lock."""
    try:
        return cache.fill_locked(image_id)
    except exceptions.CacheError:
        return False


def _release(steps):
    for step in steps:
        try:
            step()
        except Exception:
            LOG.exception('peer read: releasing')


def filter_factory(global_conf, **local_conf):
    """Paste entry point: ``paste.filter_factory =
    glance_store_remote.peers:filter_factory``.
    """
    def peer_filter(app):
        return PeerFilter(app)
    return peer_filter


# -- client side -------------------------------------------------------------


class _Pool:
    """urllib3 pools of a process (connections must not cross a fork), one
    per CA bundle. TLS peers are always verified: with *ca_file*, against
    it, else against the system's CAs.
    """

    def __init__(self):
        self._pid = None
        self._pools = {}
        self._lock = threading.Lock()

    def get(self, ca_file=None):
        with self._lock:
            if self._pid != os.getpid():
                self._pools = {}
                self._pid = os.getpid()
            pool = self._pools.get(ca_file)
            if pool is None:
                pool = self._pools[ca_file] = urllib3.PoolManager(
                    num_pools=16, maxsize=8, cert_reqs='CERT_REQUIRED',
                    ca_certs=ca_file)
            return pool


_POOL = _Pool()


class PeerUnreachable(exceptions.RemoteGlanceError):
    """A peer could not be asked (down, or not answering as a peer)."""

    def __init__(self, url, why):
        super().__init__('peer %s cannot be asked: %s' % (url, why))


class Peer:
    """Read access to one other node of the site.

    :param backend: the backend group name (the same on every node)
    :param url: the node's peer URL
    :param secret: the site's remote_glance_peer_secret
    :param timeout: seconds a read may wait for a byte
    :param ca_file: CA bundle that signs https peer URLs (None: the
        system's)
    """

    def __init__(self, backend, url, secret, chunk_size, timeout,
                 ca_file=None):
        self.backend = backend
        self.url = url.rstrip('/')
        self._secret = secret
        self.chunk_size = chunk_size
        self.timeout = timeout
        self._ca_file = ca_file

    def __repr__(self):
        return '<Peer %s>' % self.url

    def _request(self, method, path, headers=None, read_timeout=None):
        """(the answer, not read yet, the request's signature)."""
        headers = dict(headers or {})
        auth = headers[AUTH_HEADER] = auth_header(
            self._secret, method, path, self.url, headers.get('Range'))
        return _POOL.get(self._ca_file).request(
            method, self.url + path, headers=headers, preload_content=False,
            retries=False, redirect=False,
            timeout=urllib3.Timeout(connect=CONNECT_TIMEOUT,
                                    read=read_timeout or self.timeout)), auth

    def _signed_by_site(self, resp, auth, path, body=None):
        """Whether the site's key signed *resp* (its status and headers,
        and *body* if given) as the answer to the request signed *auth*;
        logged when not.
        """
        expected = answer_mac(self._secret, auth, resp.status, resp.headers,
                              body)
        if hmac.compare_digest(expected,
                               resp.headers.get(ANSWER_HEADER, '')):
            return True
        LOG.error('peer %s: an answer not signed by the site (HTTP %d to '
                  '%s); ignored', self.url, resp.status, path)
        return False

    def state(self, image_id):
        """'complete', 'filling' or None (not held, not reachable, or an
        answer the site did not sign).
        """
        path = peer_path(self.backend, image_id)
        try:
            resp, auth = self._request('HEAD', path)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            LOG.debug('peer %s not reachable: %s', self.url, e)
            return None
        try:
            if resp.status != 200 or not self._signed_by_site(resp, auth,
                                                              path):
                return None
            return resp.headers.get(STATE_HEADER)
        finally:
            resp.release_conn()

    def _ask(self, path, read_timeout=None, limit=MAX_ANSWER_BYTES):
        """GET a record or a view: (status, state header, body), once the
        answer's signature checks out.

        :raises PeerUnreachable: not asked, not read whole, too large, or
            not signed by the site (a forged or altered answer)
        """
        try:
            resp, auth = self._request('GET', path,
                                       read_timeout=read_timeout)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise PeerUnreachable(self.url, e) from None
        try:
            body = resp.read(limit + 1)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            resp.close()
            raise PeerUnreachable(self.url, e) from None
        finally:
            resp.release_conn()
        if len(body) > limit:
            raise PeerUnreachable(self.url, 'answer larger than %d bytes'
                                  % limit)
        if resp.status == 403:
            raise PeerUnreachable(self.url, 'HTTP 403: the peer refused our '
                                  'signature (is remote_glance_peer_secret '
                                  'the same on every node?)')
        if not self._signed_by_site(resp, auth, path, body):
            raise PeerUnreachable(self.url, 'answer not signed by the site')
        return resp.status, resp.headers.get(STATE_HEADER), body

    def held_record(self, image_id):
        """Central's record of an image the peer holds or fills, else None
        (not held, the peer cannot be asked, or its answer is not right).
        """
        try:
            status, _, body = self._ask(
                peer_path(self.backend, image_id) + '/record')
            if status != 200:
                return None
            return upstream.ImageRecord.from_body(self.backend, image_id,
                                                  body)
        except (PeerUnreachable, exceptions.UpstreamError) as e:
            LOG.info('peer %s: no record of image %s: %s', self.url,
                     image_id, e)
            return None

    def central_record(self, image_id):
        """Central's record of *image_id* asked through the peer, and its
        age there in seconds.

        :raises UpstreamNotFound: central has no such image (remembered)
        :raises UpstreamNotActive: central has it, not active
        :raises PeerUnreachable: the peer could not be asked, or could not
            ask central
        """
        status, state, body = self._ask(
            peer_path(self.backend, image_id) + '/central-record')
        if status == 404 and state == 'unknown':
            raise exceptions.UpstreamNotFound(
                self.backend, 'central has no image %s' % image_id)
        if status == 404 and state == 'not-active':
            raise exceptions.UpstreamNotActive(
                self.backend, 'central image %s is not active' % image_id)
        if status != 200:
            raise PeerUnreachable(self.url, 'HTTP %d' % status)
        try:
            answer = json.loads(body)
            age = float(answer['age'])
            record = upstream.ImageRecord.from_body(
                self.backend, image_id, json.dumps(answer['record']))
        except (ValueError, KeyError, TypeError,
                exceptions.UpstreamError) as e:
            raise PeerUnreachable(self.url, 'a malformed record: %s' % e)
        return record, max(0.0, age)

    def cache_view(self, verify=False):
        """The peer's entries and stats (see cache_view()) or, with
        *verify*, its verify report (cache_verify(): it re-hashes every
        complete entry, so this waits as long as that takes).

        :raises PeerUnreachable: the peer could not be asked
        """
        status, _, body = self._ask(
            cache_view_path(self.backend, verify),
            read_timeout=VERIFY_TIMEOUT if verify else None,
            limit=MAX_VIEW_BYTES)
        if status != 200:
            raise PeerUnreachable(self.url, 'HTTP %d: %s' % (
                status, body[:200].decode('utf-8', 'replace').strip()))
        try:
            view = json.loads(body)
        except ValueError:
            view = None
        if not isinstance(view, dict):
            raise PeerUnreachable(self.url, 'not a view')
        return view

    def open_data(self, record, offset=0, length=None):
        """*length* bytes of the image from *offset*, as
        upstream.Central.open_data: a streams.Chunks of exactly that many
        bytes, or an IOError (UpstreamStreamError) part way; it closes the
        response even if never started.

        :raises UpstreamUnavailable: the peer cannot serve (before any byte)
        """
        size = record.size
        if length is None:
            length = size - offset
        if not length:
            return streams.empty()
        headers = {}
        if (offset, length) != (0, size):
            headers['Range'] = 'bytes=%d-%d' % (offset, offset + length - 1)
        resp = self._get_data(record, length, headers,
                              lambda resp: resp.status == (
                                  206 if headers else 200))
        return streams.Chunks(self._stream(resp, record.id, length),
                              resp.release_conn,
                              name='peer read of image %s' % record.id)

    def _get_data(self, record, length, headers, acceptable):
        """The peer's answer to a GET of image data, once its status, its
        length and the site's signature check out and *acceptable(resp)*.

        :raises UpstreamUnavailable: not asked, or answered otherwise
        """
        path = peer_path(self.backend, record.id)
        try:
            resp, auth = self._request('GET', path, headers)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            raise exceptions.UpstreamUnavailable(
                self.backend, 'peer %s cannot serve image %s' % (
                    self.url, record.id), detail=str(e)) from None
        if not (acceptable(resp) and
                resp.headers.get('Content-Length') == str(length) and
                self._signed_by_site(resp, auth, path)):
            status = resp.status
            resp.release_conn()
            raise exceptions.UpstreamUnavailable(
                self.backend, 'peer %s answered HTTP %d for image %s' % (
                    self.url, status, record.id))
        return resp

    def open_verified_range(self, record, offset, length):
        """A range of the peer's complete, verified entry, and the SHA-256
        of its bytes as the peer signed it: (stream, hex digest). The
        caller releases the last byte only when the bytes match
        (delivery.peer_range).

        :raises UpstreamUnavailable: the peer does not hold the image
            complete, or cannot serve (before any byte)
        """
        headers = {'Range': 'bytes=%d-%d' % (offset, offset + length - 1),
                   DIGEST_HEADER: 'sha256'}
        resp = self._get_data(
            record, length, headers, lambda resp: (
                resp.status == 206 and
                resp.headers.get(STATE_HEADER) == 'complete' and
                re.match(r'^[0-9a-f]{64}\Z',
                         resp.headers.get(DIGEST_HEADER) or '')))
        digest = resp.headers[DIGEST_HEADER]
        return streams.Chunks(self._stream(resp, record.id, length),
                              resp.release_conn,
                              name='peer read of image %s' % record.id), digest

    def _stream(self, resp, image_id, length):
        done = 0
        try:
            while done < length:
                try:
                    chunk = resp.read(min(self.chunk_size, length - done))
                except (urllib3.exceptions.HTTPError, OSError,
                        ValueError) as e:
                    raise exceptions.UpstreamStreamError(
                        self.backend, 'image %s: peer %s failed after %d of '
                        '%d bytes: %s' % (image_id, self.url, done, length,
                                          e)) from None
                if not chunk:
                    raise exceptions.UpstreamStreamError(
                        self.backend, 'image %s: peer %s ended after %d of '
                        '%d bytes' % (image_id, self.url, done, length))
                done += len(chunk)
                yield chunk
        finally:
            if done < length:
                # Not reusable: drop the connection.
                resp.close()
