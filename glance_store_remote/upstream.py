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

"""Talking to central Glance: its image records and its image data.

This module owns the keystoneauth1 session to central, the translation of
every transport failure into this package's exceptions, and the protocol
checks that keep a lying or broken central from handing the edge anything it
did not ask for. It never sends anything but GET: the edge reads central and
never changes it.
"""

import collections
import http.client
import json
import logging
import re
import threading
import time
import urllib.parse

from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import loading as ks_loading
import urllib3.exceptions

from glance_store_remote import breaker as breaker_module
from glance_store_remote import exceptions
from glance_store_remote import streams

# A Glance image record is a few KiB; 128 properties of 255 characters stay
# far below this. Anything larger is not a record we will parse.
MAX_RECORD_BYTES = 1024 * 1024
# Seconds a record miss waits for another thread asking about the same
# image before it asks itself.
RECORD_WAIT = 30

# Same-origin redirects followed before giving up; a redirect to another
# origin is refused at once.
MAX_REDIRECTS = 3

# Records remembered in memory per backend, least recently used dropped.
RECORD_MEMO_SIZE = 1024

# Seconds between warnings that central serves no ranges (each worker
# learns it again every remote_glance_range_recheck seconds).
RANGE_WARNING_INTERVAL = 3600
# Seconds a cheap probe of central waits while the breaker is open (see
# breaker.py): a frozen central must not hold the request that probes.
PROBE_TIMEOUT = 1.0

LOG = logging.getLogger(__name__)

_USERINFO = re.compile(r'(//)[^/@\s]*@')


def redact(text):
    """Remove user information (``user:secret@``) from URLs inside *text*."""
    return _USERINFO.sub(r'\1***@', text)


def _origin(url):
    parts = urllib.parse.urlsplit(url)
    return parts.scheme, parts.hostname, parts.port


def check_range(backend, record, offset, length):
    """Refuse a read of *length* bytes from *offset* that central's image
    cannot serve, before anything is opened.

    :raises ValueError: a negative offset or length (the caller's bug)
    :raises exceptions.SizeMismatch: the range ends past central's size
    """
    if offset < 0 or length < 0:
        raise ValueError('range %d+%d of image %s is negative'
                         % (offset, length, record.id))
    if offset + length > record.size:
        raise exceptions.SizeMismatch(
            backend, 'image %s: bytes %d-%d were asked for, but central\'s '
            'image has %d bytes: the edge\'s record of this image does not '
            'match central\'s (size)' % (record.id, offset,
                                         offset + length - 1, record.size))


class ImageRecord:
    """The parts of central's image record the data path relies on.

    ``raw`` keeps the whole record as central sent it.
    """

    __slots__ = ('id', 'size', 'status', 'checksum', 'os_hash_algo',
                 'os_hash_value', 'raw')

    def __init__(self, raw):
        self.raw = raw
        self.id = raw['id']
        self.size = raw['size']
        self.status = raw['status']
        self.checksum = raw.get('checksum')
        self.os_hash_algo = raw.get('os_hash_algo')
        self.os_hash_value = raw.get('os_hash_value')

    @classmethod
    def from_body(cls, backend, image_id, body, any_status=False):
        """Parse and check a record body; raise UpstreamProtocolError if it
        is not the active image we asked for, or UpstreamNotFound if the
        image exists but has no data to read (unless *any_status*: then
        only the JSON and the ID are checked).
        """
        try:
            raw = json.loads(body)
        except ValueError:
            raise exceptions.UpstreamProtocolError(
                backend, 'central sent a record for image %s that is not '
                'JSON' % image_id)
        if not isinstance(raw, dict) or raw.get('id') != image_id:
            raise exceptions.UpstreamProtocolError(
                backend, 'central sent a record that is not image %s'
                % image_id)
        if any_status:
            return cls(dict(raw, size=raw.get('size'),
                            status=raw.get('status')))
        status = raw.get('status')
        if status != 'active':
            raise exceptions.UpstreamNotActive(
                backend, 'central image %s is %s, not active'
                % (image_id, status))
        size = raw.get('size')
        # Zero is a size: an active image may be empty.
        if type(size) is not int or size < 0:
            raise exceptions.UpstreamProtocolError(
                backend, 'central record of image %s has no valid size '
                '(%r)' % (image_id, size))
        return cls(raw)


