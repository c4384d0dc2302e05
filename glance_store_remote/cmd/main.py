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

"""``glance-remote``: the operator's command line for an edge Glance.

It reads the edge's glance-api.conf to find a remote-glance backend group,
and talks to central exactly as the driver does, with that group's
credentials. Subcommands:

* ``check``: can this edge reach and authenticate to central?
* ``show ID``: central's record of an image, as the edge sees it.
* ``cache list|pin|unpin|evict|verify|stats``: the backend's local cache.
  These work on the cache directory with the same locks and index as the
  glance-api workers, so they are safe while glance-api serves. They (and
  ``prefetch``) refuse to run as another user than the directory's owner
  (cache.check_owner).
* ``import``: create edge images with central's IDs and full records, through
  the edge's API with the operator's OpenStack credentials (``--os-cloud``,
  clouds.yaml or ``OS_*`` variables, as openstackclient).
* ``prefetch``: pull images into the cache before an outage, verified;
  with ``--store``, then have the edge Glance copy them into one of its own
  stores (Glance's copy-image, e.g. into the edge's Ceph for nova's clones)
  and release the cache entries (store_copy.py).
* ``sync``: bring imported records up to date with central.

``import`` and ``sync`` change an existing edge image only when it is
provably their own (catalog.not_ours); anything else is a conflict,
reported, left alone, and exit code 1.
"""

import argparse
import concurrent.futures
import datetime
import json
import sys
import time

from oslo_config import cfg

from glance_store_remote import backend as backend_module
from glance_store_remote import breaker
from glance_store_remote import cache
from glance_store_remote import catalog
from glance_store_remote.cmd import progress
from glance_store_remote import exceptions
from glance_store_remote import locations
from glance_store_remote import opts
from glance_store_remote import record_rules
from glance_store_remote import store_copy
from glance_store_remote import upstream

DEFAULT_CONFIG_FILE = '/etc/glance/glance-api.conf'
DRIVER_NAME = 'remote-glance'


class UsageError(Exception):
    """The command line or the configuration cannot be used as given."""


def load_backend(config_file, backend=None):
    """Read *config_file* and return (conf, backend group name).

    Without *backend*, the only remote-glance backend of
    ``enabled_backends`` is used.

    :raises UsageError: unreadable file, no or several remote-glance
        backends, or a backend that is not remote-glance
    """
    conf = cfg.ConfigOpts()
    conf.register_opt(cfg.DictOpt('enabled_backends'))
    try:
        conf(args=[], project='glance', default_config_files=[config_file])
    except (cfg.Error, OSError) as e:
        raise UsageError('cannot read %s: %s' % (config_file, e))
    enabled = conf.enabled_backends or {}
    ours = sorted(name for name, kind in enabled.items()
                  if kind == DRIVER_NAME)
    if backend is None:
        if len(ours) != 1:
            raise UsageError(
                'enabled_backends in %s has %s remote-glance backends (%s); '
                'name one with --backend'
                % (config_file, len(ours) or 'no', ', '.join(ours) or '-'))
        backend = ours[0]
    elif backend not in ours:
        raise UsageError('backend %r is not a remote-glance backend in '
                         'enabled_backends of %s' % (backend, config_file))
    conf.register_opts(opts.store_opts, group=backend)
    opts.register_keystoneauth_opts(conf, backend)
    return conf, backend


def _central(conf, backend, breaker_state=None):
    try:
        return upstream.Central.from_conf(conf, backend,
                                          breaker_state=breaker_state)
    except Exception as e:
        raise UsageError('[%s] cannot describe a central Glance: %s'
                         % (backend, upstream.redact(str(e))))


def cmd_check(args, conf, backend):
    central = _central(conf, backend)
    endpoint = central.probe()
    _emit(args, {'backend': backend, 'endpoint': endpoint, 'ok': True},
          'backend %s: central Glance at %s answers and accepts our '
          'credentials' % (backend, endpoint))


