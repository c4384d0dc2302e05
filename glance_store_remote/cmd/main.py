"""``glance-remote``: the operator's command line for an edge Glance.

It reads the edge's glance-api.conf to find a remote-glance backend group,
and talks to central exactly as the driver does, with that group's
credentials. Subcommands:

* ``check``: can this edge reach and authenticate to central?
* ``show ID``: central's record of an image, as the edge sees it.
"""

import argparse
import json
import sys

from oslo_config import cfg

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
    return parser


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
    return 0


if __name__ == '__main__':
    sys.exit(main())