class _Asking:
    """One thread's question to central about an image; the threads that
    ask the same meanwhile wait for its answer.
    """

    __slots__ = ('done', 'answer')

    def __init__(self):
        self.done = threading.Event()
        self.answer = None


def _fresh(error):
    """A copy of *error* without its traceback (which would keep the
    request's frames alive), to keep or hand to another thread.
    """
    clone = type(error).__new__(type(error))
    clone.args = error.args
    clone.__dict__.update(error.__dict__)
    return clone


def _given(answer):
    """*answer* returned, or raised as a fresh exception."""
    if isinstance(answer, exceptions.UpstreamError):
        raise _fresh(answer)
    return answer


class Central:
    """Read access to one central Glance, as one backend group sees it.

    Thread safe: one instance serves every request of a glance-api worker.
    """

    def __init__(self, backend, adapter, chunk_size, record_ttl,
                 breaker=None, clock=time.monotonic, range_recheck=3600,
                 record_relay=None):
        self.backend = backend
        self._adapter = adapter
        self.breaker = breaker or breaker_module.Breaker(0, 1)
        self.chunk_size = chunk_size
        self._record_ttl = record_ttl
        self._clock = clock
        self._memo = collections.OrderedDict()
        self._memo_lock = threading.Lock()
        # image ID -> Event set when the thread asking about it is done.
        self._asking = {}
        self._record_wait = RECORD_WAIT
        # callable(image_id, fetch) -> (ImageRecord, age): how a coordinated
        # site asks central about an image once (site_source.RecordRelay).
        self.record_relay = record_relay
        self._range_recheck = range_recheck
        # When central last refused (or ignored) a Range request; None
        # while it has served every range asked.
        self._ranges_refused_at = None
        self._range_warned_at = None
        # Central's versions document (see _answers), once central answered.
        self._versions_url = None

    @classmethod
    def from_conf(cls, conf, backend, breaker_state=None, record_relay=None,
                  own_breaker=False):
        """Build from the backend group's keystoneauth1 and driver options.

        *breaker_state* shares the circuit breaker (see breaker.py); by
        default it lives in this process. With *own_breaker*, the breaker
        never opens and shares nothing (the metrics' probe of central, which
        must not change the workers' breaker). *record_relay*: see record().

        No network call happens here: the first request authenticates.

        :raises keystoneauth1.exceptions.ClientException: bad auth options
        """
        group = conf[backend]
        auth = ks_loading.load_auth_from_conf_options(conf, backend)
        session = ks_loading.load_session_from_conf_options(
            conf, backend, auth=auth, app_name='glance-store-remote')
        adapter = ks_loading.load_adapter_from_conf_options(
            conf, backend, session=session)
        if own_breaker:
            breaker = breaker_module.Breaker(0, 0)
        else:
            breaker = breaker_module.Breaker(
                group.remote_glance_breaker_threshold,
                group.remote_glance_breaker_reset, state=breaker_state,
                probe_interval=group.remote_glance_breaker_probe_interval)
        return cls(backend, adapter, group.remote_glance_chunk_size,
                   group.remote_glance_record_ttl, breaker=breaker,
                   range_recheck=group.remote_glance_range_recheck,
                   record_relay=record_relay)

    def probe(self):
        """List one image at central to prove it answers and accepts our
        credentials; return the (redacted) endpoint used.

        :raises UpstreamUnavailable, UpstreamProtocolError
        """
        self._get('/v2/images?limit=1', 200, '(list)').close()
        try:
            return redact(self._adapter.get_endpoint())
        except ks_exc.ClientException as e:
            raise self._unavailable(e) from None

    # -- records ---------------------------------------------------------

    def record(self, image_id, request_id=None, relay=True):
        """Central's record of *image_id*, reused for ``record_ttl`` seconds
        (an unknown ID too). Concurrent misses of one process share one
        answer, a failure included; in a coordinated site
        (``record_relay``, site_source.RecordRelay) a miss asks the one node of
        the site that answers for the image, unless *relay* is False (that
        node's own requests).

        Cost: one GET to central (or to a peer) on a miss; a dict lookup
        otherwise.

        :raises UpstreamNotFound, UpstreamUnavailable, UpstreamProtocolError
        """
        with self._memo_lock:
            found = self._memo.get(image_id)
            if found is not None and (
                    self._clock() - found[0] < self._record_ttl):
                self._memo.move_to_end(image_id)
                return _given(found[1])
            asking = self._asking.get(image_id)
            leader = asking is None
            if leader:
                asking = self._asking[image_id] = _Asking()
        if not leader:
            if asking.done.wait(self._record_wait):
                return _given(asking.answer)
            # The asker hangs: ask too, on our own.
            asking = _Asking()
        try:
            fetched_at = self._clock()
            try:
                if relay and self.record_relay is not None:
                    answer, age = self.record_relay(image_id,
                                                    self.fetch_record)
                    fetched_at -= age
                else:
                    answer = self.fetch_record(image_id,
                                               request_id=request_id)
            except exceptions.UpstreamError as e:
                answer = _fresh(e)
            # Only a record, or an ID central does not know, is remembered
            # (not an image that is not active yet, nor a failure).
            if not isinstance(answer, exceptions.UpstreamError) or (
                    type(answer) is exceptions.UpstreamNotFound):
                with self._memo_lock:
                    self._memo[image_id] = (fetched_at, answer)
                    self._memo.move_to_end(image_id)
                    while len(self._memo) > RECORD_MEMO_SIZE:
                        self._memo.popitem(last=False)
        except BaseException as e:
            answer = exceptions.UpstreamUnavailable(
                self.backend, 'reading about image %s failed' % image_id,
                detail='%s: %s' % (type(e).__name__, redact(str(e))))
            raise
        finally:
            asking.answer = answer
            with self._memo_lock:
                if self._asking.get(image_id) is asking:
                    del self._asking[image_id]
            asking.done.set()
        return _given(answer)

    def record_age(self, image_id):
        """Seconds since the remembered answer about *image_id* was
        fetched (0 when none is remembered).
        """
        with self._memo_lock:
            found = self._memo.get(image_id)
        return max(0.0, self._clock() - found[0]) if found else 0.0

    def forget(self, image_id):
        """Drop the remembered record of *image_id*, if any."""
        with self._memo_lock:
            self._memo.pop(image_id, None)

    def fetch_record(self, image_id, request_id=None, any_status=False):
        """GET central's record of *image_id*, bypassing the memo; with
        *any_status*, also of images that are not active.
        """
        resp = self._get('/v2/images/%s' % image_id, 200, image_id,
                         stream=True, request_id=request_id)
        return ImageRecord.from_body(self.backend, image_id,
                                     self._read_small(resp, image_id),
                                     any_status=any_status)

    def members(self, image_id):
        """Central's members of an image: {project: status}."""
        resp = self._get('/v2/images/%s/members' % image_id, 200, image_id,
                         stream=True)
        try:
            return {m['member_id']: m['status'] for m in json.loads(
                self._read_small(resp, image_id))['members']}
        except (ValueError, KeyError, TypeError):
            raise exceptions.UpstreamProtocolError(
                self.backend, 'central sent a malformed member list of '
                'image %s' % image_id)

    def list_images(self, **filters):
        """IDs of central's active images matching Glance list *filters*
        (visibility, tag, property=value), following pagination.
        """
        query = urllib.parse.urlencode(dict(filters, status='active',
                                            limit=100))
        path = '/v2/images?%s' % query
        while path:
            resp = self._get(path, 200, '(list)', stream=True)
            try:
                page = json.loads(self._read_small(resp, '(list)'))
                ids = [image['id'] for image in page['images']]
            except (ValueError, KeyError, TypeError):
                raise exceptions.UpstreamProtocolError(
                    self.backend, 'central sent a malformed image list')
            yield from ids
            path = page.get('next')

    def member_status(self, image_id, member_id):
        """Central's membership status of project *member_id* in image
        *image_id* ('accepted', 'pending', 'rejected'), or None.

        :raises UpstreamUnavailable, UpstreamProtocolError
        """
        try:
            # A project ID comes from the request context: quoted, it can
            # only ever name a member.
            resp = self._get('/v2/images/%s/members/%s' % (
                image_id, urllib.parse.quote(member_id, safe='')),
                200, image_id, stream=True)
        except exceptions.UpstreamNotFound:
            return None
        try:
            member = json.loads(self._read_small(resp, image_id))
            return member.get('status')
        except (ValueError, AttributeError):
            raise exceptions.UpstreamProtocolError(
                self.backend, 'central sent a malformed membership of image '
                '%s' % image_id)

    def _read_small(self, resp, image_id):
        """The body of a small JSON answer, refused past MAX_RECORD_BYTES."""
        try:
            body = resp.raw.read(MAX_RECORD_BYTES + 1, decode_content=True)
        except (urllib3.exceptions.HTTPError, OSError) as e:
            # The transport's words may name central's endpoint: log only.
            raise exceptions.UpstreamUnavailable(
                self.backend, 'reading about image %s failed' % image_id,
                detail=redact(str(e)))
        finally:
            resp.close()
        if len(body) > MAX_RECORD_BYTES:
            raise exceptions.UpstreamProtocolError(
                self.backend, 'central sent an answer about image %s larger '
                'than %d bytes' % (image_id, MAX_RECORD_BYTES))
        return body

    # -- data ------------------------------------------------------------

    @property
    def serves_ranges(self):
        """Whether a Range request is worth sending: False for
        ``remote_glance_range_recheck`` seconds after central refused one.
        """
        refused_at = self._ranges_refused_at
        return (refused_at is None or
                self._clock() - refused_at >= self._range_recheck)

    def open_data(self, record, offset=0, length=None, request_id=None,
                  on_skip=None, skip_to_offset=True):
        """Start reading *length* bytes of the image from *offset*.

        Sends a Range request unless the whole image is asked for, and checks
        that central answers exactly that range before any byte is handed
        out. A central whose store cannot read from an offset (Glance
        answers 400, see serves_ranges) or that ignores the Range (200) is
        read from byte 0 instead, and the bytes before *offset* are read
        and dropped, each batch reported to *on_skip(count)* (a fill
        uses it to show it is alive while it skips). With
        *skip_to_offset* False, such a read returns None instead: the
        caller has a better source than reading from byte 0.

        Returns a streams.Chunks of chunks of at most ``chunk_size`` bytes
        that yields exactly *length* bytes in all, or raises
        UpstreamStreamError (an IOError) part way; it closes the response
        even if it is never started. Memory: one chunk. No bytes (a zero-byte
        image): no request.

        :raises UpstreamNotFound, UpstreamUnavailable, UpstreamProtocolError
            (exceptions.SizeMismatch: the range ends past central's image)
        :raises ValueError: a negative offset or length
        """
        size = record.size
        if length is None:
            length = size - offset
        check_range(self.backend, record, offset, length)
        if not length:
            return streams.empty()
        last = offset + length - 1
        url = '/v2/images/%s/file' % record.id
        resp = None
        ranged = (offset, length) != (0, size) and self.serves_ranges
        if ranged:
            resp = self._get(url, (206, 200, 400), record.id,
                             headers={'Range': 'bytes=%d-%d' % (offset, last)},
                             stream=True, request_id=request_id)
            if resp.status_code == 400:
                # Glance's answer when the image's store cannot read from
                # an offset (StoreRandomGetNotSupported).
                resp.close()
                resp = None
                self._learn_no_ranges(record.id, 'answered HTTP 400 to')
        if resp is None and (offset, length) != (0, size) and (
                not skip_to_offset):
            return None
        if resp is None:
            resp = self._get(url, (200,), record.id, stream=True,
                             request_id=request_id)
        try:
            self._check_data_headers(resp, record, offset, last, length,
                                     whole=resp.status_code == 200)
        except Exception:
            resp.close()
            raise
        skip = 0
        if resp.status_code == 200 and (offset, length) != (0, size):
            if ranged:
                # A whole image where a range was asked: a proxy, or a
                # server, ignoring Range.
                self._learn_no_ranges(record.id, 'ignored (HTTP 200)')
            if not skip_to_offset:
                resp.close()
                return None
            skip = offset
        return streams.Chunks(self._stream(resp, record.id, length, skip,
                                           on_skip),
                              resp.close, name='image %s' % record.id)

    def _learn_no_ranges(self, image_id, answer):
        """Remember that central serves whole images only; say so once per
        RANGE_WARNING_INTERVAL.
        """
        now = self._clock()
        self._ranges_refused_at = now
        warned = self._range_warned_at
        log = LOG.debug
        if warned is None or now - warned >= RANGE_WARNING_INTERVAL:
            self._range_warned_at = now
            log = LOG.warning
        log('remote-glance backend %r: central %s a Range request for image '
            '%s: it serves whole images only (a store that cannot read from '
            'an offset, such as rbd, swift, s3 or http). Reads that start '
            'past byte 0 read the image from the start and skip to the '
            'offset; ranges are tried again in %d s',
            self.backend, answer, image_id, self._range_recheck)

    def _check_data_headers(self, resp, record, offset, last, length, whole):
        """Check that *resp* declares what was asked: the whole image
        (*whole*), else exactly bytes *offset*..*last*.
        """
        declared = resp.headers.get('Content-Length')
        expected_length = record.size if whole else length
        if declared is not None and declared != str(expected_length):
            raise exceptions.UpstreamProtocolError(
                self.backend, 'central declared %s bytes for image %s where '
                '%d were expected' % (declared, record.id, expected_length))
        if not whole:
            expected = 'bytes %d-%d/%d' % (offset, last, record.size)
            got = resp.headers.get('Content-Range')
            if got != expected:
                raise exceptions.UpstreamProtocolError(
                    self.backend, 'central answered range %r for image %s '
                    'where %r was asked' % (got, record.id, expected))

    def _stream(self, resp, image_id, length, skip=0, on_skip=None):
        """*length* bytes of the body of *resp* after dropping its first
        *skip*; the Chunks around it closes *resp*.
        """
        read = resp.raw.read
        chunk_size = self.chunk_size
        total = skip + length
        done = 0

        def next_chunk():
            try:
                chunk = read(min(chunk_size, (skip if done < skip
                                              else total) - done))
            except (urllib3.exceptions.HTTPError, http.client.HTTPException,
                    OSError, ValueError) as e:
                # urllib3 wraps most failures in HTTPError, but a broken or
                # closed body also raises http.client errors or ValueError:
                # each ends the stream from central, and Glance must see an
                # IOError.
                self._failed()
                raise exceptions.UpstreamStreamError(
                    self.backend, 'image %s: stream from central failed '
                    'after %s: %s' % (image_id, self._progress(done, total,
                                                               skip),
                                      redact(str(e)))) from None
            if not chunk:
                raise exceptions.UpstreamStreamError(
                    self.backend, 'image %s: central ended the stream '
                    'after %s' % (image_id,
                                  self._progress(done, total, skip)))
            return chunk

        while done < skip:
            # Before the offset asked (central serves no ranges): dropped.
            dropped = len(next_chunk())
            done += dropped
            if on_skip is not None:
                on_skip(dropped)
        while done < total:
            chunk = next_chunk()
            done += len(chunk)
            yield chunk

    @staticmethod
    def _progress(done, total, skip):
        if not skip:
            return '%d of %d bytes' % (done, total)
        return ('%d of %d bytes, reading from byte 0 to skip the first %d'
                % (max(done - skip, 0), total - skip, skip))

    # -- HTTP --------------------------------------------------------------

    def _get(self, url, expected, image_id, headers=None, stream=False,
             request_id=None):
        """GET *url* from central, following same-origin redirects only, and
        return the response once its status is *expected* (a status or a
        tuple of them).
        """
        if isinstance(expected, int):
            expected = (expected,)
        for _ in range(MAX_REDIRECTS + 1):
            resp = self._send(url, headers, stream, request_id)
            if not resp.is_redirect:
                break
            target = urllib.parse.urljoin(resp.url, resp.headers['Location'])
            resp.close()
            if _origin(target) != _origin(resp.url):
                scheme, host, port = _origin(target)
                raise exceptions.UpstreamProtocolError(
                    self.backend, 'central redirected image %s to another '
                    'origin (%s://%s:%s); refused'
                    % (image_id, scheme, host, port))
            url = target
        else:
            raise exceptions.UpstreamProtocolError(
                self.backend, 'central redirected image %s more than %d '
                'times' % (image_id, MAX_REDIRECTS))
        if resp.status_code not in expected:
            resp.close()
            raise self._status_error(resp.status_code, expected[0], image_id)
        return resp

    def _send(self, url, headers, stream, request_id):
        if not self.breaker.allow():
            if not (self.breaker.cheap_probe_due() and self._answers()):
                _, failures, remaining = self.breaker.state()
                raise exceptions.UpstreamUnavailable(
                    self.backend, 'central is unavailable: the circuit '
                    'breaker is open after %d consecutive failures; next '
                    'try in %.0f s' % (failures, remaining))
            # Half-open: this one request is the trial. Its success closes
            # the breaker; its failure opens it again at once (the failures
            # are still counted), so a central whose API answers while its
            # data path hangs costs one request per probe interval.
            LOG.info('remote-glance backend %r: central answers again; one '
                     'request tries it', self.backend)
        try:
            resp = self._adapter.get(
                url, headers=headers, stream=stream, raise_exc=False,
                redirect=False, global_request_id=request_id)
        except ks_exc.ClientException as e:
            self._failed()
            raise self._unavailable(e) from None
        if self._versions_url is None:
            # Central's versions document, for the cheap probe: known from
            # then on without asking the catalog (or Keystone) for it.
            self._versions_url = resp.url.split('/v2/', 1)[0] + '/versions'
        if resp.status_code >= 500:
            self._failed()
        elif resp.status_code != 429:
            self.breaker.succeeded()
        # 429: central is up but throttles us (a flood of unknown IDs, say):
        # no failure to reach it, so the breaker must not open for everyone;
        # no proof of health either. The caller still gets "unavailable".
        return resp

    def _answers(self):
        """Whether central answers at all: its versions document, at the
        URL its last answer came from (no catalog or Keystone request),
        asked without credentials, within PROBE_TIMEOUT seconds and with no
        retry. A frozen central does not answer in time; a stopped one
        refuses at once.
        """
        if self._versions_url is None:
            return False   # not known before central's first answer
        try:
            resp = self._adapter.session.get(
                self._versions_url, authenticated=False, raise_exc=False,
                redirect=False, timeout=PROBE_TIMEOUT, connect_retries=0)
        except Exception as e:
            # Whatever the transport raises, the answer is "not yet": the
            # request that asked fails fast as before.
            LOG.debug('remote-glance backend %r: central still does not '
                      'answer: %s', self.backend, redact(str(e)))
            return False
        resp.close()
        return resp.status_code < 500

    def _failed(self):
        if self.breaker.failed():
            LOG.warning('remote-glance backend %r: circuit breaker opened '
                        'after %d consecutive failures to reach central; '
                        'requests needing central fail fast for %d s',
                        self.backend, self.breaker.threshold,
                        self.breaker.reset_after)

    def _unavailable(self, error):
        """Say plainly why central cannot be used. Our own requests never
        raise HTTP errors (raise_exc=False), so one here comes from the
        authentication plugin: the credentials were refused.
        """
        if isinstance(error, ks_exc.HttpError):
            why = ('cannot authenticate to central: the identity service '
                   'refused the credentials of [%s]' % self.backend)
        elif isinstance(error, ks_exc.EndpointNotFound):
            why = ("central's image endpoint is not in the catalog for the "
                   "region and interfaces of [%s]" % self.backend)
        else:
            why = 'central is unavailable'
        # The transport's words name central's internal endpoint: for the
        # logs only, never for the edge's clients.
        return exceptions.UpstreamUnavailable(
            self.backend, why, detail='%s: %s' % (type(error).__name__,
                                                  redact(str(error))))

    def _status_error(self, status, expected, image_id):
        if status == 404:
            return exceptions.UpstreamNotFound(
                self.backend, 'central has no image %s' % image_id)
        if status in (401, 403):
            return exceptions.UpstreamUnavailable(
                self.backend, 'central refused access to image %s (HTTP %d)'
                % (image_id, status))
        if status >= 500 or status == 429:
            return exceptions.UpstreamUnavailable(
                self.backend, 'central answered HTTP %d for image %s'
                % (status, image_id))
        return exceptions.UpstreamProtocolError(
            self.backend, 'central answered HTTP %d for image %s where %d '
            'was expected' % (status, image_id, expected))


def stream_error(backend, record, error):
    """The IOError to raise for *error*, an UpstreamError met after the
    stream of *record* was handed out.
    """
    prefix = "remote-glance backend '%s': " % error.backend
    return exceptions.UpstreamStreamError(
        backend, 'image %s: central cannot serve the rest of the image: %s'
        % (record.id, str(error).replace(prefix, '', 1)))