def cmd_show(args, conf, backend):
    central = _central(conf, backend)
    record = central.fetch_record(args.image_id)
    _emit(args, record.raw, '\n'.join(
        '%-20s %s' % (key, record.raw[key]) for key in sorted(record.raw)))


def _cache(conf, backend):
    try:
        return backend_module.cli_cache(conf[backend], backend)
    except backend_module.ConfigError as e:
        raise UsageError(str(e))


def _when(timestamp):
    return datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def cmd_cache_list(args, conf, backend):
    if args.site:
        return _site_cache_list(args, conf, backend)
    rows = [{'image_id': e.image_id,
             'size': e.size,
             'state': e.state,
             'pinned': bool(e.pinned),
             'last_access': _when(e.last_access)}
            for e in reversed(_cache(conf, backend).entries())]
    lines = ['%-36s %14s  %-8s %-6s %s' % (
        'IMAGE', 'BYTES', 'STATE', 'PINNED', 'LAST ACCESS')]
    lines += ['%-36s %14d  %-8s %-6s %s' % (
        r['image_id'], r['size'], r['state'], 'yes' if r['pinned'] else '',
        r['last_access']) for r in rows]
    _emit(args, rows, '\n'.join(lines))


def _set_pin(args, conf, backend, pinned):
    store = _cache(conf, backend)
    missing = [i for i in args.image_ids if not store.set_pinned(i, pinned)]
    done = [i for i in args.image_ids if i not in missing]
    _emit(args, {'pinned' if pinned else 'unpinned': done,
                 'not_cached': missing},
          '\n'.join(['%s %s' % (i, 'pinned' if pinned else 'unpinned')
                     for i in done] +
                    ['%s not cached' % i for i in missing]))
    if missing:
        raise Failed()


def cmd_cache_pin(args, conf, backend):
    _set_pin(args, conf, backend, True)


def cmd_cache_unpin(args, conf, backend):
    _set_pin(args, conf, backend, False)


def cmd_cache_evict(args, conf, backend):
    store = _cache(conf, backend)
    results = {i: store.evict(i, force_pinned=args.force)
               for i in args.image_ids}
    _emit(args, results, '\n'.join('%s %s' % item
                                   for item in results.items()))
    if any(r not in ('evicted', 'absent') for r in results.values()):
        raise Failed()


def cmd_cache_verify(args, conf, backend):
    """Exit 1 when an entry is bad. An entry whose hash this host refuses
    (md5 under FIPS) is listed as unchecked, neither bad nor removed.
    """
    if args.site:
        return _site_cache_verify(args, conf, backend)
    report = _cache(conf, backend).verify(fix=args.fix)
    unchecked = [(i, p) for i, p in report if isinstance(p, cache.Unchecked)]
    bad = [(i, p) for i, p in report
           if p and not isinstance(p, cache.Unchecked)]
    removed = [i for i, _ in bad] if args.fix else []
    _emit(args, {'checked': len(report) - len(unchecked),
                 'bad': [{'image_id': i, 'problem': p} for i, p in bad],
                 'unchecked': [{'image_id': i, 'problem': p}
                               for i, p in unchecked],
                 'removed': removed},
          '\n'.join(['%s %s%s' % (i, p or 'ok',
                                  ' (removed)' if i in removed else '')
                     for i, p in report] +
                    ['%d entries checked, %d bad, %d could not be checked'
                     % (len(report) - len(unchecked), len(bad),
                        len(unchecked))]))
    if bad:
        raise Failed()


def cmd_cache_stats(args, conf, backend):
    if args.site:
        return _site_cache_stats(args, conf, backend)
    store = _cache(conf, backend)
    stats = store.stats()
    group = conf[backend]
    state, failures, remaining = breaker.Breaker(
        group.remote_glance_breaker_threshold,
        group.remote_glance_breaker_reset,
        state=breaker.IndexState(store, backend)).state()
    stats.update(breaker=state, breaker_failures=failures,
                 breaker_seconds_to_probe=round(remaining, 1))
    _emit(args, stats, '\n'.join('%-24s %s' % (key, stats[key])
                                 for key in sorted(stats)))


