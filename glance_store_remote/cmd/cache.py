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

"""``glance-remote cache``: the backend's local cache (list, pin, unpin,
evict, verify, stats), on this node or, with ``--site``, on every node of
the site over the peer path. They work on the cache directory with the same
locks and index as the glance-api workers, and refuse to run as another
user than the directory's owner (cache.check_owner).
"""

import sys

from glance_store_remote import breaker
from glance_store_remote import cache
from glance_store_remote.cmd import config
from glance_store_remote.cmd import output
from glance_store_remote import coordination
from glance_store_remote.peers import client
from glance_store_remote import upstream


def cmd_cache_list(args, conf, backend):
    if args.site:
        return _site_cache_list(args, conf, backend)
    rows = [{'image_id': e.image_id,
             'size': e.size,
             'state': e.state,
             'pinned': bool(e.pinned),
             'last_access': output.when(e.last_access)}
            for e in reversed(config.cache(conf, backend).entries())]
    lines = ['%-36s %14s  %-8s %-6s %s' % (
        'IMAGE', 'BYTES', 'STATE', 'PINNED', 'LAST ACCESS')]
    lines += ['%-36s %14d  %-8s %-6s %s' % (
        r['image_id'], r['size'], r['state'], 'yes' if r['pinned'] else '',
        r['last_access']) for r in rows]
    output.emit(args, rows, '\n'.join(lines))


def _set_pin(args, conf, backend, pinned):
    store = config.cache(conf, backend)
    missing = [i for i in args.image_ids if not store.set_pinned(i, pinned)]
    done = [i for i in args.image_ids if i not in missing]
    output.emit(args, {'pinned' if pinned else 'unpinned': done,
                       'not_cached': missing},
                '\n'.join(['%s %s' % (i, 'pinned' if pinned else 'unpinned')
                           for i in done] +
                          ['%s not cached' % i for i in missing]))
    if missing:
        raise output.Failed()


def cmd_cache_pin(args, conf, backend):
    _set_pin(args, conf, backend, True)


def cmd_cache_unpin(args, conf, backend):
    _set_pin(args, conf, backend, False)


def cmd_cache_evict(args, conf, backend):
    store = config.cache(conf, backend)
    results = {i: store.evict(i, force_pinned=args.force)
               for i in args.image_ids}
    output.emit(args, results, '\n'.join('%s %s' % item
                                         for item in results.items()))
    if any(r not in ('evicted', 'absent') for r in results.values()):
        raise output.Failed()


def cmd_cache_verify(args, conf, backend):
    """Exit 1 when an entry is bad. An entry whose hash this host refuses
    (md5 under FIPS) is listed as unchecked, neither bad nor removed.
    """
    if args.site:
        return _site_cache_verify(args, conf, backend)
    report = config.cache(conf, backend).verify(fix=args.fix)
    unchecked = [(i, p) for i, p in report if isinstance(p, cache.Unchecked)]
    bad = [(i, p) for i, p in report
           if p and not isinstance(p, cache.Unchecked)]
    removed = [i for i, _ in bad] if args.fix else []
    output.emit(args, {'checked': len(report) - len(unchecked),
                       'bad': [{'image_id': i, 'problem': p} for i, p in bad],
                       'unchecked': [{'image_id': i, 'problem': p}
                                     for i, p in unchecked],
                       'removed': removed},
                '\n'.join(['%s %s%s' % (i, p or 'ok',
                                        ' (removed)' if i in removed else '')
                           for i, p in report] +
                          ['%d entries checked, %d bad, %d could not be '
                           'checked' % (len(report) - len(unchecked),
                                        len(bad), len(unchecked))]))
    if bad:
        raise output.Failed()


def cmd_cache_stats(args, conf, backend):
    if args.site:
        return _site_cache_stats(args, conf, backend)
    store = config.cache(conf, backend)
    stats = store.stats()
    group = conf[backend]
    state, failures, remaining = breaker.Breaker(
        group.remote_glance_breaker_threshold,
        group.remote_glance_breaker_reset,
        state=breaker.IndexState(store, backend)).state()
    stats.update(breaker=state, breaker_failures=failures,
                 breaker_seconds_to_probe=round(remaining, 1))
    output.emit(args, stats, '\n'.join('%-24s %s' % (key, stats[key])
                                       for key in sorted(stats)))


def site_views(conf, backend, verify=False):
    """{peer URL: the node's cache view, or None (not reachable)} of every
    node of the site, asked over the peer path (peers.server.cache_view), all
    nodes at once; with *verify*, each node's verify report.
    """
    group = conf[backend]
    if not group.remote_glance_coordination_url:
        raise config.UsageError(
            '--site: [%s] remote_glance_coordination_url is not set: this '
            'node belongs to no site' % backend)
    if not group.remote_glance_peer_secret:
        raise config.UsageError(
            '--site: [%s] remote_glance_peer_secret is not set: the nodes '
            'answer only signed requests' % backend)
    site = config.site(group, backend)
    try:
        members = site.members()
    except coordination.Unavailable as e:
        print('glance-remote: --site: the site coordinator cannot be used: '
              '%s' % upstream.redact(str(e)), file=sys.stderr)
        raise output.Failed()
    finally:
        site.stop()

    views = client.cache_views(
        group, backend, members, verify=verify,
        on_unreachable=lambda url, e: print('glance-remote: %s' % e,
                                            file=sys.stderr))
    if not views:
        print('glance-remote: --site: no node of the site is running',
              file=sys.stderr)
        raise output.Failed()
    return views


def _site_cache_list(args, conf, backend):
    views = site_views(conf, backend)
    rows = sorted(
        (dict(entry, node=url, last_access=output.when(entry['last_access']))
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
    output.emit(args, rows, '\n'.join(lines))
    if None in views.values():
        raise output.Failed()


def _site_cache_stats(args, conf, backend):
    views = site_views(conf, backend)
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
    output.emit(args, {'site': total, 'nodes': nodes}, '\n'.join(lines))
    if None in nodes.values():
        raise output.Failed()


def _site_cache_verify(args, conf, backend):
    if args.fix:
        raise config.UsageError(
            '--site does not remove entries: run cache verify --fix on the '
            'node that holds a bad one')
    views = site_views(conf, backend, verify=True)
    rows = [dict(item, node=url) for url, view in views.items() if view
            for item in view['report']]
    bad = [r for r in rows if r['problem'] and not r['unchecked']]
    unchecked = [r for r in rows if r['unchecked']]
    output.emit(args, {'checked': len(rows) - len(unchecked),
                       'bad': bad, 'unchecked': unchecked,
                       'unreachable': [u for u, v in views.items()
                                       if v is None]},
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
        raise output.Failed()
