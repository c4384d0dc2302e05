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

"""A cache written by an earlier release is served by this one: the on-disk
layout is a contract (doc/source/reference/cache.rst).

The contract, layout version 1:

* ``layout`` holds exactly ``glance-store-remote cache layout 1`` and a
  newline, and no release rewrites it;
* ``entries/<id>.data`` with central's record in ``entries/<id>.json`` is a
  complete, verified entry: a later release serves it as a hit, byte for
  byte, also while central is down, and asks central nothing for it;
* ``partial/<id>.data`` is the prefix of an interrupted fill and
  ``partial/<id>.json`` holds ``{"record", "durable", "boot_id"}``. The
  resume rule: a later fill keeps the whole file when ``boot_id`` is this
  boot's (a killed process loses nothing from the page cache), else only
  the first ``durable`` bytes (fsync'ed), and asks central only for the
  rest (``Range: bytes=<kept>-``); what it cannot keep it drops, and it
  reads the image whole, leaving no trace of the old prefix;
* ``locks/<id>.fill`` is the filler's flock, its first 128 bytes the last
  fill's outcome as JSON (``{"outcome": "committed"}``, ``"filling"``, ...)
  padded with spaces to 127 bytes and a newline; ``locks/<id>.read`` is the
  readers' flock;
* ``index.sqlite`` holds the tables ``entries`` (``image_id``, ``state``
  partial or complete, ``size``, ``pinned``, ``last_access``,
  ``created``), ``counters`` and ``breaker``; the current code adds the
  tables ``fill_durations`` and ``central`` (ADDED_TABLES: the node's
  metrics), which an earlier release neither reads nor minds, and reads an
  earlier release's index, creating them there;
* files are ``0640`` and folders ``0750``.

How it is proven: the package as it was at BASELINE, the last commit before
the fill moved out of ``readthrough.py`` (issue 21), is taken from git and
run in a process of its own (cache_layout_reader.py, that tree first on
PYTHONPATH), against a REAL central Glance behind the fault proxy. It
reads one image whole (a complete entry) and starts a fill of another that
is killed (SIGKILL) while central's stream stalls at STALL_AT (a partial
file, its record and its lock with the outcome ``filling``). The current
code writes a second cache the same way, and the two trees must agree:
names, modes, data sizes, the layout text, the outcome bytes, the partial's
metadata and the index's schema, rows and counters. So a change of the
layout fails here until it comes with a new layout version and a migration.
Then the current code, on a copy of the earlier release's cache each time,
serves the complete entry with central stopped, resumes the partial asking
central only for the rest, refetches it whole when its prefix is not
resumable (a reboot since it was written, its ``durable`` 0), and ``cache
verify`` finds every entry healthy.

BASELINE must be in the clone's history: without it the tests fail (they do
not skip), naming the commit.
"""

import hashlib
import io
import json
import os
import select
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid

import fixtures
import testtools
from testtools import content

from tests.harness import faults as faults_module
from tests.harness import lab as lab_module

# The package before the refactor of issue 21 (the fill in readthrough.py).
BASELINE = 'ea9fc23a26236f61196505d90341941ca483a881'
PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
READER = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                      'cache_layout_reader.py')
BACKEND = 'central'
MiB = 1024 * 1024
COMPLETE_SIZE = 5 * MiB + 17
PARTIAL_SIZE = 20 * MiB + 3
# A multiple of the driver's 4 MiB chunk: the fill writes exactly this much
# before central's stream stalls.
STALL_AT = 8 * MiB
CACHE_MAX_SIZE = 1024 ** 3
TEST_TIMEOUT = 240  # seconds
PROCESS_TIMEOUT = 120  # seconds for one reader process
LAYOUT_TEXT = b'glance-store-remote cache layout 1\n'
# Tables the current code adds to the index of layout 1 (the node's metrics).
ADDED_TABLES = ('central', 'fill_durations')
OUTCOME_BYTES = 128
# SQLite's own files beside the index: whether they exist depends on how
# the last process let go of it, not on the layout.
SQLITE_SIDECARS = ('index.sqlite-wal', 'index.sqlite-shm')