def _site_views(conf, backend, verify=False):
    """{peer URL: the node's cache view, or None (not reachable)} of every
    node of the site, asked over the peer path (peers.cache_view), all
    nodes at once; with *verify*, each node's verify report.
    """
    from glance_store_remote import coordination
    from glance_store_remote.peers import client
    group = conf[backend]
    if not group.remote_glance_coordination_url:
        raise UsageError('--site: [%s] remote_glance_coordination_url is '
                         'not set: this node belongs to no site' % backend)
    if not group.remote_glance_peer_secret:
        raise UsageError('--site: [%s] remote_glance_peer_secret is not '
                         'set: the nodes answer only signed requests'
                         % backend)
    site = _cli_site(group, backend)
    try:
        members = site.members()
    except coordination.Unavailable as e:
        print('glance-remote: --site: the site coordinator cannot be used: '
              '%s' % upstream.redact(str(e)), file=sys.stderr)
        raise Failed()
    finally:
        site.stop()

    def ask(url):
        peer = client.Peer(backend, url, group.remote_glance_peer_secret,
                           group.remote_glance_chunk_size,
                           timeout=group.timeout or 60,
                           ca_file=group.remote_glance_peer_ca_file)
        try:
            return peer.cache_view(verify=verify)
        except client.PeerUnreachable as e:
            print('glance-remote: %s' % e, file=sys.stderr)
            return None
    urls = sorted(members)
    with concurrent.futures.ThreadPoolExecutor(max(1, len(urls))) as pool:
        views = dict(zip(urls, pool.map(ask, urls)))
    if not views:
        print('glance-remote: --site: no node of the site is running',
              file=sys.stderr)
        raise Failed()
    return views


def _site_cache_list(args, conf, backend):
    views = _site_views(conf, backend)
    rows = sorted(
        (dict(entry, node=url, last_access=_when(entry['last_access']))
         for url, view in views.items() if view
         for entry in view['entries']),
        key=lambda row: row['last_access'], reverse=True)
    lines = ['%-36s %14s  %-8s %-6s %-20s %s' % (
        'IMAGE', 'BYTES', 'STATE', 'PINNED', 'LAST ACCESS', 'NODE')]
    lines += ['%-36s %14d  %-8s %-6s %-20s %s' % (
        r['image_id'], r['size'], r['state'], 'yes' if r['pinned'] else '',
        r['last_access'], r['node']) for r in rows]
    lines += ['%s: not reachable' % url
              for url, view in views.items() if view is None]
    _emit(args, rows, '\n'.join(lines))
    if None in views.values():
        raise Failed()


def _site_cache_stats(args, conf, backend):
    views = _site_views(conf, backend)
    nodes = {url: view and view['stats'] for url, view in views.items()}
    total = {}
    for stats in filter(None, nodes.values()):
        for key, value in stats.items():
            total[key] = total.get(key, 0) + value
    # Images held somewhere in the site, each counted once.
    total['site_images'] = len({
        e['image_id'] for view in views.values() if view
        for e in view['entries'] if e['state'] == 'complete'})
    lines = ['%-24s %s' % (key, total[key]) for key in sorted(total)]
    for url, stats in nodes.items():
        lines.append('')
        lines.append(url if stats else '%s: not reachable' % url)
        lines += ['  %-22s %s' % (key, stats[key])
                  for key in sorted(stats or ())]
    _emit(args, {'site': total, 'nodes': nodes}, '\n'.join(lines))
    if None in nodes.values():
        raise Failed()


