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

"""The client side of peer reads: ``Peer``, a data source with the
contract of upstream.Central.open_data, and the records and views a node
asks of another node of its site (server.py answers them); ``cache_views``
asks every node of a site for its view at once.

Every request is signed for the node it goes to, and every answer is
checked against the site's signature before it is used (signing.py).
Where a fill reads from, and how the site asks central once, is
site_source.py's.
"""

import concurrent.futures
import hmac
import json
import logging
import os
import re
import threading

import urllib3

from glance_store_remote import exceptions
from glance_store_remote.peers import signing
from glance_store_remote import streams
from glance_store_remote import upstream

LOG = logging.getLogger(__name__)

CONNECT_TIMEOUT = 3
# Seconds a site-wide cache verify waits for a node's report.
VERIFY_TIMEOUT = 3600
# Bytes of a signed answer read at most: a record (as central's), a view.
MAX_ANSWER_BYTES = 1024 * 1024 + 1024
MAX_VIEW_BYTES = 64 * 1024 * 1024


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
        auth = headers[signing.AUTH_HEADER] = signing.auth_header(
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
        expected = signing.answer_mac(self._secret, auth, resp.status,
                                      resp.headers, body)
        if hmac.compare_digest(expected,
                               resp.headers.get(signing.ANSWER_HEADER, '')):
            return True
        LOG.error('peer %s: an answer not signed by the site (HTTP %d to '
                  '%s); ignored', self.url, resp.status, path)
        return False

    def state(self, image_id):
        """'complete', 'filling' or None (not held, not reachable, or an
        answer the site did not sign).
        """
        path = signing.peer_path(self.backend, image_id)
        try:
            resp, auth = self._request('HEAD', path)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            LOG.debug('peer %s not reachable: %s', self.url, e)
            return None
        try:
            if resp.status != 200 or not self._signed_by_site(resp, auth,
                                                              path):
                return None
            return resp.headers.get(signing.STATE_HEADER)
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
        return resp.status, resp.headers.get(signing.STATE_HEADER), body

    def held_record(self, image_id):
        """Central's record of an image the peer holds or fills, else None
        (not held, the peer cannot be asked, or its answer is not right).
        """
        try:
            status, _, body = self._ask(
                signing.peer_path(self.backend, image_id) + '/record')
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
            signing.peer_path(self.backend, image_id) + '/central-record')
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
            signing.cache_view_path(self.backend, verify),
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
        path = signing.peer_path(self.backend, record.id)
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
                   signing.DIGEST_HEADER: 'sha256'}
        resp = self._get_data(
            record, length, headers, lambda resp: (
                resp.status == 206 and
                resp.headers.get(signing.STATE_HEADER) == 'complete' and
                re.match(r'^[0-9a-f]{64}\Z',
                         resp.headers.get(signing.DIGEST_HEADER) or '')))
        digest = resp.headers[signing.DIGEST_HEADER]
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


def cache_views(group, backend, urls, verify=False, on_unreachable=None,
                timeout=None):
    """{URL: the node's cache view (Peer.cache_view), or None} of every
    peer URL in *urls*, asked all at once (a thread each).

    Cost: one signed GET per node, the slowest answer's time (at most the
    connect timeout plus *timeout*, or the verify timeout with *verify*).

    :param group: the backend's options (remote_glance_peer_secret,
        remote_glance_chunk_size, timeout, remote_glance_peer_ca_file)
    :param on_unreachable: called as on_unreachable(url, PeerUnreachable)
        for each node that could not be asked (its view is then None)
    :param timeout: seconds a node's answer may take (None: the group's
        timeout, else 60)
    """
    def ask(url):
        peer = Peer(backend, url, group.remote_glance_peer_secret,
                    group.remote_glance_chunk_size,
                    timeout=timeout or group.timeout or 60,
                    ca_file=group.remote_glance_peer_ca_file)
        try:
            return peer.cache_view(verify=verify)
        except PeerUnreachable as e:
            if on_unreachable is not None:
                on_unreachable(url, e)
            return None
    urls = sorted(urls)
    if not urls:
        return {}
    with concurrent.futures.ThreadPoolExecutor(len(urls)) as pool:
        return dict(zip(urls, pool.map(ask, urls)))
