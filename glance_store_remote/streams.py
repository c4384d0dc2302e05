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

"""The iterators of image data this driver hands to Glance.

Glance and glance_store close an image iterator before its first chunk on
error paths (a copy to a store that fails), or drop it inside a wrapper that
never closes it (``glance.common.utils.cooperative_iter``). A generator's
``finally`` does not run then, so what a read opened before its first chunk
(a cache file, the shared read lock that keeps the entry from eviction, the
HTTP response from central) would stay open until the worker restarts.
``Chunks`` owns those and releases them exactly once: after the last chunk,
on an error, on close(), or when it is garbage collected, started or not.

It also keeps the promise Glance relies on: an error raised once the stream
was handed out is an IOError, which Glance's location import retries and
which gives the client a short body.
"""

import logging

from glance_store_remote import exceptions

LOG = logging.getLogger(__name__)

_EXHAUSTED = iter(())


class Chunks:
    """An iterator over *chunks* that releases *release* once.

    :param chunks: an iterator of bytes, usually a generator; it is closed
        first, so that its ``finally`` runs before what it reads is released
    :param release: callables (each guarded) releasing what the read
        acquired before its first chunk
    :param name: names the stream in errors, e.g. ``image <id>``

    Cost per chunk: one method call; no copy, no system call.
    """

    __slots__ = ('_chunks', '_release', '_name')

    def __init__(self, chunks, *release, name='image data'):
        self._chunks = chunks
        self._release = release
        self._name = name

    def __iter__(self):
        return self

    def __next__(self):
        try:
            return next(self._chunks)
        except (StopIteration, OSError):
            self.close()
            raise
        except Exception as e:
            self.close()
            LOG.exception('%s: stream failed', self._name)
            raise exceptions.StreamError(
                '%s: stream failed: %s' % (self._name, e)) from e

    def close(self):
        """Stop the stream and release what it holds; idempotent."""
        chunks, self._chunks = self._chunks, _EXHAUSTED
        release, self._release = self._release, ()
        try:
            close = getattr(chunks, 'close', None)
            if close is not None:
                close()
        finally:
            for step in release:
                try:
                    step()
                except Exception:
                    LOG.exception('%s: releasing the stream failed',
                                  self._name)

    def __del__(self):
        # Never raise from a finaliser (at interpreter exit LOG may be gone).
        try:
            self.close()
        except Exception:
            pass


def empty():
    """A stream of no bytes (a zero-byte image)."""
    return Chunks(_EXHAUSTED)