def _site_cache_verify(args, conf, backend):
    if args.fix:
        raise UsageError('--site does not remove entries: run cache verify '
                         '--fix on the node that holds a bad one')
    views = _site_views(conf, backend, verify=True)
    rows = [dict(item, node=url) for url, view in views.items() if view
            for item in view['report']]
    bad = [r for r in rows if r['problem'] and not r['unchecked']]
    unchecked = [r for r in rows if r['unchecked']]
    _emit(args, {'checked': len(rows) - len(unchecked),
                 'bad': bad, 'unchecked': unchecked,
                 'unreachable': [u for u, v in views.items() if v is None]},
          '\n'.join(
              ['%s %s on %s' % (r['image_id'], r['problem'] or 'ok',
                                r['node']) for r in rows] +
              ['%s: not reachable' % url
               for url, view in views.items() if view is None] +
              ['%d entries checked on %d nodes, %d bad, %d could not be '
               'checked' % (len(rows) - len(unchecked),
                            sum(v is not None for v in views.values()),
                            len(bad), len(unchecked))]))
    if bad or None in views.values():
        raise Failed()


class Failed(Exception):
    """The command ran but found or left a problem (exit code 1)."""


def _edge_adapter(args):
    """An adapter on the edge's images API (/v2), with the operator's
    OpenStack credentials.
    """
    import openstack
    try:
        return openstack.connect(cloud=args.os_cloud).image
    except Exception as e:
        raise UsageError('cannot use the edge Glance with your OpenStack '
                         'credentials (--os-cloud, clouds.yaml or OS_* '
                         'variables): %s' % upstream.redact(str(e)))


def _edge(args):
    """The edge's images API, with the operator's OpenStack credentials."""
    return catalog.EdgeAPI(_edge_adapter(args))


def _selected(args, central):
    """Central image IDs named or selected on the command line, in order."""
    ids = list(args.image_ids)
    if args.all_public:
        ids += central.list_images(visibility='public')
    for tag in args.tag or ():
        ids += central.list_images(tag=tag)
    for pair in args.property or ():
        key, sep, value = pair.partition('=')
        if not sep or not key:
            raise UsageError('--property takes KEY=VALUE, not %r' % pair)
        ids += central.list_images(**{key: value})
    if not ids:
        raise UsageError('name central image IDs, or select them with '
                         '--all-public, --tag or --property')
    return list(dict.fromkeys(ids))


def _report(args, results, failed):
    """Print per-image results; raise Failed if any image failed."""
    _emit(args, [{'image_id': i, 'result': r, 'details': d}
                 for i, r, d in results],
          '\n'.join('%s %s%s' % (i, r, ': %s' % d if d else '')
                    for i, r, d in results))
    if failed:
        raise Failed()


def cmd_import(args, conf, backend):
    if args.store and not args.prefetch:
        raise UsageError('--store needs --prefetch: the data goes through '
                         'the cache into the store')
    central = _central(conf, backend)
    selected = _selected(args, central)
    importer = catalog.Importer(
        central, _edge(args), backend,
        record_rules.CopyRules.from_conf(conf, backend))
    results, imported = [], []
    for image_id in selected:
        try:
            action, details = importer.import_image(image_id)
            imported.append(image_id)
        except catalog.ForeignImage as e:
            action, details = 'conflict', str(e)
        except exceptions.RemoteGlanceError as e:
            action, details = 'failed', str(e)
        results.append((image_id, action, details))
    failed = len(results) - len(imported)
    if args.prefetch and imported:
        if not args.json:
            _report(args, results, False)
        prefetched = _prefetch(args, conf, backend, imported)
        fetched = {i: (r, d) for i, r, d in prefetched}
        failed += sum(r == 'failed' for r, _ in fetched.values())
        copied = {}
        if args.store:
            copied = _copy_into_store(args, conf, backend, prefetched)
            failed += sum(r == 'failed' for r, _ in copied.values())
        if args.json:
            _emit(args, [{'image_id': i, 'result': r, 'details': d,
                          'prefetch': dict(zip(('result', 'details'),
                                               fetched[i]))
                          if i in fetched else None,
                          'copy': _as_dict(copied.get(i))}
                         for i, r, d in results], '')
    else:
        _report(args, results, False)
    if failed:
        raise Failed()


def cmd_prefetch(args, conf, backend):
    results = _prefetch(args, conf, backend, args.image_ids)
    failed = [r for r in results if r[1] == 'failed']
    copied = {}
    if args.store:
        copied = _copy_into_store(args, conf, backend, results)
        failed += [r for r in copied.values() if r[0] == 'failed']
    if args.json:
        _emit(args, [dict({'image_id': i, 'result': r, 'details': d},
                          **({'copy': _as_dict(copied.get(i))}
                             if args.store else {}))
                     for i, r, d in results], '')
    if failed:
        raise Failed()


