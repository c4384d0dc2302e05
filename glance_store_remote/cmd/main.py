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
* ``metrics``: the node's Prometheus metrics, on stdout or (``--textfile``)
  into a file for node_exporter's textfile collector; ``exporter`` serves
  them on ``/metrics``. Both read what every worker shares: the cache index
  of each remote-glance backend (metrics.py).
* ``readiness``: the active edge images that a boot would fail for once
  central is cut (readiness.py); exit code 1 when there is one.

``import`` and ``sync`` change an existing edge image only when it is
provably their own (catalog.not_ours); anything else is a conflict,
reported, left alone, and exit code 1.
"""

import argparse
import sys

from oslo_config import cfg

from glance_store_remote.cmd import cache
from glance_store_remote.cmd import catalog
from glance_store_remote.cmd import central
from glance_store_remote.cmd import config
from glance_store_remote.cmd import metrics
from glance_store_remote.cmd import output
from glance_store_remote.cmd import readiness
from glance_store_remote import exceptions


def build_parser():
    parser = argparse.ArgumentParser(
        prog='glance-remote',
        description='Operate the remote-glance backend of an edge Glance.')
    parser.add_argument(
        '--config-file', default=config.DEFAULT_CONFIG_FILE,
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
    check.set_defaults(func=central.cmd_check)
    show = sub.add_parser('show', help="print central's record of an image")
    show.add_argument('image_id', help='the central image ID')
    show.set_defaults(func=central.cmd_show)
    _add_cache_commands(sub)
    _add_catalog_commands(sub)
    _add_monitoring_commands(sub)
    return parser


def _add_monitoring_commands(sub):
    command = sub.add_parser(
        'metrics', help="print the node's Prometheus metrics (every "
        'remote-glance backend, or --backend)')
    command.add_argument(
        '--textfile', metavar='PATH',
        help="write them atomically to PATH instead, for node_exporter's "
        'textfile collector (a name ending in .prom)')
    command.set_defaults(func=metrics.cmd_metrics, every_backend=True)
    command = sub.add_parser(
        'exporter', help="serve the node's Prometheus metrics on /metrics "
        'until stopped')
    command.add_argument(
        '--listen', required=True, metavar='HOST:PORT',
        help='the address to serve on, e.g. 127.0.0.1:9612')
    command.set_defaults(func=metrics.cmd_exporter, every_backend=True)
    command = sub.add_parser(
        'readiness', help='list the active edge images a boot at this edge '
        'would fail for once central is cut (exit code 1 if any)')
    command.add_argument(
        '--site', action='store_true',
        help='images that no node of the site holds (asked over the peer '
        'path; needs remote_glance_coordination_url and the peer secret)')
    command.add_argument(
        '--servers', action='store_true',
        help="only images that this edge's servers use (nova's server "
        'list, all projects, with your OpenStack credentials): what a '
        'rebuild or an evacuation would need')
    command.add_argument(
        '--os-cloud', default=None,
        help='with --servers: the clouds.yaml cloud of the EDGE (default: '
        'OS_CLOUD or OS_* variables)')
    command.set_defaults(func=readiness.cmd_readiness)


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
    command.set_defaults(func=catalog.cmd_import)
    command = sub.add_parser(
        'prefetch', help='pull images into the cache now, verified')
    command.add_argument('image_ids', nargs='+', metavar='IMAGE_ID',
                         help='central image IDs')
    edge_auth(command)
    store_target(command)
    command.set_defaults(func=catalog.cmd_prefetch)
    command = sub.add_parser(
        'sync', help='bring imported edge records up to date with central')
    command.add_argument(
        '--on-central-delete', choices=('mark', 'deactivate'),
        default='mark', help='for an image deleted at central: only mark '
        'it (default), or also deactivate it at the edge; its cached data '
        'is pinned either way, never removed')
    edge_auth(command)
    command.set_defaults(func=catalog.cmd_sync)


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
    command.set_defaults(func=cache.cmd_cache_list)
    for name, func, text in (
            ('pin', cache.cmd_cache_pin, 'never evict these images'),
            ('unpin', cache.cmd_cache_unpin,
             'let these images be evicted again'),
            ('evict', cache.cmd_cache_evict, 'remove these images now')):
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
    verify.set_defaults(func=cache.cmd_cache_verify)
    command = commands.add_parser(
        'stats', help='counters, sizes and the circuit breaker')
    command.add_argument('--site', action='store_true', help=site_help)
    command.set_defaults(func=cache.cmd_cache_stats)


def main(argv=None):
    """Run the command line; return the process exit code (0 success,
    1 failure, 2 bad usage).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, 'every_backend', False):
            # Every remote-glance backend, or the one named.
            conf, backends = config.load_backends(args.config_file,
                                                  args.backend)
            args.func(args, conf, backends)
        else:
            conf, backend = config.load_backend(args.config_file,
                                                args.backend)
            args.func(args, conf, backend)
    except config.UsageError as e:
        print('glance-remote: %s' % e, file=sys.stderr)
        return 2
    except cfg.Error as e:
        print('glance-remote: invalid configuration in %s: %s'
              % (args.config_file, e), file=sys.stderr)
        return 2
    except exceptions.RemoteGlanceError as e:
        print('glance-remote: %s' % e, file=sys.stderr)
        return 1
    except output.Failed:
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
