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

"""The cache's index: one SQLite database in WAL mode that every
glance-api worker process of a node shares, apart from the files it
indexes (cache.py), as python-diskcache keeps its Disk apart from its
Cache.

It holds the entries (their state, size, pin and last access; the
reservations of fills in progress are partial entries), the counters that
``glance-remote cache stats`` shows, the fills' durations, the last
outcome of a request to central, and the circuit breaker's state
(breaker.py). One short transaction per event, never per chunk.

Being shared by every worker and kept across restarts, the index is also
where the node's metrics come from (metrics.py reads it at scrape time):
the sum over the workers is there by construction.

Connections are per thread and per process, and a connection is never
used across a fork (see below). The schema is part of the cache's layout
contract (cache.LAYOUT_VERSION).
"""

import collections
import logging
import os
import sqlite3
import threading
import weakref

from glance_store_remote import exceptions

LOG = logging.getLogger(__name__)

INDEX = 'index.sqlite'
# SQLite makes these itself with the mode of INDEX (and, running as root,
# its owner).
INDEX_FILES = (INDEX, INDEX + '-wal', INDEX + '-shm')

# Each client read is counted once, under one of REQUEST_COUNTERS: served
# from a complete entry (hits), the read started a fill (misses), it
# followed a running fill (coalesced), it was streamed uncached from a peer
# of the site that holds the image complete (peer_reads) or from central
# (passthrough), or it was refused with a 503 because central could not be
# reached (unavailable) or no WAN slot came free (busy).
REQUEST_COUNTERS = ('hits', 'misses', 'coalesced', 'peer_reads',
                    'passthrough', 'unavailable', 'busy')
# bytes_resent: bytes central sent again before the offset a read needed,
# because it serves no byte ranges (upstream.Central.serves_ranges).
# bytes_from_peers: bytes fills and reads took from other nodes of the site.
COUNTERS = REQUEST_COUNTERS + (
    'bytes_from_central', 'bytes_from_peers', 'bytes_resent',
    'bytes_from_cache', 'resumes', 'verification_failures', 'evictions')

# Upper bounds of the fill duration buckets, in seconds (a histogram's
# buckets; one more bucket holds the longer fills).
FILL_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600)
FILL_OUTCOMES = ('verified', 'failed')

_SCHEMA = """
CREATE TABLE IF NOT EXISTS entries (
    image_id TEXT PRIMARY KEY,
    state TEXT NOT NULL CHECK (state IN ('partial', 'complete')),
    size INTEGER NOT NULL,
    pinned INTEGER NOT NULL DEFAULT 0,
    last_access REAL NOT NULL,
    created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS breaker (
    name TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    failures INTEGER NOT NULL,
    opened_at REAL NOT NULL);
CREATE TABLE IF NOT EXISTS fill_durations (
    outcome TEXT NOT NULL,
    le REAL NOT NULL,
    count INTEGER NOT NULL,
    seconds REAL NOT NULL,
    PRIMARY KEY (outcome, le));
CREATE TABLE IF NOT EXISTS central (
    name TEXT PRIMARY KEY,
    up INTEGER NOT NULL,
    last_success REAL,
    last_failure REAL);
"""

Entry = collections.namedtuple(
    'Entry', 'image_id state size pinned last_access created')
# The entries in sum: bytes reserved, complete, partial and pinned
# entries, and the bytes of the pinned ones (never evicted).
Totals = collections.namedtuple(
    'Totals', 'used complete partial pinned pinned_bytes')
# A fill outcome's histogram: non-cumulative counts per bucket of
# FILL_BUCKETS (one more for the longer fills), their number and their
# total duration in seconds.
FillDurations = collections.namedtuple('FillDurations',
                                       'buckets count seconds')
# The last outcome of a request to central, as the workers saw it: up (a
# bool) and the times (epoch seconds, or None) of the last success and of
# the last failure.
CentralSeen = collections.namedtuple('CentralSeen',
                                     'up last_success last_failure')


def _create(path, mode):
    """Create an empty file with *mode* unless it exists. The index is
    made this way so that SQLite gives the -wal and -shm it creates the
    same mode.
    """
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL,
                         mode))
    except FileExistsError:
        pass


