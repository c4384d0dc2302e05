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

"""The one way image bytes leave the driver for a client.

The integrity promise is that a client never receives a complete-looking
wrong image. It holds by construction: ``Store.get`` hands Glance only a
``Delivery``, and a Delivery is built only by the functions below, each of
which is one of the four kinds of stream allowed to reach a client:

* ``ENTRY`` (entry()): bytes of a complete cache entry, which the cache
  commits only after the whole image matched central's size and hash;
* ``FOLLOWING`` (following()): a reader of a fill's growing file, which
  releases its last HOLD_BACK bytes only on the verdict of the fill of the
  very file it reads, and serves a range only once that verdict is in
  (following.Follower);
* ``HASHED`` (whole_image() and hold_back_until_verified()): the whole
  image streamed from central (or the rest of it after bytes a reader
  already sent), hashed as it passes, its last HOLD_BACK bytes released
  only when size and hash match central's record: a lie ends as a short
  body, which every client tells from a complete image;
* ``PEER_RANGE`` (peer_range()): a range of a peer's complete, verified
  entry, hashed as it passes, its last byte released only when the bytes
  match the SHA-256 the peer signed with its answer (peers/client.py);
* ``CENTRAL_RANGE`` (from_central() for a part of the image): bytes that
  central itself sent for a range that is not the whole image. No hash
  vouches for part of an image; these are the bytes the client would get
  from central directly, and never bytes that a peer or a partial cache
  file holds.

A new read path cannot go around this: the driver refuses to return any
other stream (``checked``), and the one test that enumerates the read paths
(tests/unit/test_delivery.py) lies to each and reads what comes out.
"""

import hashlib
import logging
import os

from glance_store_remote import cache
from glance_store_remote import exceptions
from glance_store_remote import streams

LOG = logging.getLogger(__name__)

# Bytes of a whole-image stream withheld until its verification.
HOLD_BACK = 1

ENTRY = 'entry'
FOLLOWING = 'following'
HASHED = 'hashed'
PEER_RANGE = 'peer-range'
CENTRAL_RANGE = 'central-range'
EMPTY = 'empty'


# Only this module's functions hold it: a Delivery built anywhere else
# raises (see Delivery).
_BUILDER = object()


class Delivery(streams.Chunks):
    """A stream the driver may hand to a client; see the module docstring.

    ``kind`` says which of the allowed kinds it is (for tests and logs).
    Only this module's functions build one.
    """

    __slots__ = ('kind',)

    def __init__(self, kind, chunks, *release, name='image data',
                 builder=None):
        if builder is not _BUILDER:
            raise TypeError('a Delivery is built by delivery.py only')
        super().__init__(chunks, *release, name=name)
        self.kind = kind


def _delivery(kind, chunks, *release, name='image data'):
    return Delivery(kind, chunks, *release, name=name, builder=_BUILDER)


def checked(stream):
    """*stream* itself if it is a Delivery.

    :raises TypeError: any other stream: a read path that went around the
        verifying kinds is a programming error, never served
    """
    if not isinstance(stream, Delivery):
        if hasattr(stream, 'close'):
            stream.close()
        raise TypeError('refusing to hand a client an unverified stream '
                        '(%s)' % type(stream).__name__)
    return stream


def empty():
    """A zero-byte image: nothing to verify."""
    return _delivery(EMPTY, iter(()))


def entry(fd, release, offset, length, chunk_size, on_bytes):
    """[offset, offset+length) of a complete, verified cache entry.

    :param fd: the entry's open file (cache.Cache.open_complete)
    :param release: callables releasing the file and its read lock
    :param on_bytes: callable(count) told how many bytes were read, once
    """
    return _delivery(ENTRY, _pread(fd, offset, length, chunk_size,
                                   on_bytes), *release)


def _pread(fd, offset, length, chunk_size, on_bytes):
    pos, end = offset, offset + length
    try:
        while pos < end:
            chunk = os.pread(fd, min(chunk_size, end - pos), pos)
            if not chunk:
                raise exceptions.CacheIntegrityError(
                    'cache file ended at %d of %d bytes' % (pos, end))
            pos += len(chunk)
            yield chunk
    finally:
        on_bytes(pos - offset)


def following(chunks, image_id, *release):
    """A reader that follows a fill (following.Follower), which holds back
    its last byte and its ranges until the fill's verdict.

    :param release: callables releasing what the reader holds (its lock)
    """
    return _delivery(FOLLOWING, chunks, *release, name='image %s' % image_id)