def _as_dict(result):
    return dict(zip(('result', 'details'), result)) if result else None


# What _prefetch_one says of an image larger than the free cache space: it
# can still be copied into a store (read through glance-api, uncached).
_DOES_NOT_FIT = 'not cached: it does not fit the cache'


def _copy_into_store(args, conf, backend, prefetched):
    """Have the edge Glance copy each prefetched image into ``args.store``
    (Glance's copy-image, through the edge's API with the operator's
    credentials), wait for it, then release the cache entry unless another
    edge image still needs it or ``--keep-cache``.

    The edge image must have central's ID (what ``import`` and on-demand
    import create) and carry central's size and hashes, against which
    Glance checks the copy.

    :param prefetched: [(central image ID, prefetch result, details)]
    :returns: {image ID: (result, details)}, result 'copied', 'held'
        (it was there already), 'skipped' or 'failed'
    """
    target = args.store
    edge = store_copy.EdgeCopies(_edge_adapter(args))
    store = _cache(conf, backend)
    central = _central(conf, backend, breaker.IndexState(store, backend))
    results = {}
    for image_id, result, details in prefetched:
        if result == 'empty':
            results[image_id] = ('skipped', 'an empty image: nothing to copy')
        elif result == 'failed' and details != _DOES_NOT_FIT:
            results[image_id] = ('skipped', 'not copied: its prefetch failed')
        else:
            try:
                results[image_id] = _copy_one(args, edge, store, central,
                                              backend, image_id)
            except (exceptions.RemoteGlanceError, catalog.EdgeError) as e:
                results[image_id] = ('failed', str(e))
        if not args.json:
            print('%s store %s: %s: %s' % (image_id, target,
                                           results[image_id][0],
                                           results[image_id][1]))
    return results


def _copy_one(args, edge, store, central, backend, image_id):
    target = args.store
    image = edge.image(image_id)
    if image is None:
        raise store_copy.CopyError(
            'no edge image %s: import it first (glance-remote import keeps '
            "central's ID); for an edge image of another ID use Glance's "
            'copy-image import directly' % image_id)
    if store_copy.copy_state(image, target) == store_copy.COPYING:
        # Another import holds it (a new location's hashing task, a copy
        # asked by someone else): look again once it ended.
        image = edge.wait_idle(image_id, args.copy_timeout)
    done = 'held'
    if store_copy.copy_state(image, target) != store_copy.HELD:
        kept = store.stored_record(image_id)
        record = kept if kept is not None else \
            central.fetch_record(image_id).raw
        why = store_copy.refusal(image, record, backend, target)
        if why:
            raise store_copy.CopyError(why)
        edge.start_copy(image_id, target)
        image = edge.wait_for_copy(image_id, target, args.copy_timeout)
        done = 'copied'
    notes = ['%s holds it' % target]
    notes += [loc['url'] for loc in image.get('locations') or ()
              if loc.get('metadata', {}).get('store') == target]
    if image.get('disk_format') != 'raw':
        notes.append('disk_format %s: nova clones raw images only and '
                     'downloads this one' % image.get('disk_format'))
    notes.append(_release(args, edge, store, backend, image_id))
    return done, '; '.join(notes)


def _release(args, edge, store, backend, image_id):
    """Release the cache entry the store copy made redundant; say what
    happened to it.
    """
    if args.keep_cache:
        return 'cache entry kept (--keep-cache)'
    location = locations.location_url(backend, image_id)
    lacking = store_copy.lacking_copy(edge.images(), location, args.store)
    if lacking:
        return ('cache entry kept: edge images %s use it and have no copy '
                'in %s' % (', '.join(lacking), args.store))
    return 'cache entry %s' % store_copy.release_cache(store, image_id)