# -- index connections across fork() -----------------------------------------
#
# SQLite: "do not open a database connection, then fork(), then try to use
# that connection in the child". Worse, a connection inherited but merely
# kept alive in the child corrupts the child's NEW connections too: SQLite
# keeps per-file lock bookkeeping in process memory (inherited) while POSIX
# locks are per process (not inherited), so a new connection in the child
# would believe it holds the locks the parent's connection holds, and work
# without them. So, in a child, before it opens its first connection, every
# connection inherited from the parent is closed: that only drops the
# child's copy (it holds no lock the kernel knows of, unmapping the shared
# -shm writes nothing, and the WAL is only checkpointed when the close wins
# an exclusive lock, i.e. when no other process has the index open). A
# connection that was inside a transaction at fork time (another thread of
# the parent was writing) is never closed, nor used: closing it would roll
# back the parent's transaction in the shared -shm. It is kept referenced
# for the child's lifetime; the child's own writes then find the index
# busy (an error, never a corruption). Masters fork before serving, so
# this does not happen in glance-api.
#
# This happens lazily, when the child first needs the index, noticed by the
# PID (uWSGI forks in C: no Python fork hook runs there). Never in a fork
# hook: a child about to exec (subprocess with preexec_fn, as oslo's
# processutils runs qemu-img) must not call into SQLite, whose mutexes
# another thread of the parent may have held at fork time. For the same
# reason a fork hook keeps every connection referenced across os.fork:
# CPython frees the parent's other threads' state in the child, which would
# otherwise close their connections right there.

class _Connection(sqlite3.Connection):
    """An index connection that knows the process that opened it."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.pid = os.getpid()


_connections = weakref.WeakSet()  # every live index connection
_connections_pid = os.getpid()    # the process they all belong to
_connections_lock = threading.Lock()
_kept_across_fork = []            # strong references until released
_stranded = []                    # in a transaction at fork: never closed


def _connect(path):
    """A new connection of this process (see above)."""
    if _connections_pid != os.getpid():
        _release_inherited_connections()
    with _connections_lock:
        # check_same_thread: each connection is used by the one thread it
        # was made for, and may be closed by a child's other thread.
        db = sqlite3.connect(path, timeout=30, isolation_level=None,
                             factory=_Connection, check_same_thread=False)
        _connections.add(db)
    return db


def _release_inherited_connections():
    """In a forked child: close the parent's connections (see above)."""
    global _connections_pid
    with _connections_lock:
        if _connections_pid == os.getpid():
            return
        for db in list(_connections):
            _connections.discard(db)
            if db.in_transaction:
                _stranded.append(db)
                continue
            try:
                db.close()
            except sqlite3.Error:
                _stranded.append(db)
        del _kept_across_fork[:]
        _connections_pid = os.getpid()


def _before_fork():
    _connections_lock.acquire()
    _kept_across_fork[:] = list(_connections)


def _after_fork_in_parent():
    if _connections_pid == os.getpid():
        del _kept_across_fork[:]
    # else: a child that has not released what it inherited forked again.
    _connections_lock.release()


def _after_fork_in_child():
    # Keeps _kept_across_fork: see above.
    _connections_lock.release()


os.register_at_fork(before=_before_fork,
                    after_in_parent=_after_fork_in_parent,
                    after_in_child=_after_fork_in_child)


