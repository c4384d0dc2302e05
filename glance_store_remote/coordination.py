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

"""Site coordination: the nodes of a multi-node edge site, through tooz.

Owns one tooz coordinator per remote-glance backend and process: started
on first use and again in a forked child (a coordinator's heartbeat thread
and connections do not survive a fork), with its heartbeat running. Through
it a node

* joins the site's group ``remote-glance.<backend>``, its capabilities
  naming the URL at which the other nodes read images from it (peers/),
  the images it is reading from central (``filling``) and the site locks it
  holds with a claim (``held``: the WAN slots, the sync lock);
* takes the site's per-image lock ``remote-glance.<backend>.<image>``,
  non-blocking: the node that holds it reads the image from central and
  says so in its capabilities; the others read it from that node.

A member's capabilities are signed with the site's key
(``remote_glance_peer_secret``), bound to its member ID: a member whose
entry is unsigned or forged is ignored (logged once), so that whoever can
write to the coordinator cannot add a node, name another peer URL or
claim a lock for a node. What such a writer can still do (hold locks, hide
members, replay a member's past entry) is said in ha-site.rst.

A coordinator that fails is logged once per episode; meanwhile every call
answers "unavailable" at once and the node fills by itself, as a node
without coordination does. After RETRY_INTERVAL seconds the next call
builds a new coordinator; its success is logged and ends the episode.

Fork safety: no network call is made while the site's lock is held (a
worker forked meanwhile, as uWSGI without lazy-apps or gunicorn --preload
do, would inherit it locked), and a forked child resets every Site's lock
and state (os.register_at_fork).

tooz is imported only here, and only when a site is configured: a
single-node edge needs nothing beyond requirements.txt.
"""

import hashlib
import hmac
import json
import logging
import os
import socket
import threading
import time
import uuid
import weakref

from glance_store_remote import exceptions
from glance_store_remote import upstream

LOG = logging.getLogger(__name__)

# Seconds a failed coordinator is left alone before a new one is tried.
RETRY_INTERVAL = 5.0
# Seconds a call waits for another thread's start of the coordinator.
START_WAIT = 30.0

# Every Site of this process, reset in a forked child.
_SITES = weakref.WeakSet()


class Unavailable(exceptions.RemoteGlanceError):
    """The coordinator cannot be used now; the node works by itself."""


def check_installed():
    """Raise ImportError with a clear message unless tooz is installed."""
    try:
        import tooz.coordination  # noqa: F401
    except ImportError as e:
        raise ImportError(
            'remote_glance_coordination_url needs the Python package tooz '
            '(pip install glance-store-remote[site], plus the driver of '
            'your coordinator, e.g. etcd3gw for etcd): %s' % e) from None


def member_mac(secret, backend, capabilities):
    """The hex HMAC-SHA256 of a member's capabilities (without ``sig``),
    which name its member ID.
    """
    body = {k: v for k, v in capabilities.items() if k != 'sig'}
    message = ('site-member-v1\n%s\n' % backend).encode() + json.dumps(
        body, sort_keys=True, separators=(',', ':')).encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def _member_name(member):
    return member.decode('utf-8', 'replace') if isinstance(
        member, bytes) else str(member)


