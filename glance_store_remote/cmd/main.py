"""``glance-remote``: the operator's command line for an edge Glance.

It reads the edge's glance-api.conf to find a remote-glance backend group,
and talks to central exactly as the driver does, with that group's
credentials. Subcommands:

* ``check``: can this edge reach and authenticate to central?
* ``show ID``: central's record of an image, as the edge sees it.
* ``cache list|pin|unpin|evict|verify|stats``: the backend's local cache.
  These work on the cache directory with the same locks and index as the
  glance-api workers, so they are safe while glance-api serves.
"""

import argparse
import datetime
import json
import sys

from oslo_config import cfg

from glance_store_remote import breaker
from glance_store_remote import cache
from glance_store_remote import exceptions
from glance_store_remote import opts
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


def _central(conf, backend):
    try:
        return upstream.Central.from_conf(conf, backend)
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
    group = conf[backend]
    if not group.remote_glance_cache_dir:
        raise UsageError('[%s] remote_glance_cache_dir is not set: this '
                         'backend has no cache' % backend)
    try:
        return cache.Cache(group.remote_glance_cache_dir,
                           group.remote_glance_cache_max_size)
    except exceptions.CacheError as e:
        raise UsageError('[%s] remote_glance_cache_dir: %s' % (backend, e))


def _when(timestamp):
    return datetime.datetime.fromtimestamp(
        timestamp, datetime.timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')


def cmd_cache_list(args, conf, backend):
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
    report = _cache(conf, backend).verify(fix=args.fix)
    bad = [(i, p) for i, p in report if p]
    _emit(args, {'checked': len(report),
                 'bad': [{'image_id': i, 'problem': p} for i, p in bad],
                 'removed': args.fix and [i for i, _ in bad] or []},
          '\n'.join(['%s %s%s' % (i, p or 'ok',
                                  ' (removed)' if p and args.fix else '')
                     for i, p in report] +
                    ['%d entries checked, %d bad' % (len(report),
                                                     len(bad))]))
    if bad:
        raise Failed()


def cmd_cache_stats(args, conf, backend):
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


class Failed(Exception):
    """The command ran but found or left a problem (exit code 1)."""


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
    return parser


def _add_cache_commands(sub):
    cache_parser = sub.add_parser(
        'cache', help="inspect and manage the backend's local cache")
    commands = cache_parser.add_subparsers(dest='cache_command',
                                           required=True)
    commands.add_parser(
        'list', help='entries, most recently used first'
    ).set_defaults(func=cmd_cache_list)
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
    verify.set_defaults(func=cmd_cache_verify)
    commands.add_parser(
        'stats', help='counters, sizes and the circuit breaker'
    ).set_defaults(func=cmd_cache_stats)


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
    except exceptions.RemoteGlanceError as e:
        print('glance-remote: %s' % e, file=sys.stderr)
        return 1
    except Failed:
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