def _prefetch(args, conf, backend, image_ids):
    """Fill the cache in this process, through the same read path and locks
    as glance-api: a worker reading the image meanwhile joins this fill.

    :returns: [(image ID, 'cached', 'empty' (a zero-byte image: nothing
        to keep) or 'failed', details)]
    """
    try:
        # Within the site's (or node's) WAN limits, as glance-api.
        parts = backend_module.for_prefetch(conf, backend)
    except backend_module.ConfigError as e:
        raise UsageError(str(e))
    store, central, reader, site = (parts.cache, parts.central, parts.reader,
                                    parts.site)
    results = []
    try:
        for image_id in image_ids:
            try:
                results.append((image_id,) + _prefetch_one(
                    args, store, central, reader, image_id))
            except exceptions.RemoteGlanceError as e:
                if not args.json:
                    print('%s failed: %s' % (image_id, e))
                results.append((image_id, 'failed', str(e)))
    finally:
        if site is not None:
            site.stop()
    return results


def _cli_site(group, backend):
    try:
        return backend_module.member_site(group, backend)
    except backend_module.ConfigError as e:
        raise UsageError(str(e))


def _prefetch_one(args, store, central, reader, image_id):
    entry = store.entry(image_id)
    if entry is not None and entry.state == 'complete':
        if not args.json:
            print('%s already cached' % image_id)
        return 'cached', 'already'
    record = central.fetch_record(image_id)
    if not record.size:
        # Glance reads an empty image as an empty stream; the cache keeps
        # nothing for it.
        if not args.json:
            print('%s empty image: nothing to cache' % image_id)
        return 'empty', 'nothing to cache'
    shown = progress.Progress(image_id, record.size,
                              _Quiet() if args.json else sys.stdout)
    for chunk in reader.read(record, 0, record.size):
        shown.advance(len(chunk))
    reader.wait_for_fills(timeout=600)
    entry = store.entry(image_id)
    if entry is None or entry.state != 'complete':
        shown.finish('NOT cached (larger than the free cache space)')
        return 'failed', _DOES_NOT_FIT
    shown.finish('cached and verified')
    return 'cached', '%d bytes verified' % record.size


class _Quiet:
    def isatty(self):
        return False

    def write(self, text):
        pass

    def flush(self):
        pass


def cmd_sync(args, conf, backend):
    central = _central(conf, backend)
    try:
        central.probe()
    except exceptions.UpstreamError as e:
        print('glance-remote: central is unreachable; nothing was changed: '
              '%s' % e, file=sys.stderr)
        raise Failed()
    lock = _site_sync_lock(conf, backend)
    if isinstance(lock, _AnotherSync):
        # Not a success: a member that keeps the lock (a hung sync, or
        # anyone who can write to the coordinator) would otherwise stop
        # every revocation without a sound.
        print('glance-remote: sync did NOT run: the site\'s sync lock is '
              'held by %s; nothing was changed here' % lock.describe(),
              file=sys.stderr)
        _report(args, [], 0)
        raise Failed()
    try:
        _sync(args, conf, backend, central,
              renew=lock.renew if lock is not None else None)
    finally:
        if lock is not None:
            lock.release()


class _AnotherSync:
    """The site's sync lock is held by someone else: *holder* is what
    coordination.Site.holder() said (None: no signed member claims it).
    """

    def __init__(self, holder):
        self.holder = holder

    def describe(self):
        holder = self.holder
        if holder is None:
            return ('a member that no signed node of the site claims (an old '
                    'release, a node without the site key, or whoever can '
                    'write to the coordinator): if no sync runs anywhere, '
                    'find who holds it')
        return ('%s (host %s, pid %s, for %d s, renewed %d s ago): if that '
                'process is not running sync, it hung' % (
                    holder.get('member'), holder.get('host'),
                    holder.get('pid'),
                    time.time() - float(holder.get('since') or 0),
                    holder.get('age') or 0))


