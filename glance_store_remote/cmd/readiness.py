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

"""``glance-remote readiness``: would a boot at this edge work with central
cut? The active edge images linked to the backend that this node (``--site``:
no node of the site) holds complete and verified are unready; exit code 1
when there is one. Held but unpinned images are listed apart: eviction may
still remove them, and they do not change the exit code.

The edge images come from the edge database of glance-api.conf (no
credentials needed); ``--servers`` asks nova, with the operator's
credentials, which of them the edge's servers use.
"""

import sys

from keystoneauth1 import exceptions as ks_exc

from glance_store_remote.cmd import cache as cache_cmd
from glance_store_remote.cmd import config
from glance_store_remote.cmd import output
from glance_store_remote import readiness
from glance_store_remote import upstream

# The states a row of the table shows, in its order.
LISTED = ('unready', 'unpinned')


def cmd_readiness(args, conf, backend):
    unreachable = []
    if args.site:
        views = cache_cmd.site_views(conf, backend)
        unreachable = sorted(url for url, view in views.items()
                             if view is None)
        report = readiness.site_report(conf, backend, views)
    else:
        report = readiness.node_report(conf, backend,
                                       _node_cache(conf, backend))
    without_image = 0
    if args.servers:
        used, without_image = server_images(args)
        report = readiness.restricted(report, used)
    rows = {state: [_row(report.images[image_id])
                    for image_id in getattr(report, state)]
            for state in readiness.VERDICTS}
    output.emit(args, dict(rows, backend=backend,
                           scope='site' if args.site else 'node',
                           servers_only=args.servers,
                           servers_without_image=without_image,
                           unreachable_nodes=unreachable),
                _text(args, backend, rows, without_image, unreachable))
    if report.unready or unreachable:
        raise output.Failed()


def _node_cache(conf, backend):
    """The backend's cache, or None when it has none (then nothing is
    held: every linked image is unready).
    """
    if not conf[backend].remote_glance_cache_dir:
        return None
    return config.cache(conf, backend)


def _row(image):
    return {'image_id': image.image_id, 'central_image_id': image.central_id,
            'size': image.size, 'in_edge_store': image.stored}


def _text(args, backend, rows, without_image, unreachable):
    lines = []
    listed = [(state, row) for state in LISTED for row in rows[state]]
    if listed:
        lines.append('%-36s  %-36s  %-8s  %14s' % (
            'EDGE IMAGE', 'CENTRAL IMAGE', 'STATE', 'SIZE'))
        lines += ['%-36s  %-36s  %-8s  %14s' % (
            row['image_id'], row['central_image_id'], state,
            '-' if row['size'] is None else row['size'])
            for state, row in listed]
    where = ('no node of the site holds' if args.site
             else 'this node does not hold')
    lines.append(
        '%d edge images linked to backend %s%s: %d unready (%s them), %d '
        'held but not pinned, %d ready' % (
            sum(map(len, rows.values())), backend,
            " and used by this edge's servers" if args.servers else '',
            len(rows['unready']), where, len(rows['unpinned']),
            len(rows['ready'])))
    if without_image:
        lines.append('%d servers boot from a volume (no image): not '
                     'counted' % without_image)
    lines += ['%s: not reachable: the answer is incomplete' % url
              for url in unreachable]
    return '\n'.join(lines)


def server_images(args):
    """(the image IDs of the edge's servers, how many servers have none)
    from nova's server list for all projects, with the operator's
    credentials (``--os-cloud``, clouds.yaml or ``OS_*`` variables).

    A server booted from a volume has no image: nova names none, and its
    volume's image (volume_image_metadata) is not what this edge serves at
    a rebuild; it is only counted. An evacuation or rebuild of such a
    server needs its volume, not the edge's images.

    :raises UsageError: no usable credentials (an unknown cloud, a missing
        auth_url)
    :raises Failed: nova's list cannot be read: refused credentials,
        keystone or nova unreachable (said on stderr)
    """
    import openstack
    try:
        servers = openstack.connect(cloud=args.os_cloud).compute.servers(
            all_projects=True)
        images = [(server.image or {}).get('id') for server in servers]
    except (openstack.exceptions.ConfigException,
            ks_exc.AuthPluginException) as e:
        raise config.UsageError(
            'cannot use nova with your OpenStack credentials (--os-cloud, '
            'clouds.yaml or OS_* variables): %s' % upstream.redact(str(e)))
    except (openstack.exceptions.SDKException, ks_exc.ClientException) as e:
        print("glance-remote: --servers: nova's server list cannot be read: "
              '%s' % upstream.redact(str(e)), file=sys.stderr)
        raise output.Failed()
    return ({image for image in images if image},
            sum(not image for image in images))
