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

"""The read path's test fixtures: a scripted fake central (to fail at an
exact byte, lie about the hash, or count calls) and a base class with a real
cache directory and a ReadThrough over them. The tests of readthrough.py,
fill.py, following.py, delivery.py, the site's source and the peers use
them.
"""

import gc
import hashlib
import os
import threading
import time

import fixtures
import testtools

from glance_store_remote import cache
from glance_store_remote import exceptions
from glance_store_remote import readthrough
from glance_store_remote import upstream

KiB = 1024
IMAGE = '3f1c4a0e-8a2b-4d7e-9c55-0a1b2c3d4e5f'


class FakeCentral:
    """Serves *data* like upstream.Central.open_data, by small chunks."""

    backend = 'central'

    def __init__(self, data, chunk=8 * KiB):
        self.data = data
        self.chunk = chunk
        self.calls = []
        self.fail_at = None       # raise UpstreamStreamError at this byte
        self.down = False         # refuse before any byte
        self.gate = None          # threading.Event every chunk waits for
        self.hold_at = None       # chunks from this byte wait for resume
        self.resume = threading.Event()
        self.open_streams = 0     # streams handed out and not closed
        self.serves_ranges = True  # False: reads start at byte 0 and skip
        self.skipped = 0          # bytes dropped before offsets asked
        self.skip_delay = 0       # seconds per chunk dropped

    def open_data(self, record, offset=0, length=None, request_id=None,
                  on_skip=None, skip_to_offset=True, wait=True):
        if self.down:
            raise exceptions.UpstreamUnavailable(self.backend, 'down')
        length = record.size - offset if length is None else length
        if (not self.serves_ranges and not skip_to_offset and
                (offset, length) != (0, record.size)):
            return None  # as upstream.Central, without asking
        self.calls.append((offset, length))
        return FakeStream(self, self._chunks(offset, offset + length,
                                             on_skip))

    def _chunks(self, pos, end, on_skip=None):
        if not self.serves_ranges:
            skip, pos = pos, 0
            while pos < skip:
                count = min(self.chunk, skip - pos)
                time.sleep(self.skip_delay)
                pos += count
                self.skipped += count
                if on_skip is not None:
                    on_skip(count)
        while pos < end:
            if self.gate is not None:
                self.gate.wait(10)
            if self.hold_at is not None and pos >= self.hold_at:
                self.resume.wait(10)
            if self.fail_at is not None and pos >= self.fail_at:
                raise exceptions.UpstreamStreamError(self.backend, 'died')
            stop = min(end, pos + self.chunk)
            if self.fail_at is not None and pos < self.fail_at < stop:
                stop = self.fail_at
            yield self.data[pos:stop]
            pos = stop


class FakeStream:
    """A stream of FakeCentral that knows whether it was closed: a real one
    holds an HTTP response.
    """

    def __init__(self, central, chunks):
        self.central = central
        self.chunks = chunks
        self.closed = False
        central.open_streams += 1

    def __iter__(self):
        return self

    def __next__(self):
        return next(self.chunks)

    def close(self):
        self.chunks.close()
        if not self.closed:
            self.closed = True
            self.central.open_streams -= 1


def record_of(data, **fields):
    raw = {'id': IMAGE, 'size': len(data), 'status': 'active',
           'os_hash_algo': 'sha512',
           'os_hash_value': hashlib.sha512(data).hexdigest(),
           'checksum': hashlib.md5(data).hexdigest()}
    raw.update(fields)
    return upstream.ImageRecord(raw)


def open_fds(under=None):
    """Open descriptors once fill threads have ended (a fill leaves the
    list wait_for_fills reads before its thread closes its lock and index
    connection) and garbage is collected; with *under*, only those of files
    below that folder.
    """
    for thread in threading.enumerate():
        if thread.name.startswith(('fill-', 'hash-')):
            thread.join(10)
    gc.collect()
    names = os.listdir('/proc/self/fd')
    if under is None:
        return len(names)
    count = 0
    for name in names:
        try:
            target = os.readlink(os.path.join('/proc/self/fd', name))
        except OSError:
            continue
        count += target.startswith(os.path.realpath(under) + os.sep)
    return count


def drain(chunks):
    """Read *chunks* to the end: (the bytes received, the exception that
    ended the stream or None).
    """
    received = []
    try:
        for chunk in chunks:
            received.append(chunk)
    except Exception as e:
        return b''.join(received), e
    return b''.join(received), None


class ReadThroughTestCase(testtools.TestCase):

    SIZE = 200 * KiB
    MAX_SIZE = 1024 * KiB

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.log = self.useFixture(fixtures.FakeLogger())
        self.data = os.urandom(self.SIZE)
        self.record = record_of(self.data)
        self.central = FakeCentral(self.data)
        self.cache = cache.Cache(self.useFixture(fixtures.TempDir()).path,
                                 self.MAX_SIZE)
        self.reader = readthrough.ReadThrough(
            self.cache, self.central, chunk_size=16 * KiB, stall_timeout=5)

    def read(self, offset=0, length=None, record=None):
        record = record or self.record
        length = record.size - offset if length is None else length
        return self.reader.read(record, offset, length)

    def read_all(self, **kw):
        return b''.join(self.read(**kw))

    def first_call_only(self):
        """Let central answer the first open_data only; refuse the others
        (central goes down after the first fill began).
        """
        open_data = self.central.open_data

        def first_only(*args, **kw):
            if self.central.calls:
                raise exceptions.UpstreamUnavailable('central', 'down')
            return open_data(*args, **kw)
        self.central.open_data = first_only

    def heal_after_first_call(self):
        """Central's first stream fails at fail_at; later ones do not."""
        open_data = self.central.open_data

        def healing(*args, **kw):
            if self.central.calls:
                self.central.fail_at = None
            return open_data(*args, **kw)
        self.central.open_data = healing

    def wait_committed(self, timeout=10):
        """Join this process's fills (they count and commit in their own
        thread after the last byte is released), then look.
        """
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.cache.data_path(IMAGE)) and (
                time.monotonic() < deadline):
            time.sleep(0.01)
        self.reader.wait_for_fills(timeout)
        return os.path.exists(self.cache.data_path(IMAGE))

    def tearDown(self):
        self.reader.wait_for_fills(10)
        super().tearDown()
