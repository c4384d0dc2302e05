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

"""A circuit breaker in front of central.

After ``threshold`` consecutive failures to reach central (connection
refused, timeouts, 5xx), the breaker opens: for ``reset_after`` seconds every
request to central fails at once, so an uncached image answers 503 in
microseconds instead of one timeout per request. Then one request is let
through as a probe: success closes the breaker, failure opens it again.

Meanwhile each worker may ask central a cheap question at most every
``probe_interval`` seconds (upstream.Central asks for its versions
document, without credentials and with a short timeout): an answer lets
that request try central as the probe would (its success closes the
breaker, its failure re-opens it at once), so a node notices within about a
second that central is back, rather than at the end of the reset window.

The state lives in the cache index when there is one, so that every
glance-api worker sees the same breaker and it survives a restart; without a
cache it lives in this process.

Every request to central ends in succeeded() or failed(): the breaker also
records there central's last outcome for the node's metrics (the index's
``central`` row, cache.Cache.save_central), at most once per
CENTRAL_SEEN_INTERVAL in this process unless the outcome changed, so that
the data path pays one clock read for it.
"""

import logging
import threading
import time

from glance_store_remote import exceptions

LOG = logging.getLogger(__name__)

CLOSED, OPEN, HALF_OPEN = 'closed', 'open', 'half-open'

# Seconds between two records of the same outcome of central by this
# process (an outcome that changed is recorded at once).
CENTRAL_SEEN_INTERVAL = 1.0


class MemoryState:
    """Breaker state of one process."""

    def __init__(self):
        self._state = (CLOSED, 0, 0.0)

    def load(self):
        return self._state

    def save(self, state, failures, opened_at):
        self._state = (state, failures, opened_at)

    def central_seen(self, up, when):
        """Nothing to keep: a process of its own has no metrics."""


class IndexState:
    """Breaker state in a cache index, shared by every worker."""

    def __init__(self, cache, name):
        self._cache = cache
        self._name = name

    def load(self):
        try:
            return self._cache.load_breaker(self._name) or (CLOSED, 0, 0.0)
        except Exception as e:
            LOG.debug('breaker state not readable: %s', e)
            return (CLOSED, 0, 0.0)

    def save(self, state, failures, opened_at):
        try:
            self._cache.save_breaker(self._name, state, failures, opened_at)
        except exceptions.CacheError as e:
            LOG.debug('breaker state not saved: %s', e)

    def central_seen(self, up, when):
        """Record the outcome (*up*) of a request to central at *when*
        (epoch seconds); a failure only loses the record.
        """
        self._cache.save_central(self._name, up, when)


class Breaker:
    """Decides whether a request to central may be sent now.

    :param threshold: consecutive failures that open the breaker (0: never)
    :param reset_after: seconds the breaker stays open before a probe
    :param probe_interval: seconds between two cheap probes of this
        process while the breaker is open (0: none)
    """

    def __init__(self, threshold, reset_after, state=None,
                 clock=time.time, probe_interval=0):
        self.threshold = threshold
        self.reset_after = reset_after
        self.probe_interval = probe_interval
        self._state = state or MemoryState()
        self._clock = clock
        self._lock = threading.Lock()
        self._last_probe = None
        # Central's outcome as this process last recorded it, and when.
        self._seen = None
        self._seen_at = 0.0

    def state(self):
        """(state, consecutive failures, seconds until a probe)."""
        state, failures, opened_at = self._state.load()
        remaining = max(0.0, opened_at + self.reset_after - self._clock())
        if state == OPEN and remaining == 0:
            state = HALF_OPEN
        return state, failures, remaining if state == OPEN else 0.0

    def allow(self):
        """True if a request may go to central now.

        Cost: one read of the state (an indexed SQLite read when shared).
        """
        if not self.threshold:
            return True
        state, failures, opened_at = self._state.load()
        if state == CLOSED:
            return True
        with self._lock:
            if self._clock() - opened_at < self.reset_after:
                return False
            # Let one probe through and keep the others failing fast until
            # it answers: re-open the window now.
            self._state.save(OPEN, failures, self._clock())
            return True

    def cheap_probe_due(self):
        """True, once per probe_interval in this process, when the caller
        should ask central its cheap question (the breaker is open). Cost:
        a clock read and a lock.
        """
        if not self.probe_interval:
            return False
        with self._lock:
            now = self._clock()
            if (self._last_probe is not None and
                    now - self._last_probe < self.probe_interval):
                return False
            self._last_probe = now
            return True

    def succeeded(self):
        """A request to central succeeded."""
        self._central_seen(True)
        if self.threshold and self._state.load()[:2] != (CLOSED, 0):
            self._state.save(CLOSED, 0, 0.0)

    def failed(self):
        """Count a failure; returns True when this one opened the
        breaker.
        """
        self._central_seen(False)
        if not self.threshold:
            return False
        with self._lock:
            state, failures, opened_at = self._state.load()
            failures += 1
            if failures >= self.threshold:
                self._state.save(OPEN, failures, self._clock())
                return state == CLOSED
            self._state.save(state, failures, opened_at)
            return False

    def _central_seen(self, up):
        """Record central's outcome *up* when it differs from the one this
        process recorded last, or that one is CENTRAL_SEEN_INTERVAL old.
        Cost: a clock read; else one index write. Unlocked: two threads
        may both record, which only costs a write. A clock that stepped
        back records at once.
        """
        now = self._clock()
        if up == self._seen and (
                0 <= now - self._seen_at < CENTRAL_SEEN_INTERVAL):
            return
        self._seen, self._seen_at = up, now
        self._state.central_seen(up, now)