def outcome_bytes(outcome):
    """A fill lock's content as layout 1 writes it."""
    return (json.dumps({'outcome': outcome}).ljust(OUTCOME_BYTES - 1) +
            '\n').encode()


def this_boot():
    with open('/proc/sys/kernel/random/boot_id') as f:
        return f.read().strip()


def extract_baseline(dest):
    """The package as it was at BASELINE, in *dest*/glance_store_remote.

    :raises AssertionError: the commit is not in this clone's history
    """
    missing = subprocess.run(
        ['git', '-C', PROJECT_ROOT, 'cat-file', '-e', BASELINE + '^{commit}'],
        capture_output=True, text=True)
    if missing.returncode:
        raise AssertionError(
            'commit %s (the package before the fill left readthrough.py) is '
            'not in the history of %s: the cache layout test reads a cache '
            'that code wrote. Clone with the full history (git fetch '
            '--unshallow). git said: %s'
            % (BASELINE, PROJECT_ROOT, missing.stderr.strip()))
    archive = subprocess.Popen(
        ['git', '-C', PROJECT_ROOT, 'archive', BASELINE,
         'glance_store_remote'], stdout=subprocess.PIPE)
    try:
        subprocess.run(['tar', '-x', '-C', dest], stdin=archive.stdout,
                       check=True, timeout=60)
    finally:
        archive.stdout.close()
        archive.wait(60)
    if archive.returncode:
        raise AssertionError('git archive %s failed (%d)'
                             % (BASELINE, archive.returncode))


def write_config(folder, cache_dir, central_url):
    """A glance-api.conf with the remote-glance backend, as an edge has it,
    for the reader and for ``glance-remote``.
    """
    path = os.path.join(folder, 'glance-api-%s.conf' % uuid.uuid4().hex[:8])
    with open(path, 'w') as f:
        f.write('[DEFAULT]\nenabled_backends = %s:remote-glance\n'
                '[glance_store]\ndefault_backend = %s\n'
                '[%s]\nauth_type = none\nendpoint_override = %s\n'
                'timeout = 30\nremote_glance_cache_dir = %s\n'
                'remote_glance_cache_max_size = %d\n'
                % (BACKEND, BACKEND, BACKEND, central_url, cache_dir,
                   CACHE_MAX_SIZE))
    return path


def largest_file(folder):
    """The size of the largest file under *folder* (0: none)."""
    return max((os.path.getsize(os.path.join(where, name))
                for where, _, names in os.walk(folder) for name in names),
               default=0)


def describe_layout(cache_dir):
    """What the layout contract fixes in a cache directory, as one value to
    compare: each path's mode and its content as the contract speaks of it.
    """
    found = {}
    for folder, subfolders, names in os.walk(cache_dir):
        for name in subfolders + names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, cache_dir)
            if rel in SQLITE_SIDECARS:
                continue
            mode = oct(os.stat(path).st_mode & 0o777)
            if os.path.isdir(path):
                found[rel] = ('folder', mode)
            elif rel == 'index.sqlite':
                found[rel] = ('index', mode, describe_index(path))
            elif rel.endswith('.data'):
                found[rel] = ('data', mode, os.path.getsize(path))
            elif rel.startswith('partial') and rel.endswith('.json'):
                with open(path) as f:
                    meta = json.load(f)
                found[rel] = ('partial record', mode, sorted(meta),
                              meta['record'], meta['durable'],
                              meta['boot_id'] == this_boot())
            elif rel.endswith('.json'):
                with open(path) as f:
                    found[rel] = ('record', mode, json.load(f))
            else:
                with open(path, 'rb') as f:
                    found[rel] = ('file', mode, f.read())
    return found


