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

"""One place assembles a remote-glance backend from its configuration
group: the cache, central's client, the WAN gate, the site and the read
path, each built once and whole (nothing is wired in afterwards).

glance-api's Store asks ``for_node``; the CLI asks ``for_prefetch`` and
``member_site``. What differs between them is said here, not re-written:
a node reconciles its cache at start, joins its site as a peer (others read
from it, and it relays records for them); the CLI checks that glance-api
can open what it writes, takes the site's WAN slots but is no peer.
"""

import logging

from glance_store_remote import breaker
from glance_store_remote import cache as cache_module
from glance_store_remote import coordination
from glance_store_remote import exceptions
from glance_store_remote import readthrough
from glance_store_remote import site_source
from glance_store_remote import upstream
from glance_store_remote import wan

LOG = logging.getLogger(__name__)


class ConfigError(exceptions.RemoteGlanceError):
    """The backend group cannot describe a working backend; ``str()`` says
    what to set.
    """


class Backend:
    """The parts of one backend; any may be None where the configuration
    has none (no cache: no read path; no coordinator: no site).
    """

    def __init__(self, cache, central, gate, site=None, site_source=None,
                 reader=None):
        self.cache = cache
        self.central = central
        self.gate = gate
        self.site = site
        self.site_source = site_source
        self.reader = reader


def stall_timeout(group):
    """Seconds a follower waits for a fill that makes no progress: two
    of central's timeouts (a takeover's request may wait one) and a margin.
    """
    return 2 * (group.timeout or 60) + 5


def for_node(conf, backend):
    """The backend of a glance-api node.

    :raises ConfigError
    """
    group = conf[backend]
    if not (group.auth_type or group.endpoint_override):
        raise ConfigError('set auth_type (and its options) or '
                          'endpoint_override in [%s] to say where central '
                          'Glance is' % backend)
    cache = None
    if group.remote_glance_cache_dir:
        try:
            cache = cache_module.Cache(group.remote_glance_cache_dir,
                                       group.remote_glance_cache_max_size,
                                       counting=group.remote_glance_metrics)
            for change in cache.reconcile():
                LOG.info('cache of backend %s: %s', backend, change)
        except exceptions.CacheError as e:
            raise ConfigError('remote_glance_cache_dir: %s' % e)
    else:
        LOG.warning('remote-glance backend %s has no remote_glance_cache_dir: '
                    'its images are read from central every time and '
                    'unavailable while central is unreachable', backend)
    site = _node_site(conf, group, backend) if cache is not None else None
    make_peer = relay = None
    if site is not None:
        make_peer = site_source.peer_maker(
            backend, group.remote_glance_peer_secret,
            group.remote_glance_chunk_size, group.timeout or 60,
            group.remote_glance_peer_ca_file)
        # The site asks central about an image once (not once per worker
        # of every node).
        relay = site_source.RecordRelay(site, make_peer).central_record
    central = _central(conf, backend, cache, relay)
    gate = _gate(central, group, cache, site)
    source = reader = None
    if site is not None:
        source = site_source.SiteSource(
            site, gate, group.remote_glance_peer_secret,
            group.remote_glance_chunk_size, timeout=group.timeout or 60,
            make_peer=make_peer,
            find_timeout=site_source.FIND_TIMEOUT + (
                group.remote_glance_fill_slot_wait
                if group.remote_glance_max_fills else 0))
        site.join_in_background()
    if cache is not None:
        reader = readthrough.ReadThrough(
            cache, gate, group.remote_glance_chunk_size,
            stall_timeout=stall_timeout(group), site=source)
    return Backend(cache, central, gate, site, source, reader)


def for_prefetch(conf, backend):
    """The backend of ``glance-remote prefetch``: its cache (required), a
    read path through the same locks and WAN limits as glance-api's, and
    the site only for its WAN slots (the caller stops it).

    :raises ConfigError
    """
    group = conf[backend]
    cache = cli_cache(group, backend)
    central = _central(conf, backend, cache, None)
    site = None
    if group.remote_glance_coordination_url and group.remote_glance_max_fills:
        site = member_site(group, backend)
    gate = _gate(central, group, cache, site)
    reader = readthrough.ReadThrough(
        cache, gate, group.remote_glance_chunk_size,
        stall_timeout=stall_timeout(group))
    return Backend(cache, central, gate, site, None, reader)


def cli_cache(group, backend):
    """The cache a CLI run uses, owned as glance-api's (it must be able to
    open what this run creates).

    :raises ConfigError
    """
    if not group.remote_glance_cache_dir:
        raise ConfigError('[%s] remote_glance_cache_dir is not set: this '
                          'backend has no cache' % backend)
    try:
        cache_module.check_owner(group.remote_glance_cache_dir)
        return cache_module.Cache(group.remote_glance_cache_dir,
                                  group.remote_glance_cache_max_size,
                                  counting=group.remote_glance_metrics)
    except exceptions.CacheError as e:
        raise ConfigError('[%s] remote_glance_cache_dir: %s' % (backend, e))


def member_site(group, backend):
    """A CLI run's coordination.Site (the caller stops it): a member of the
    site without a peer URL, so no node ever reads from it; signed with the
    site key when the node has one, so that the others trust what it
    claims (the sync lock it holds).

    :raises ConfigError: tooz is not installed
    """
    try:
        coordination.check_installed()
    except ImportError as e:
        raise ConfigError(str(e))
    return coordination.Site(backend, group.remote_glance_coordination_url,
                             None, secret=group.remote_glance_peer_secret)


def _node_site(conf, group, backend):
    """A node's coordination.Site, or None (unset
    remote_glance_coordination_url: the node fills by itself).

    :raises ConfigError: coordination without tooz, a peer secret or a peer
        URL
    """
    if not group.remote_glance_coordination_url:
        return None
    try:
        coordination.check_installed()
    except ImportError as e:
        raise ConfigError(str(e))
    secret = group.remote_glance_peer_secret
    if not secret or len(secret) < 16:
        raise ConfigError('remote_glance_coordination_url needs '
                          'remote_glance_peer_secret (at least 16 '
                          'characters, the same on every node of the site)')
    peer_url = group.remote_glance_peer_url or getattr(
        conf, 'worker_self_reference_url', None)
    if not peer_url:
        raise ConfigError('remote_glance_coordination_url needs '
                          'remote_glance_peer_url (or '
                          'worker_self_reference_url): the URL at which the '
                          'other nodes reach this one')
    return coordination.Site(backend, group.remote_glance_coordination_url,
                             peer_url, secret=secret)


def _central(conf, backend, cache, relay):
    """Central's client, its circuit breaker shared through the cache's
    index when there is one.
    """
    state = breaker.IndexState(cache, backend) if cache is not None else None
    try:
        return upstream.Central.from_conf(conf, backend, breaker_state=state,
                                          record_relay=relay)
    except Exception as e:
        raise ConfigError('[%s] cannot describe a central Glance: %s'
                          % (backend, upstream.redact(str(e))))


def _gate(central, group, cache, site):
    """Central's data behind the WAN limits (wan.py)."""
    try:
        return wan.gate_from_conf(central, group,
                                  cache.wan_slot_dir if cache else None, site)
    except ValueError as e:
        raise ConfigError(str(e))