def _site_sync_lock(conf, backend):
    """The site's sync lock, taken and claimed (so another run can name
    its holder): the nodes of a site share one database, and two syncs at
    once could both add a tag or a member Glance then keeps twice. None
    when the node belongs to no site or the coordinator cannot be used
    (the sync runs unserialized, and says so); an _AnotherSync when
    another holds it.
    """
    group = conf[backend]
    if not group.remote_glance_coordination_url:
        return None
    from glance_store_remote import coordination
    site = _cli_site(group, backend)
    try:
        lock = site.try_lock('sync', claim=True)
        holder = site.holder('sync') if lock is None else None
    except coordination.Unavailable as e:
        print('glance-remote: the site coordinator cannot be used (%s); '
              'syncing without the site lock' % upstream.redact(str(e)),
              file=sys.stderr)
        site.stop()
        return None
    if lock is None:
        site.stop()
        return _AnotherSync(holder)
    return _SiteSyncLock(site, lock)


class _SiteSyncLock:
    # Seconds between two renewals of the claim during a long sync.
    RENEW_EVERY = 30

    def __init__(self, site, lock):
        self._site = site
        self._lock = lock
        self._renewed = time.monotonic()

    def renew(self):
        """Refresh the claim, at most every RENEW_EVERY seconds."""
        if time.monotonic() - self._renewed >= self.RENEW_EVERY:
            self._renewed = time.monotonic()
            self._lock.renew()

    def release(self):
        self._lock.release()
        self._site.stop()


def _sync(args, conf, backend, central, renew=None):
    """Sync every edge image that has a location in *backend*.

    :param renew: callable(), called before each image (the site lock's
        claim), or None
    """
    importer = catalog.Importer(
        central, _edge(args), backend,
        record_rules.CopyRules.from_conf(conf, backend))
    store = _cache(conf, backend) if conf[backend].remote_glance_cache_dir \
        else None
    results, failed = [], 0
    for image in importer.edge.images():
        if backend not in (image.get('stores') or '').split(','):
            continue
        if renew is not None:
            renew()
        try:
            done = importer.sync_image(
                image, deleted_action=args.on_central_delete)
            if done is None:
                continue   # a user's own link, not an import
            action, details = done
            if action == 'marked' and store is not None:
                store.set_pinned(image['id'], True)
        except catalog.LocationsHidden as e:
            # The same for every image: nothing can be proven ours.
            print('glance-remote: sync stopped, nothing more was changed: '
                  '%s' % e, file=sys.stderr)
            _report(args, results, 1)
        except catalog.ForeignImage as e:
            action, details = 'conflict', str(e)
            failed += 1
        except exceptions.RemoteGlanceError as e:
            action, details = 'failed', str(e)
            failed += 1
        results.append((image['id'], action, details))
    _report(args, results, failed)


def _emit(args, data, text):
    if args.json:
        print(json.dumps(data, indent=2, sort_keys=True))
    else:
        print(text)


def build_parser():
    parser = argparse.ArgumentParser(
        prog='glance-remote',
        description='Operate the remote-glance backend of an edge Glance.')
    parser.add_argument(
        '--config-file', default=DEFAULT_CONFIG_FILE,
        help='the edge glance-api.conf (default: %(default)s)')
    parser.add_argument(
        '--backend', help='the remote-glance backend group to use (default: '
        'the only one in enabled_backends)')
    parser.add_argument('--json', action='store_true',
                        help='print JSON instead of text')
    sub = parser.add_subparsers(dest='command', required=True)
    check = sub.add_parser(
        'check', help='check that central answers and accepts the '
        "backend's credentials")
    check.set_defaults(func=cmd_check)
    show = sub.add_parser('show', help="print central's record of an image")
    show.add_argument('image_id', help='the central image ID')
    show.set_defaults(func=cmd_show)
    _add_cache_commands(sub)
    _add_catalog_commands(sub)
    return parser