class Index:
    """The index of one cache directory.

    Thread safe; each thread gets its own SQLite connection.

    :param root: the cache directory (it exists)
    :param file_mode: the mode the index file is created with (SQLite
        gives its -wal and -shm files the same)
    """

    def __init__(self, root, file_mode):
        self.root = root
        self.path = os.path.join(root, INDEX)
        self._file_mode = file_mode
        self._local = threading.local()

    def create_schema(self):
        """Create the tables that are missing.

        :raises CacheError, sqlite3.Error: the index cannot be used
        """
        self.db().executescript(_SCHEMA)

    def db(self):
        """This thread's connection to the index, in this process.

        Fast path: one getpid. A connection made before a fork is never
        used after it (see _release_inherited_connections).

        :raises CacheError: the index cannot be opened
        """
        db = getattr(self._local, 'db', None)
        if db is None or db.pid != os.getpid():
            try:
                _create(self.path, self._file_mode)
                db = _connect(self.path)
                db.execute('PRAGMA journal_mode=WAL')
                db.execute('PRAGMA synchronous=NORMAL')
                # The index is small; every glance-api thread has its own
                # connection, so keep each one's page cache small too.
                db.execute('PRAGMA cache_size=-256')
            except (OSError, sqlite3.Error) as e:
                raise exceptions.CacheError('cache index of %s: %s'
                                            % (self.root, e))
            self._local.db = db
        return db

    def write(self, *statements):
        """Run (sql, args) pairs in one immediate transaction."""
        db = self.db()
        try:
            db.execute('BEGIN IMMEDIATE')
            try:
                for sql, args in statements:
                    db.execute(sql, args)
                db.execute('COMMIT')
            except BaseException:
                db.execute('ROLLBACK')
                raise
        except sqlite3.Error as e:
            raise exceptions.CacheError('cache index of %s: %s'
                                        % (self.root, e))

    @staticmethod
    def bump(**increments):
        """(sql, args) pairs adding *increments* to counters, for write."""
        return [('INSERT INTO counters (name, value) VALUES (?, ?) '
                 'ON CONFLICT(name) DO UPDATE SET value = value + ?',
                 (name, amount, amount))
                for name, amount in increments.items() if amount]

    def count(self, **increments):
        """Add to counters; a failure only loses the count."""
        statements = self.bump(**increments)
        if not statements:
            return
        try:
            self.write(*statements)
        except exceptions.CacheError as e:
            LOG.debug('counters not updated: %s', e)

    def counters(self):
        """Every counter of COUNTERS, by name (0 until first counted)."""
        values = dict.fromkeys(COUNTERS, 0)
        for name, value in self.db().execute(
                'SELECT name, value FROM counters'):
            if name in values:
                values[name] = value
        return values

    # -- fill durations ------------------------------------------------------

    def record_fill(self, outcome, seconds):
        """Count a fill that ended with *outcome* (FILL_OUTCOMES) after
        *seconds*, under the upper bound of its bucket (infinity above the
        last); a failure only loses the record.
        """
        bound = next((bound for bound in FILL_BUCKETS if seconds <= bound),
                     float('inf'))
        try:
            self.write(('INSERT INTO fill_durations '
                        '(outcome, le, count, seconds) '
                        'VALUES (?, ?, 1, ?) ON CONFLICT(outcome, le) '
                        'DO UPDATE SET count = count + 1, '
                        'seconds = seconds + ?',
                        (outcome, bound, seconds, seconds)))
        except exceptions.CacheError as e:
            LOG.debug('fill duration not recorded: %s', e)

    def fill_durations(self):
        """{outcome: FillDurations} for every outcome of FILL_OUTCOMES.

        Rows are kept by their bucket's upper bound: rows of another set
        of bounds (an earlier or later release) count in the first bucket
        of FILL_BUCKETS that holds their bound, so no fill is lost.
        """
        rows = {outcome: [0] * (len(FILL_BUCKETS) + 1)
                for outcome in FILL_OUTCOMES}
        seconds = dict.fromkeys(FILL_OUTCOMES, 0.0)
        for outcome, bound, count, total in self.db().execute(
                'SELECT outcome, le, count, seconds FROM fill_durations'):
            if outcome in rows:
                bucket = next((i for i, le in enumerate(FILL_BUCKETS)
                               if bound <= le), len(FILL_BUCKETS))
                rows[outcome][bucket] += count
                seconds[outcome] += total
        return {outcome: FillDurations(tuple(buckets), sum(buckets),
                                       seconds[outcome])
                for outcome, buckets in rows.items()}

    # -- central as last seen ------------------------------------------------

    def save_central(self, name, up, when):
        """Record the outcome (*up*: a bool) of a request to central made
        at *when* (epoch seconds); a failure only loses the record.
        """
        column = 'last_success' if up else 'last_failure'
        try:
            self.write(('INSERT INTO central (name, up, %s) VALUES (?, ?, ?) '
                        'ON CONFLICT(name) DO UPDATE SET up = ?, %s = ?'
                        % (column, column),
                        (name, int(up), when, int(up), when)))
        except exceptions.CacheError as e:
            LOG.debug('central state not recorded: %s', e)

    def load_central(self, name):
        """The CentralSeen of central *name*, or None before any."""
        row = self.db().execute(
            'SELECT up, last_success, last_failure FROM central '
            'WHERE name = ?', (name,)).fetchone()
        return CentralSeen(bool(row[0]), row[1], row[2]) if row else None

    def entry(self, image_id):
        row = self.db().execute(
            'SELECT image_id, state, size, pinned, last_access, created '
            'FROM entries WHERE image_id = ?', (image_id,)).fetchone()
        return Entry(*row) if row else None

    def entries(self):
        """Every entry, least recently used first."""
        return [Entry(*row) for row in self.db().execute(
            'SELECT image_id, state, size, pinned, last_access, created '
            'FROM entries ORDER BY last_access')]

    def totals(self):
        """The entries in sum (Totals), in one query whatever their
        number.
        """
        return Totals(*self.db().execute(
            "SELECT COALESCE(SUM(size), 0), "
            "COALESCE(SUM(state = 'complete'), 0), "
            "COALESCE(SUM(state = 'partial'), 0), "
            "COALESCE(SUM(pinned != 0), 0), "
            "COALESCE(SUM(CASE WHEN pinned != 0 THEN size ELSE 0 END), 0) "
            "FROM entries").fetchone())

    def used(self):
        """Bytes reserved by all entries (complete and partial)."""
        return self.db().execute(
            'SELECT COALESCE(SUM(size), 0) FROM entries').fetchone()[0]

    # -- breaker state, shared by every worker ------------------------------

    def load_breaker(self, name):
        row = self.db().execute(
            'SELECT state, failures, opened_at FROM breaker WHERE name = ?',
            (name,)).fetchone()
        return row

    def save_breaker(self, name, state, failures, opened_at):
        self.write(('INSERT INTO breaker (name, state, failures, opened_at) '
                    'VALUES (?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET '
                    'state = ?, failures = ?, opened_at = ?',
                    (name, state, failures, opened_at, state, failures,
                     opened_at)))