def describe_index(path):
    """The index's schema, its rows without times, and its counters."""
    db = sqlite3.connect(path)
    try:
        return (
            db.execute('SELECT type, name, sql FROM sqlite_master '
                       'ORDER BY name').fetchall(),
            db.execute('SELECT image_id, state, size, pinned FROM entries '
                       'ORDER BY image_id').fetchall(),
            db.execute('SELECT name, value FROM counters '
                       'ORDER BY name').fetchall())
    finally:
        db.close()


class _Central(lab_module.LabBase):
    """A central Glance and, in front of it, the fault proxy that stalls
    its stream where a fill is to be interrupted.
    """

    proxy = None

    def _parts(self):
        return (self.proxy, self.central)

    def _start(self):
        self.central = lab_module.GlanceServer(
            'central', os.path.join(self.root, 'central'),
            policy=lab_module.ADMIN_EVERYONE)
        self._launch(self.central)
        self.proxy = faults_module.FaultyCentral(self.central.url).start()


class TestCacheLayout(testtools.TestCase):
    """The current code against a cache the BASELINE code wrote."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.root = tempfile.mkdtemp(prefix='gsr-layout-')
        cls.lab = None
        try:
            cls.baseline = os.path.join(cls.root, 'baseline')
            os.makedirs(cls.baseline)
            extract_baseline(cls.baseline)
            cls.lab = _Central().start()
            cls.complete_image, cls.complete_data = cls._upload(
                COMPLETE_SIZE)
            cls.partial_image, cls.partial_data = cls._upload(PARTIAL_SIZE)
            cls.old_cache = cls._written_by(cls.baseline, 'old-cache')
            cls.new_cache = cls._written_by(PROJECT_ROOT, 'new-cache')
        except BaseException:
            cls._clean_up()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            # The driver, of either release, only ever read central.
            written = [e for e in cls.lab.central.access_entries()
                       if 'glance-store-remote' in e.agent and
                       e.method not in ('GET', 'HEAD')]
            if written:
                raise AssertionError('central received %s' % written)
        finally:
            cls._clean_up()
            super().tearDownClass()

    @classmethod
    def _clean_up(cls):
        if cls.lab is not None:
            cls.lab.stop()
        shutil.rmtree(cls.root, ignore_errors=True)

    @classmethod
    def _upload(cls, size):
        data = os.urandom(size)
        client = cls.lab.central.glance()
        image = client.images.create(
            name='layout-%s' % uuid.uuid4().hex[:8], disk_format='raw',
            container_format='bare')
        client.images.upload(image.id, io.BytesIO(data))
        return client.images.get(image.id), data

    # -- the caches both releases write --------------------------------------

    @classmethod
    def _written_by(cls, tree, name):
        """A cache the package in *tree* filled through central's proxy: the
        complete image read whole, the other one's fill killed at STALL_AT.
        """
        cache_dir = os.path.join(cls.root, name)
        config = write_config(cls.root, cache_dir, cls.lab.proxy.url)
        done = cls._run_reader(tree, config, cls.complete_image.id)
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        digest = hashlib.sha512(cls.complete_data).hexdigest()
        if done.returncode or not lines or lines[-1]['sha512'] != digest:
            raise AssertionError('the reader of %s failed (%d): %s\n%s'
                                 % (tree, done.returncode, done.stdout,
                                    done.stderr))
        cls._assert_module_of(tree, lines[0])
        cls._killed_mid_fill(tree, config, cache_dir)
        return cache_dir

    @classmethod
    def _run_reader(cls, tree, config, *image_ids):
        return subprocess.run(
            [sys.executable, READER, config] + list(image_ids),
            env=cls._env(tree), capture_output=True, text=True,
            timeout=PROCESS_TIMEOUT)

    @staticmethod
    def _env(tree):
        """The environment of a process of the package in *tree*: first on
        PYTHONPATH, so it shadows the package installed in the virtualenv.
        """
        return dict(os.environ, PYTHONPATH=tree)

    @staticmethod
    def _assert_module_of(tree, opened):
        package = os.path.join(os.path.realpath(tree), 'glance_store_remote')
        if os.path.realpath(opened['module']) != package:
            raise AssertionError('the reader ran the package in %s, not %s'
                                 % (opened['module'], package))

    @classmethod
    def _killed_mid_fill(cls, tree, config, cache_dir):
        """Start a read of the partial image, stall central's stream at
        STALL_AT and SIGKILL the reader once the fill wrote that much.
        """
        image_id = cls.partial_image.id
        armed = cls.lab.proxy.arm(stall_at=STALL_AT)
        with open(os.path.join(cls.root, 'killed-reader.log'), 'ab') as log:
            reader = subprocess.Popen(
                [sys.executable, READER, config, image_id],
                env=cls._env(tree), stdout=subprocess.PIPE, stderr=log,
                text=True)
        try:
            deadline = time.monotonic() + PROCESS_TIMEOUT
            ready, _, _ = select.select([reader.stdout], [], [],
                                        PROCESS_TIMEOUT)
            opened = json.loads(reader.stdout.readline() or 'null')
            if not ready or not opened or 'opened' not in opened:
                raise AssertionError('the reader of %s did not start: %s'
                                     % (tree, opened))
            cls._assert_module_of(tree, opened)
            # Whatever the file is named: a layout that changed fails in
            # the comparison, which names the difference.
            while not (armed.stalled.is_set() and
                       largest_file(cache_dir) >= STALL_AT):
                if time.monotonic() > deadline or reader.poll() is not None:
                    raise AssertionError(
                        'the fill of %s by %s never reached byte %d'
                        % (image_id, tree, STALL_AT))
                time.sleep(0.02)
        finally:
            reader.kill()
            reader.wait(PROCESS_TIMEOUT)
            reader.stdout.close()
            armed.abort()

    # -- each test ------------------------------------------------------------

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(TEST_TIMEOUT, gentle=True))
        if not self.lab.central.running:
            self.lab.central.start()
        self.lab.proxy.faults.reset()
        self.folder = self.useFixture(fixtures.TempDir()).path

    def copy_of(self, cache_dir):
        copy = os.path.join(self.folder, os.path.basename(cache_dir))
        shutil.copytree(cache_dir, copy)
        return copy

    def read(self, cache_dir, central_url, image_id):
        """Read the image whole with the current code; its last JSON line
        and the 'opened' one.
        """
        config = write_config(self.folder, cache_dir, central_url)
        done = self._run_reader(PROJECT_ROOT, config, image_id)
        self.addDetail('reader-stderr-%s' % image_id[:8],
                       content.text_content(done.stderr))
        lines = [json.loads(line) for line in done.stdout.splitlines()]
        self.assertEqual(0, done.returncode, done.stdout)
        self._assert_module_of(PROJECT_ROOT, lines[0])
        return lines[0], lines[-1]

    def cli(self, cache_dir, *args):
        """``glance-remote --json`` of the current code on *cache_dir*."""
        config = write_config(self.folder, cache_dir, self.lab.central.url)
        done = subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             config, '--json'] + list(args),
            env=self._env(PROJECT_ROOT), capture_output=True, text=True,
            timeout=PROCESS_TIMEOUT)
        self.assertEqual(0, done.returncode, done.stdout + done.stderr)
        return json.loads(done.stdout)

    def assert_exact(self, data, result):
        self.assertIsNone(result['error'])
        self.assertEqual(len(data), result['received'])
        self.assertEqual(hashlib.sha512(data).hexdigest(), result['sha512'])

    def assert_healthy(self, cache_dir, states):
        """``cache verify`` re-hashes every complete entry: all good; the
        index holds the entries in *states* ({image ID: state}), no other
        partial file is left, and the layout file is the one the earlier
        release wrote.
        """
        complete = [i for i, state in states.items() if state == 'complete']
        self.assertEqual({'checked': len(complete), 'bad': [],
                          'unchecked': [], 'removed': []},
                         self.cli(cache_dir, 'cache', 'verify'))
        self.assertEqual(states, {e['image_id']: e['state'] for e in
                                  self.cli(cache_dir, 'cache', 'list')})
        self.assertEqual(
            sorted(i + suffix for i, state in states.items()
                   if state == 'partial' for suffix in ('.data', '.json')),
            sorted(os.listdir(os.path.join(cache_dir, 'partial'))))
        with open(os.path.join(cache_dir, 'layout'), 'rb') as f:
            self.assertEqual(LAYOUT_TEXT, f.read())

    def proxied(self, image_id, since):
        """(method, path, Range) of the requests about the image that went
        through the proxy after index *since* of its log.
        """
        return [seen for seen in self.lab.proxy.seen[since:]
                if image_id in seen[1]]

    def central_ranges(self, image_id, expected, timeout=10):
        """The Range headers of the image's data GETs in central's access
        log, once *expected* of them are there (central logs a request
        after its last byte).
        """
        deadline = time.monotonic() + timeout
        while True:
            ranges = [e.range for e in self.lab.central.access_entries()
                      if e.method == 'GET' and
                      # Glance logs the path without its version prefix
                      e.path.endswith('/images/%s/file' % image_id) and
                      e.range != '-']
            if len(ranges) >= expected or time.monotonic() > deadline:
                return ranges
            time.sleep(0.1)

    # -- the tests ------------------------------------------------------------

    def test_the_current_code_writes_the_layout_the_earlier_release_wrote(
            self):
        old = describe_layout(self.copy_of(self.old_cache))
        complete, partial = self.complete_image.id, self.partial_image.id
        # What layout 1 is, as the earlier release wrote it.
        self.assertEqual(('file', '0o640', LAYOUT_TEXT), old['layout'])
        self.assertEqual(('data', '0o640', COMPLETE_SIZE),
                         old['entries/%s.data' % complete])
        self.assertEqual(('data', '0o640', STALL_AT),
                         old['partial/%s.data' % partial])
        self.assertEqual(('file', '0o640', outcome_bytes('committed')),
                         old['locks/%s.fill' % complete])
        self.assertEqual(('file', '0o640', outcome_bytes('filling')),
                         old['locks/%s.fill' % partial])
        meta = old['partial/%s.json' % partial]
        self.assertEqual((['boot_id', 'durable', 'record'], 0, True),
                         (meta[2], meta[4], meta[5]))
        self.assertEqual(PARTIAL_SIZE, meta[3]['size'])
        self.assertEqual(COMPLETE_SIZE,
                         old['entries/%s.json' % complete][2]['size'])
        schema, rows, _ = old['index.sqlite'][2]
        self.assertEqual(['breaker', 'counters', 'entries'],
                         sorted(name for kind, name, _ in schema
                                if kind == 'table'))
        self.assertEqual(sorted([(complete, 'complete', COMPLETE_SIZE, 0),
                                 (partial, 'partial', PARTIAL_SIZE, 0)]),
                         rows)
        for sub in ('entries', 'partial', 'locks'):
            self.assertEqual(('folder', '0o750'), old[sub])
        # And the current code writes the same, name for name.
        new = describe_layout(self.copy_of(self.new_cache))
        self.assertEqual(sorted(old), sorted(new))
        for name in sorted(old):
            if name == 'index.sqlite':
                continue
            self.assertEqual(old[name], new[name], name)
        # The index: the earlier release's schema, rows and counters, and
        # the tables added since, no other change.
        self.assertEqual(old['index.sqlite'][:2], new['index.sqlite'][:2])
        new_schema, new_rows, new_counters = new['index.sqlite'][2]
        _, _, old_counters = old['index.sqlite'][2]
        added = [entry for entry in new_schema if entry not in schema]
        self.assertEqual(sorted(ADDED_TABLES),
                         sorted(name for kind, name, _ in added
                                if kind == 'table'))
        self.assertEqual(set(), {entry[2] for entry in schema} -
                         {entry[2] for entry in new_schema})
        self.assertEqual((rows, old_counters), (new_rows, new_counters))

    def test_a_complete_entry_is_served_offline_asking_central_nothing(self):
        cache_dir = self.copy_of(self.old_cache)
        image_id = self.complete_image.id
        before = self.cli(cache_dir, 'cache', 'stats')
        self.lab.central.stop()
        opened, result = self.read(cache_dir, self.lab.central.url,
                                   image_id)
        self.assertEqual('entry', opened['kind'])
        self.assert_exact(self.complete_data, result)
        after = self.cli(cache_dir, 'cache', 'stats')
        self.assertEqual(
            {'hits': before['hits'] + 1, 'misses': before['misses'],
             'bytes_from_central': before['bytes_from_central'],
             'bytes_from_cache': before['bytes_from_cache'] + COMPLETE_SIZE,
             'resumes': before['resumes']},
            {key: after[key] for key in ('hits', 'misses',
                                         'bytes_from_central',
                                         'bytes_from_cache', 'resumes')})
        self.assert_healthy(cache_dir, {image_id: 'complete',
                                        self.partial_image.id: 'partial'})

    def test_a_partial_fill_resumes_asking_central_only_for_the_rest(self):
        cache_dir = self.copy_of(self.old_cache)
        image_id = self.partial_image.id
        before = self.cli(cache_dir, 'cache', 'stats')
        since = len(self.lab.proxy.seen)
        opened, result = self.read(cache_dir, self.lab.proxy.url, image_id)
        self.assertEqual('following', opened['kind'])
        self.assert_exact(self.partial_data, result)
        rest = 'bytes=%d-%d' % (STALL_AT, PARTIAL_SIZE - 1)
        # No record asked (the partial keeps it), one GET of the rest.
        self.assertEqual([('GET', '/v2/images/%s/file' % image_id, rest)],
                         self.proxied(image_id, since))
        self.assertEqual([rest], self.central_ranges(image_id, 1))
        after = self.cli(cache_dir, 'cache', 'stats')
        self.assertEqual(
            {'resumes': before['resumes'] + 1,
             'bytes_from_central': before['bytes_from_central'] +
             PARTIAL_SIZE - STALL_AT,
             'verification_failures': 0},
            {key: after[key] for key in ('resumes', 'bytes_from_central',
                                         'verification_failures')})
        self.assert_healthy(cache_dir, {self.complete_image.id: 'complete',
                                        image_id: 'complete'})

    def test_a_partial_from_before_a_reboot_is_dropped_and_read_whole(self):
        # Its prefix was never fsync'ed (durable 0): after a reboot it may
        # hold anything, so the rule keeps none of it.
        cache_dir = self.copy_of(self.old_cache)
        image_id = self.partial_image.id
        meta_path = os.path.join(cache_dir, 'partial', image_id + '.json')
        with open(meta_path) as f:
            meta = json.load(f)
        meta['boot_id'] = str(uuid.uuid4())
        with open(meta_path, 'w') as f:
            json.dump(meta, f)
        before = self.cli(cache_dir, 'cache', 'stats')
        since = len(self.lab.proxy.seen)
        opened, result = self.read(cache_dir, self.lab.proxy.url, image_id)
        self.assert_exact(self.partial_data, result)
        self.assertEqual([('GET', '/v2/images/%s/file' % image_id, None)],
                         self.proxied(image_id, since))
        after = self.cli(cache_dir, 'cache', 'stats')
        self.assertEqual(
            {'resumes': before['resumes'],
             'bytes_from_central': before['bytes_from_central'] +
             PARTIAL_SIZE},
            {key: after[key] for key in ('resumes', 'bytes_from_central')})
        self.assert_healthy(cache_dir, {self.complete_image.id: 'complete',
                                        image_id: 'complete'})