def _add_catalog_commands(sub):
    def edge_auth(command):
        command.add_argument(
            '--os-cloud', default=None,
            help='the clouds.yaml cloud of the EDGE (default: OS_CLOUD or '
            'OS_* variables)')

    def store_target(command):
        command.add_argument(
            '--store', metavar='BACKEND',
            help="then have the edge Glance copy each image into this "
            "store of its own (copy-image through the edge's API, e.g. "
            "into an rbd backend, where nova clones it), and release the "
            "cache entry")
        command.add_argument(
            '--keep-cache', action='store_true',
            help='with --store: keep the cache entry after the copy')
        command.add_argument(
            '--copy-timeout', type=int, default=3600, metavar='SECONDS',
            help='with --store: how long to wait for each copy (default: '
            '%(default)s)')

    command = sub.add_parser(
        'import', help='create edge images with central IDs and records')
    command.add_argument('image_ids', nargs='*', metavar='IMAGE_ID',
                         help='central image IDs')
    command.add_argument('--all-public', action='store_true',
                         help="every public image of central")
    command.add_argument('--tag', action='append',
                         help="central's images with this tag (repeatable)")
    command.add_argument('--property', action='append', metavar='KEY=VALUE',
                         help="central's images with this property "
                         "(repeatable)")
    command.add_argument('--prefetch', action='store_true',
                         help='also pull their data into the cache')
    edge_auth(command)
    store_target(command)
    command.set_defaults(func=cmd_import)
    command = sub.add_parser(
        'prefetch', help='pull images into the cache now, verified')
    command.add_argument('image_ids', nargs='+', metavar='IMAGE_ID',
                         help='central image IDs')
    edge_auth(command)
    store_target(command)
    command.set_defaults(func=cmd_prefetch)
    command = sub.add_parser(
        'sync', help='bring imported edge records up to date with central')
    command.add_argument(
        '--on-central-delete', choices=('mark', 'deactivate'),
        default='mark', help='for an image deleted at central: only mark '
        'it (default), or also deactivate it at the edge; its cached data '
        'is pinned either way, never removed')
    edge_auth(command)
    command.set_defaults(func=cmd_sync)


def _add_cache_commands(sub):
    cache_parser = sub.add_parser(
        'cache', help="inspect and manage the backend's local cache")
    commands = cache_parser.add_subparsers(dest='cache_command',
                                           required=True)
    site_help = ('every node of the site (asked over the peer path; needs '
                 'remote_glance_coordination_url and the peer secret)')
    command = commands.add_parser(
        'list', help='entries, most recently used first')
    command.add_argument('--site', action='store_true', help=site_help)
    command.set_defaults(func=cmd_cache_list)
    for name, func, text in (
            ('pin', cmd_cache_pin, 'never evict these images'),
            ('unpin', cmd_cache_unpin, 'let these images be evicted again'),
            ('evict', cmd_cache_evict, 'remove these images now')):
        command = commands.add_parser(name, help=text)
        command.add_argument('image_ids', nargs='+', metavar='IMAGE_ID',
                             help='central image IDs')
        command.set_defaults(func=func)
        if name == 'evict':
            command.add_argument('--force', action='store_true',
                                 help='evict pinned images too')
    verify = commands.add_parser(
        'verify', help='re-hash complete entries against the record kept '
        'with them')
    verify.add_argument('--fix', action='store_true',
                        help='remove the entries that fail')
    verify.add_argument('--site', action='store_true', help=site_help)
    verify.set_defaults(func=cmd_cache_verify)
    command = commands.add_parser(
        'stats', help='counters, sizes and the circuit breaker')
    command.add_argument('--site', action='store_true', help=site_help)
    command.set_defaults(func=cmd_cache_stats)


def main(argv=None):
    """Run the command line; return the process exit code (0 success,
    1 failure, 2 bad usage).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        conf, backend = load_backend(args.config_file, args.backend)
        args.func(args, conf, backend)
    except UsageError as e:
        print('glance-remote: %s' % e, file=sys.stderr)
        return 2
    except cfg.Error as e:
        print('glance-remote: invalid configuration in %s: %s'
              % (args.config_file, e), file=sys.stderr)
        return 2
    except exceptions.RemoteGlanceError as e:
        print('glance-remote: %s' % e, file=sys.stderr)
        return 1
    except Failed:
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
