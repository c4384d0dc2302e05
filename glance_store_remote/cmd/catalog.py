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

"""``glance-remote import``, ``prefetch`` and ``sync``: edge images with
central's IDs and records (through the edge's API with the operator's
OpenStack credentials), their data pulled into the cache before an outage,
copied into a store of the edge (``--store``: store_copy.copy_image), and
their records brought up to date with central under the site's sync lock.
"""

import sys
import time

from glance_store_remote import backend as backend_module
from glance_store_remote import breaker
from glance_store_remote import catalog
from glance_store_remote.cmd import config
from glance_store_remote.cmd import output
from glance_store_remote.cmd import progress
from glance_store_remote import coordination
from glance_store_remote import exceptions
from glance_store_remote import locations
from glance_store_remote import record_rules
from glance_store_remote import store_copy
from glance_store_remote import upstream


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
            raise config.UsageError('--property takes KEY=VALUE, not %r'
                                    % pair)
        ids += central.list_images(**{key: value})
    if not ids:
        raise config.UsageError('name central image IDs, or select them with '
                                '--all-public, --tag or --property')
    return list(dict.fromkeys(ids))


def cmd_import(args, conf, backend):
    if args.store and not args.prefetch:
        raise config.UsageError('--store needs --prefetch: the data goes '
                                'through the cache into the store')
    central = config.central(conf, backend)
    selected = _selected(args, central)
    importer = catalog.Importer(
        central, config.edge(args), backend,
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
            output.report(args, results, False)
        prefetched = _prefetch(args, conf, backend, imported)
        fetched = {i: (r, d) for i, r, d in prefetched}
        failed += sum(r == 'failed' for r, _ in fetched.values())
        copied = {}
        if args.store:
            copied = _copy_into_store(args, conf, backend, prefetched)
            failed += sum(r == 'failed' for r, _ in copied.values())
        if args.json:
            output.emit(args, [{'image_id': i, 'result': r, 'details': d,
                                'prefetch': dict(zip(('result', 'details'),
                                                     fetched[i]))
                                if i in fetched else None,
                                'copy': output.as_dict(copied.get(i))}
                               for i, r, d in results], '')
    else:
        output.report(args, results, False)
    if failed:
        raise output.Failed()


def cmd_prefetch(args, conf, backend):
    results = _prefetch(args, conf, backend, args.image_ids)
    failed = [r for r in results if r[1] == 'failed']
    copied = {}
    if args.store:
        copied = _copy_into_store(args, conf, backend, results)
        failed += [r for r in copied.values() if r[0] == 'failed']
    if args.json:
        output.emit(args, [dict({'image_id': i, 'result': r, 'details': d},
                                **({'copy': output.as_dict(copied.get(i))}
                                   if args.store else {}))
                           for i, r, d in results], '')
    if failed:
        raise output.Failed()


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
    edge = store_copy.EdgeCopies(config.edge_adapter(args))
    store = config.cache(conf, backend)
    central = config.central(conf, backend, breaker.IndexState(store, backend))
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
    """Copy edge image *image_id* into ``args.store`` (store_copy.copy_image)
    and release its cache entry.

    :returns: ('copied' or 'held', details)
    :raises CopyError: no such edge image, or the copy was refused or failed
    """
    target = args.store
    image = edge.image(image_id)
    if image is None:
        raise store_copy.CopyError(
            'no edge image %s: import it first (glance-remote import keeps '
            "central's ID); for an edge image of another ID use Glance's "
            'copy-image import directly' % image_id)

    def central_record():
        kept = store.stored_record(image_id)
        return kept if kept is not None else \
            central.fetch_record(image_id).raw
    # The operator asked for it: a failed copy is asked again; the edge's
    # API checks who may copy what.
    done, image = store_copy.copy_image(
        edge, image, target, backend, central_record, args.copy_timeout,
        retry_failed=True, task_message=edge.last_task_message)
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
        raise config.UsageError(str(e))
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
                              output.Quiet() if args.json else sys.stdout)
    for chunk in reader.read(record, 0, record.size):
        shown.advance(len(chunk))
    reader.wait_for_fills(timeout=600)
    entry = store.entry(image_id)
    if entry is None or entry.state != 'complete':
        shown.finish('NOT cached (larger than the free cache space)')
        return 'failed', _DOES_NOT_FIT
    shown.finish('cached and verified')
    return 'cached', '%d bytes verified' % record.size


def cmd_sync(args, conf, backend):
    central = config.central(conf, backend)
    try:
        central.probe()
    except exceptions.UpstreamError as e:
        print('glance-remote: central is unreachable; nothing was changed: '
              '%s' % e, file=sys.stderr)
        raise output.Failed()
    lock = _site_sync_lock(conf, backend)
    if isinstance(lock, _AnotherSync):
        # Not a success: a member that keeps the lock (a hung sync, or
        # anyone who can write to the coordinator) would otherwise stop
        # every revocation without a sound.
        print('glance-remote: sync did NOT run: the site\'s sync lock is '
              'held by %s; nothing was changed here' % lock.describe(),
              file=sys.stderr)
        output.report(args, [], 0)
        raise output.Failed()
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
    site = config.site(group, backend)
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
        central, config.edge(args), backend,
        record_rules.CopyRules.from_conf(conf, backend))
    store = (config.cache(conf, backend)
             if conf[backend].remote_glance_cache_dir else None)
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
            output.report(args, results, 1)
        except catalog.ForeignImage as e:
            action, details = 'conflict', str(e)
            failed += 1
        except exceptions.RemoteGlanceError as e:
            action, details = 'failed', str(e)
            failed += 1
        results.append((image['id'], action, details))
    output.report(args, results, failed)
