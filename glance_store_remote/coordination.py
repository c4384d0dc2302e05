"""Site coordination: the nodes of a multi-node edge site, through tooz.

Owns one tooz coordinator per remote-glance backend and process: started
on first use and again in a forked child (a coordinator's heartbeat thread
and connections do not survive a fork), with its heartbeat running. Through
it a node

* joins the site's group ``remote-glance.<backend>``, its capabilities
  naming the URL at which the other nodes read images from it (peers.py)
  and the images it is reading from central (``filling``);
* takes the site's per-image lock ``remote-glance.<backend>.<image>``,
  non-blocking: the node that holds it reads the image from central and
  says so in its capabilities; the others read it from that node.

A coordinator that fails is logged once per episode; meanwhile every call
answers "unavailable" at once and the node fills by itself, as a node
without coordination does. After RETRY_INTERVAL seconds the next call
builds a new coordinator; its success is logged and ends the episode.

tooz is imported only here, and only when a site is configured: a
single-node edge needs nothing beyond requirements.txt.
"""

import logging
import os
import socket
import threading
import time
import uuid

from glance_store_remote import upstream

LOG = logging.getLogger(__name__)

# Seconds a failed coordinator is left alone before a new one is tried.
RETRY_INTERVAL = 5.0


class Unavailable(Exception):
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


class Site:
    """This process's view of the site of one backend.

    :param backend: the backend group name
    :param url: the tooz backend URL
    :param peer_url: this node's peer URL, advertised to the site
    :param clock: for tests

    Thread safe. Cost of a call while the coordinator works: one or two
    round trips to it; while it is down: none (Unavailable at once).
    """

    def __init__(self, backend, url, peer_url, clock=time.monotonic):
        self.backend = backend
        self.url = url
        self.peer_url = peer_url
        self.group = ('remote-glance.%s' % backend).encode()
        self._clock = clock
        self._lock = threading.Lock()
        self._coordinator = None
        self._pid = None
        self._down_since = None
        self._retry_at = 0.0
        # Images this process reads from central for the site.
        self._filling = set()

    def __repr__(self):
        # The URL may hold credentials (user:password@): never shown.
        return '<Site %s>' % self.backend

    # -- the coordinator ---------------------------------------------------

    def _get(self):
        """The working coordinator of this process, started if needed.

        :raises Unavailable
        """
        with self._lock:
            if self._pid != os.getpid():
                # A forked child: the parent's coordinator is not ours (its
                # heartbeat thread did not follow us).
                self._coordinator = None
                self._pid = os.getpid()
            if self._coordinator is not None:
                return self._coordinator
            if self._down_since is not None and (
                    self._clock() < self._retry_at):
                raise Unavailable('coordinator unavailable')
            try:
                self._coordinator = self._start()
            except Exception as e:
                self._failed_locked(e)
                raise Unavailable(str(e)) from None
            if self._down_since is not None:
                LOG.warning('remote-glance backend %r: the site coordinator '
                            'is back after %.0f s; the site fills each '
                            'image once again', self.backend,
                            self._clock() - self._down_since)
                self._down_since = None
            return self._coordinator

    def _start(self):
        from tooz import coordination
        member = '%s-%d-%s' % (socket.gethostname(), os.getpid(),
                               uuid.uuid4().hex[:8])
        coordinator = coordination.get_coordinator(self.url, member.encode())
        coordinator.start(start_heart=True)
        try:
            try:
                coordinator.create_group(self.group).get()
            except coordination.GroupAlreadyExist:
                pass
            coordinator.join_group(self.group,
                                   capabilities=self._capabilities()).get()
        except coordination.MemberAlreadyExist:
            pass
        except BaseException:
            _stop_quietly(coordinator)
            raise
        return coordinator

    def _capabilities(self):
        return {'peer_url': self.peer_url, 'filling': sorted(self._filling)}

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

    def try_lock(self, image_id):
        """Take the site's lock of *image_id* without waiting.

        :returns: a lock to release() when the node stops reading the image
            from central, or None when another node holds it
        :raises Unavailable: the coordinator cannot be used
        """
        coordinator = self._get()
        lock = coordinator.get_lock(
            ('remote-glance.%s.%s' % (self.backend, image_id)).encode())
        try:
            acquired = lock.acquire(blocking=False)
        except Exception as e:
            self.failed(e)
            raise Unavailable(str(e)) from None
        return SiteLock(self, lock, image_id) if acquired else None

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
            capabilities = self._capabilities()
        coordinator = self._get()
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

    def members(self):
        """{peer URL: set of the image IDs it reads from central} of the
        other members of the site (this node's URL excluded).

        Cost: 1 + (number of members) calls to the coordinator.

        :raises Unavailable
        """
        coordinator = self._get()
        found = {}
        try:
            members = coordinator.get_members(self.group).get()
            results = [coordinator.get_member_capabilities(self.group, m)
                       for m in members]
            for result in results:
                try:
                    caps = result.get()
                except Exception as e:
                    # A member that left between the two calls.
                    if type(e).__name__ == 'MemberNotJoined':
                        continue
                    raise
                if isinstance(caps, dict) and caps.get('peer_url'):
                    found.setdefault(caps['peer_url'], set()).update(
                        caps.get('filling') or ())
        except Exception as e:
            self.failed(e)
            raise Unavailable(str(e)) from None
        found.pop(self.peer_url, None)
        return found

    def peer_urls(self):
        """The peer URLs of the other members, sorted.

        :raises Unavailable
        """
        return sorted(self.members())

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

    def __init__(self, site, lock, image_id):
        self._site = site
        self._lock = lock
        self.image_id = image_id
        self._released = False

    def release(self):
        if self._released:
            return
        self._released = True
        try:
            self._lock.release()
        except Exception as e:
            LOG.debug('site lock of image %s not released (it expires): '
                      '%s', self.image_id, e)


def _stop_quietly(coordinator):
    try:
        coordinator.stop()
    except Exception as e:
        LOG.debug('stopping a site coordinator: %s', e)