def from_central(data, expected, offset, length, on_mismatch=None,
                 release=None):
    """Central's stream of [offset, offset+length) of an image, as a client
    may receive it: the whole image hashed with its last byte held back
    (whole_image), a part of it as central sent it.

    :param data: central's stream (upstream.Central.open_data) or an
        iterator over it
    :param expected: cache.Expected of central's record
    :param release: closes central's stream (default: data.close)
    """
    release = release or data.close
    if (offset, length) == (0, expected.size):
        return whole_image(data, expected, on_mismatch, release)
    return _delivery(CENTRAL_RANGE,
                     _exactly(data, length, expected.image_id), release,
                     name='image %s' % expected.image_id)


def _exactly(data, length, image_id):
    """*length* bytes of *data*, no more (a source that sends more than it
    was asked for is cut), and an IOError if it sends fewer.
    """
    sent = 0
    for chunk in data:
        if sent + len(chunk) >= length:
            yield chunk[:length - sent]
            return
        sent += len(chunk)
        yield chunk
    raise exceptions.StreamError(
        'image %s: central ended the range after %d of %d bytes' % (
            image_id, sent, length))


def peer_range(data, image_id, length, digest, on_mismatch=None,
               release=None):
    """A range of a peer's verified entry: *length* bytes whose SHA-256
    the peer signed (*digest*), the last HOLD_BACK released only when they
    match.

    :param release: closes the peer's stream (default: data.close)
    """
    signed = cache.Expected(image_id, length, 'sha256', digest)
    return _delivery(PEER_RANGE, hold_back_until_verified(
        data, signed, hashlib.sha256(), 0, on_mismatch, source='a peer',
        against='the hash it signed'), release or data.close,
        name='image %s' % image_id)


def whole_image(data, expected, on_mismatch=None, release=None):
    """The whole image from *data*, hashed as it passes; the last HOLD_BACK
    bytes are released only if size and hash match *expected*.

    :param on_mismatch: callable() told once of a mismatch (a counter)
    """
    hasher = new_hasher(expected)
    return _delivery(HASHED, hold_back_until_verified(
        data, expected, hasher, 0, on_mismatch), release or data.close,
        name='image %s' % expected.image_id)


def new_hasher(expected):
    """A hasher of *expected*'s algorithm, or None when central's record
    has no hash this Python computes (no os_hash and no checksum, or md5
    under FIPS): such an image is checked by its size alone, as Glance
    itself serves it, and a warning says so.
    """
    if expected.digest:
        try:
            return hashlib.new(expected.algo)
        except (ValueError, TypeError):
            pass
    LOG.warning('image %s cannot be verified by hash (%s %r): only its size '
                'is checked', expected.image_id, expected.algo,
                expected.digest)
    return None


def hold_back_until_verified(data, expected, hasher, pos, on_mismatch=None,
                             source='central', against='its record'):
    """Yield *data*, the bytes of the image from *pos* to its end, holding
    back its last HOLD_BACK bytes until the whole image is verified.

    :param hasher: hashes the image's bytes before *pos* already (or None:
        size only, see new_hasher)
    :param source, against: who sent the bytes and what they must match,
        for the log and the error
    :raises CacheIntegrityError: (an IOError) instead of the held bytes,
        when the image does not match *expected*
    Cost: one hash of the bytes that pass; no copy but of the held tail.
    """
    size = expected.size
    hold_from = size - HOLD_BACK
    held = []
    try:
        for chunk in data:
            if hasher is not None:
                hasher.update(chunk)
            start, pos = pos, pos + len(chunk)
            if pos <= hold_from:
                yield chunk
            elif start < hold_from:
                yield chunk[:hold_from - start]
                held.append(chunk[hold_from - start:])
            else:
                held.append(chunk)
    finally:
        close = getattr(data, 'close', None)
        if close is not None:
            close()
    digest = hasher.hexdigest() if hasher is not None else expected.digest
    if pos != size or digest != expected.digest:
        if on_mismatch is not None:
            on_mismatch()
        LOG.error('image %s: the bytes %s sent do not match %s (%d bytes '
                  'with %s %s expected, got %d bytes); the read ends short',
                  expected.image_id, source, against, size, expected.algo,
                  expected.digest, pos)
        raise exceptions.CacheIntegrityError(
            'image %s: the data %s sent does not match %s; the read ends '
            'short' % (expected.image_id, source, against))
    yield b''.join(held)