class Site:
    """This process's view of the site of one backend.

    :param backend: the backend group name
    :param url: the tooz backend URL
    :param peer_url: this node's peer URL, advertised to the site
    :param clock: for tests
    :param secret: the site's key (remote_glance_peer_secret), which signs
        this member's capabilities and checks the others'; it can also be
        given later with set_secret() (before the first call). Without one
        no member is trusted and this one is not signed.

    Thread safe. Cost of a call while the coordinator works: one or two
    round trips to it; while it is down: none (Unavailable at once).
    """

    def __init__(self, backend, url, peer_url, clock=time.monotonic,
                 secret=None):
        self.backend = backend
        self.url = url
        self.peer_url = peer_url
        self.group = ('remote-glance.%s' % backend).encode()
        self._secret = secret
        self._clock = clock
        self._pid = os.getpid()
        self._reset()
        self._down_since = None
        self._retry_at = 0.0
        # Member IDs whose unsigned entry was logged.
        self._ignored = set()
        _SITES.add(self)

    def _reset(self):
        """A fresh lock and no coordinator (at start, and in a forked
        child: the parent's lock may have been held by a thread that did
        not follow, and its coordinator's heartbeat did not either).
        """
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._coordinator = None
        self._member = None
        self._starting = False
        # Images this process reads from central for the site, and the
        # site locks it holds with a claim ({name: claim}).
        self._filling = set()
        self._held = {}

    def _after_fork(self):
        self._reset()
        self._pid = os.getpid()

    def set_secret(self, secret):
        """The site's key, when it was not given to the constructor."""
        self._secret = secret

    def __repr__(self):
        # The URL may hold credentials (user:password@): never shown.
        return '<Site %s>' % self.backend

    # -- the coordinator ---------------------------------------------------

    def _get(self):
        """The working coordinator of this process, started if needed
        (outside the lock: no network call is made while it is held).

        :raises Unavailable
        """
        with self._cond:
            if self._pid != os.getpid():
                # A forked child that register_at_fork did not reach.
                self._after_fork()
            deadline = None
            while True:
                if self._coordinator is not None:
                    return self._coordinator
                if self._down_since is not None and (
                        self._clock() < self._retry_at):
                    raise Unavailable('coordinator unavailable')
                if not self._starting:
                    break
                # Another thread starts it: wait for its outcome.
                now = time.monotonic()
                deadline = deadline or now + START_WAIT
                if now >= deadline:
                    raise Unavailable('coordinator still starting')
                self._cond.wait(deadline - now)
            self._starting = True
            pid = self._pid
            member = '%s-%d-%s' % (socket.gethostname(), os.getpid(),
                                   uuid.uuid4().hex[:8])
            self._member = member
            capabilities = self._capabilities_locked()
        try:
            coordinator = self._start(member, capabilities)
        except Exception as e:
            with self._cond:
                if self._pid == pid:
                    self._starting = False
                    self._failed_locked(e)
                    self._cond.notify_all()
            raise Unavailable(str(e)) from None
        with self._cond:
            if self._pid != pid:
                # Forked meanwhile: this child did not start it.
                raise Unavailable('coordinator started before a fork')
            self._starting = False
            self._coordinator = coordinator
            self._cond.notify_all()
            if self._down_since is not None:
                LOG.warning('remote-glance backend %r: the site coordinator '
                            'is back after %.0f s; the site fills each '
                            'image once again', self.backend,
                            self._clock() - self._down_since)
                self._down_since = None
            return coordinator

    def _start(self, member, capabilities):
        from tooz import coordination
        coordinator = coordination.get_coordinator(self.url, member.encode())
        coordinator.start(start_heart=True)
        try:
            try:
                coordinator.create_group(self.group).get()
            except coordination.GroupAlreadyExist:
                pass
            coordinator.join_group(self.group,
                                   capabilities=capabilities).get()
        except coordination.MemberAlreadyExist:
            pass
        except BaseException:
            _stop_quietly(coordinator)
            raise
        return coordinator

    def _capabilities_locked(self):
        capabilities = {'peer_url': self.peer_url,
                        'filling': sorted(self._filling),
                        'held': dict(self._held),
                        'member': self._member}
        if self._secret:
            capabilities['sig'] = member_mac(self._secret, self.backend,
                                             capabilities)
        return capabilities

    def failed(self, error):
        """Record that the coordinator failed under a call (*error*); the
        node works by itself until it returns.
        """
        with self._lock:
            self._failed_locked(error)

    def _failed_locked(self, error):
        coordinator, self._coordinator = self._coordinator, None
        if coordinator is not None:
            # Its heartbeat thread would go on failing: stop it, in the
            # background (a stop may wait for the coordinator's timeout).
            threading.Thread(target=_stop_quietly, args=(coordinator,),
                             daemon=True).start()
        self._retry_at = self._clock() + RETRY_INTERVAL
        if self._down_since is None:
            self._down_since = self._clock()
            LOG.warning('remote-glance backend %r: the site coordinator '
                        'failed (%s: %s); each node fills its cache by '
                        'itself until it returns', self.backend,
                        type(error).__name__, upstream.redact(str(error)))
        else:
            LOG.debug('site coordinator still failing: %s',
                      upstream.redact(str(error)))

    def join_in_background(self):
        """Join the site now, without waiting (at start): the other nodes
        then agree on the membership before this node's first fill.
        """
        def join():
            try:
                self._get()
            except Unavailable:
                pass
        thread = threading.Thread(target=join, name='site-join', daemon=True)
        thread.start()
        return thread

    @property
    def available(self):
        """False during a failure episode (until the next retry works)."""
        return self._down_since is None

    # -- what the site offers ----------------------------------------------

    def try_lock(self, name, claim=False):
        """Take the site's lock *name* (an image ID, ``sync``,
        ``wan-slot-<k>``) without waiting.

        :param claim: say in this member's signed capabilities that it
            holds the lock, since when (SiteLock.renew() refreshes it):
            what holder() answers and what tells a slot a node holds from
            one an intruder holds (wan.py)
        :returns: a lock to release() when the node is done, or None when
            another holds it
        :raises Unavailable: the coordinator cannot be used
        """
        coordinator = self._get()
        lock = coordinator.get_lock(self._lock_name(name))
        try:
            acquired = lock.acquire(blocking=False)
        except Exception as e:
            self.failed(e)
            raise Unavailable(str(e)) from None
        if not acquired:
            return None
        held = SiteLock(self, lock, name, claimed=claim)
        if claim:
            now = time.time()
            with self._lock:
                self._held[name] = {'host': socket.gethostname(),
                                    'pid': os.getpid(), 'since': now,
                                    'renewed': now}
            self._publish_quietly()
        return held

    def _lock_name(self, name):
        return ('remote-glance.%s.%s' % (self.backend, name)).encode()

    def break_lock(self, name):
        """Break the site's lock *name*, whoever holds it (one that no node
        claims: wan.py). True when it was held.

        :raises Unavailable
        """
        coordinator = self._get()
        try:
            return bool(coordinator.get_lock(self._lock_name(name)).break_())
        except NotImplementedError:
            return False
        except Exception as e:
            self.failed(e)
            raise Unavailable(str(e)) from None

    def holder(self, name):
        """Who holds the site's lock *name*, as a node of the site claims
        it: ``{'member', 'peer_url', 'host', 'pid', 'since', 'age'}``
        (*since*: wall-clock seconds when taken; *age*: seconds since its
        holder last renewed the claim), or None when no signed member
        claims it (free, held by a node that does not claim it, or by
        someone who is no node of the site).

        :raises Unavailable
        """
        now = time.time()
        for capabilities in self.signed_members():
            claim = (capabilities.get('held') or {}).get(name)
            if isinstance(claim, dict):
                return {'member': capabilities['member'],
                        'peer_url': capabilities.get('peer_url'),
                        'host': claim.get('host'), 'pid': claim.get('pid'),
                        'since': claim.get('since'),
                        'age': max(0.0, now - float(
                            claim.get('renewed') or claim.get('since') or
                            0))}
        return None

    def advertise(self, image_id, filling=True):
        """Tell the site that this node reads *image_id* from central
        (or, with *filling* False, no longer does).

        :raises Unavailable
        """
        with self._lock:
            if filling:
                self._filling.add(image_id)
            else:
                self._filling.discard(image_id)
        self._publish()

    def _publish(self):
        """Update this member's signed capabilities.

        :raises Unavailable
        """
        coordinator = self._get()
        with self._lock:
            capabilities = self._capabilities_locked()
        try:
            try:
                coordinator.update_capabilities(self.group,
                                                capabilities).get()
            except NotImplementedError:
                # A driver without it (tooz's file driver): join again.
                coordinator.leave_group(self.group).get()
                coordinator.join_group(self.group,
                                       capabilities=capabilities).get()
        except Exception as e:
            self.failed(e)
            raise Unavailable(str(e)) from None

    def _publish_quietly(self):
        try:
            self._publish()
        except Unavailable:
            pass

    def _unclaim(self, name):
        with self._lock:
            self._held.pop(name, None)
        self._publish_quietly()

    def _renew(self, name):
        with self._lock:
            claim = self._held.get(name)
            if claim is None:
                return
            claim['renewed'] = time.time()
        self._publish_quietly()

    def signed_members(self):
        """The capabilities of every member of the site that the site's key
        signed (this one included); the others are ignored, each logged
        once.

        Cost: 1 + (number of members) calls to the coordinator.

        :raises Unavailable
        """
        coordinator = self._get()
        from tooz import coordination as tooz_coordination
        found = []
        try:
            members = coordinator.get_members(self.group).get()
            results = [(m, coordinator.get_member_capabilities(self.group,
                                                               m))
                       for m in members]
            for member, result in results:
                try:
                    caps = result.get()
                except tooz_coordination.MemberNotJoined:
                    # A member that left between the two calls.
                    continue
                if self._trusted(_member_name(member), caps):
                    found.append(caps)
        except Exception as e:
            self.failed(e)
            raise Unavailable(str(e)) from None
        return found

    def _trusted(self, member, caps):
        """Whether *caps* are the signed entry of *member*."""
        good = (isinstance(caps, dict) and self._secret and
                caps.get('member') == member and
                isinstance(caps.get('sig'), str) and hmac.compare_digest(
                    member_mac(self._secret, self.backend, caps).encode(),
                    caps['sig'].encode('ascii', 'replace')))
        if not good and member not in self._ignored:
            self._ignored.add(member)
            LOG.warning('remote-glance backend %r: site member %r is not '
                        'signed with the site key%s: ignored (a node with '
                        'another remote_glance_peer_secret, or someone '
                        'writing to the coordinator)', self.backend,
                        member[:100], '' if self._secret else
                        ' (this process has no site key)')
        return bool(good)

    def members(self):
        """{peer URL: set of the image IDs it reads from central} of the
        other signed members of the site (this node's URL excluded).

        Cost: 1 + (number of members) calls to the coordinator.

        :raises Unavailable
        """
        found = {}
        for caps in self.signed_members():
            if caps.get('peer_url') and isinstance(caps['peer_url'], str):
                found.setdefault(caps['peer_url'], set()).update(
                    i for i in caps.get('filling') or ()
                    if isinstance(i, str))
        found.pop(self.peer_url, None)
        return found

    def stop(self):
        """Leave the site (at shutdown); best effort."""
        with self._lock:
            coordinator, self._coordinator = self._coordinator, None
        if coordinator is not None and self._pid == os.getpid():
            _stop_quietly(coordinator)


class SiteLock:
    """A site lock held by this node; release() is idempotent and never
    raises (a coordinator gone meanwhile lets the lock expire).
    """

    def __init__(self, site, lock, name, claimed=False):
        self._site = site
        self._lock = lock
        self.name = self.image_id = name
        self._claimed = claimed
        self._released = False

    def renew(self):
        """Say again that this node holds the lock (a claim's age is what
        a slot's bound counts, wan.py); best effort.
        """
        if self._claimed and not self._released:
            self._site._renew(self.name)

    def release(self):
        if self._released:
            return
        self._released = True
        try:
            self._lock.release()
        except Exception as e:
            LOG.debug('site lock %s not released (it expires): %s',
                      self.name, e)
        if self._claimed:
            self._site._unclaim(self.name)


def _after_fork_in_child():
    for site in list(_SITES):
        site._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _stop_quietly(coordinator):
    try:
        coordinator.stop()
    except Exception as e:
        LOG.debug('stopping a site coordinator: %s', e)
