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

"""The server side of peer reads: the paste filter a node answers with.

``PeerFilter`` (paste ``[filter:remote-glance-peer]``, placed first in the
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

A request is served only when signed for this node (signing.py) and when
it reaches the node directly: one that names another host than the node's
peer URL, or that a proxy or balancer forwarded (``X-Forwarded-For``,
``Forwarded``, ``Via``...), is refused, so the peer path is never an API
of the site's VIP. Anything refused is answered 403 here and never
reaches Glance; refusals are logged at most once per
REFUSAL_LOG_INTERVAL, with their count. Every answer is signed.
"""

import hashlib
import json
import logging
import os
import re
import threading
import time
import urllib.parse

import webob

from glance_store_remote import cache as cache_module
from glance_store_remote import exceptions
from glance_store_remote import following
from glance_store_remote import locations
from glance_store_remote.peers import signing
from glance_store_remote import streams

LOG = logging.getLogger(__name__)

# Headers a proxy or balancer adds: a peer request carrying one did not
# come straight from a node of the site.
PROXY_HEADERS = ('X-Forwarded-For', 'X-Forwarded-Host', 'X-Forwarded-Proto',
                 'X-Real-IP', 'Forwarded', 'Via')
# Seconds between two warnings about refused peer requests (each says how
# many were refused since the last).
REFUSAL_LOG_INTERVAL = 60

_PATH = re.compile(r'^/remote-glance/peer/(?P<backend>%s)/(?P<id>%s)'
                   r'(?:/(?P<what>record|central-record))?\Z' % (
                       locations.BACKEND, locations.IMAGE_ID))
# The node's cache as a whole: ``glance-remote cache list/stats --site``.
_VIEW_PATH = re.compile(r'^/remote-glance/peer/(?P<backend>%s)/cache'
                        r'(?P<verify>/verify)?\Z' % locations.BACKEND)
_RANGE = re.compile(r'^bytes=([0-9]+)-([0-9]*)\Z')


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
        if not path.startswith(signing.PREFIX):
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
        auth = request.headers.get(signing.AUTH_HEADER)
        if not signing.check_auth(secret, request.method, own_url,
                                  request.path_info,
                                  request.headers.get('Range'), auth,
                                  first_use=self._nonces_of(store).first_use):
            return self._refuse('no valid signature, or a replay', request)
        if match.re is _PATH and not match['what']:
            cache = store.cache
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
        cache = store.cache
        folder = None
        if cache is not None:
            folder = cache.peer_nonce_dir
        with self._nonces_lock:
            nonces = self._nonces.get(folder)
            if nonces is None:
                nonces = self._nonces[folder] = signing.Nonces(folder)
            return nonces

    def _serve(self, request, cache, image_id):
        opened = None
        try:
            # A HEAD only asks whether the entry is here: its place in the
            # LRU order kept. A GET refreshes it, but the read is the asking
            # node's, which counts it (a miss or a peer read): no hit here,
            # so that the site's requests sum to its clients' reads.
            opened = cache.open_complete(image_id,
                                         hit=request.method != 'HEAD',
                                         counted=False)
        except exceptions.CacheError:
            opened = None
        if opened is not None:
            fd, lock, record = opened
            release = [lock.close] if lock is not None else []
            state = 'complete'
        else:
            fd = _open_fill_file(cache, image_id)
            if fd is None:
                return _not_found()
            release = []
            state = 'filling'
            try:
                record = cache.stored_record(image_id)
                running = record is not None and following.fill_running(
                    cache, image_id)
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
        headers = {signing.STATE_HEADER: state,
                   'Content-Length': str(end - start),
                   'Content-Type': 'application/octet-stream'}
        if status == 206:
            headers['Content-Range'] = 'bytes %d-%d/%d' % (start, end - 1,
                                                           size)
        if request.method == 'HEAD':
            _release(release)
            return webob.Response(status=status, headers=headers)
        if request.headers.get(signing.DIGEST_HEADER) == 'sha256':
            if state != 'complete':
                # Nobody verified a partial file's bytes: no digest for
                # them (the asking node goes elsewhere).
                _release(release)
                return _not_found()
            try:
                headers[signing.DIGEST_HEADER] = self._digest(fd, start, end)
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
        until the fill writing it stops (following.follow_unverified): then
        the answer ends short.
        """
        pos = yield from following.follow_unverified(
            cache, image_id, fd, pos, end, self.chunk_size, growing)
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
    return signing.target_of(url) if isinstance(url, str) and url else None


def _signed(response, secret, request_auth, body):
    """*response* with its ANSWER_HEADER (of its body too when *body*)."""
    if 'Content-Length' not in response.headers and isinstance(
            response.app_iter, list):
        # Signed as the client sees it (the server would add it).
        response.content_length = len(response.body)
    response.headers[signing.ANSWER_HEADER] = signing.answer_mac(
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
    cache = store.cache
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
            cache.holds_complete(image_id) or cache.fill_locked(image_id))
    except exceptions.CacheError:
        held = False
    return _json(record) if held else _not_found()


def _central_record(store, image_id):
    """Central's record of an image as this node knows it (its memo, else
    one GET to central): the site asks central about an image through one
    node (SiteSource.central_record). Never relayed further, so differing
    views of the site cannot make a loop.
    """
    central = store.central
    if central is None:
        return _not_found()
    try:
        record = central.record(image_id, relay=False)
        age = central.record_age(image_id)
    except exceptions.UpstreamNotActive:
        return webob.Response(status=404, content_type='text/plain',
                              headers={signing.STATE_HEADER: 'not-active'},
                              body=b'central image not active\n')
    except exceptions.UpstreamNotFound:
        return webob.Response(status=404, content_type='text/plain',
                              headers={signing.STATE_HEADER: 'unknown'},
                              body=b'central has no such image\n')
    except exceptions.UpstreamError as e:
        LOG.info('peer record request for image %s: %s', image_id, e)
        return webob.Response(status=503, content_type='text/plain',
                              body=b'central cannot be asked now\n')
    return _json({'record': record.raw, 'age': age})


def _open_fill_file(cache, image_id):
    """The file a fill of the image writes or wrote (the cache's
    open_fill_file), or None when it cannot be opened.
    """
    try:
        return cache.open_fill_file(image_id)
    except OSError:
        return None


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
