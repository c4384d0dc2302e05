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

"""The demo: an edge Glance that reads its images from a central Glance.

Starts a REAL central and edge Glance on loopback (tests.harness.lab), uploads
an image with properties to central, links it at the edge with a
remote-glance location, downloads and verifies it at the edge (the first
read fills the edge cache, the second comes from it), then cuts central and
shows plainly what still works at the edge and what does not. Last, it asks
the edge for a central image by ID alone, which the edge imports on demand.
Everything it starts is stopped and removed at the end, also on Ctrl-C.

Run it with ``tox -e demo``.
"""

import hashlib
import io
import os
import subprocess
import sys
import time

from tests.harness import lab as lab_module

IMAGE_MIB = 64


def step(text):
    print('\n== %s' % text, flush=True)


def works(text):
    print('   [works]  %s' % text, flush=True)


def fails(text):
    print('   [fails]  %s' % text, flush=True)


def info(text):
    print('            %s' % text, flush=True)


def download(client, image_id):
    started = time.monotonic()
    data = b''.join(client.images.data(image_id))
    return data, time.monotonic() - started


def main():
    started = time.monotonic()
    step('Starting a central and an edge Glance (glance 33, gunicorn, '
         'sqlite) on 127.0.0.1')
    with lab_module.Lab(edge_options={'central': {
            'remote_glance_import_on_demand': True}}) as lab:
        info('central: %s   (unauthenticated lab pipeline)' % lab.central.url)
        info('edge:    %s   enabled_backends = local:file, '
             'central:remote-glance' % lab.edge.url)
        central = lab.central.glance()
        edge = lab.edge.glance(lab_module.ADMIN)

        step('Uploading a %d MiB image with properties to central'
             % IMAGE_MIB)
        data = os.urandom(IMAGE_MIB * 1024 * 1024)
        image = central.images.create(
            name='demo-server', disk_format='raw', container_format='bare',
            min_disk=1, min_ram=256, os_distro='cirros',
            hw_disk_bus='virtio', visibility='public')
        central.images.upload(image.id, io.BytesIO(data))
        image = central.images.get(image.id)
        info('central image %s: %s, %d bytes, %s %s...' % (
            image.id, image.status, image.size, image.os_hash_algo,
            image.os_hash_value[:16]))

        other = central.images.create(
            name='never-read', disk_format='raw', container_format='bare')
        central.images.upload(other.id, io.BytesIO(os.urandom(1024 * 1024)))

        step('Linking it at the edge: PATCH add /locations with '
             'remote-glance://central/%s (glance location-add)' % image.id)
        linked = edge.images.create(name='demo-server', disk_format='raw',
                                    container_format='bare')
        edge.images.add_location(
            linked.id, 'remote-glance://central/%s' % image.id, {})
        linked = edge.images.get(linked.id)
        copied = {key: linked.get(key) for key in (
            'size', 'os_hash_value', 'min_disk', 'min_ram', 'os_distro',
            'hw_disk_bus')}
        same = all(copied[key] == image.get(key) for key in copied)
        (works if same else fails)(
            "edge image %s: %s; central's record was copied: "
            "%d bytes, os_hash, min_disk %s, min_ram %s, os_distro %s, "
            "hw_disk_bus %s" % (linked.id, linked.status, linked.size,
                                linked.min_disk, linked.min_ram,
                                linked.get('os_distro'),
                                linked.get('hw_disk_bus')))

        never_read = edge.images.create(name='never-read', disk_format='raw',
                                        container_format='bare')
        edge.images.add_location(
            never_read.id, 'remote-glance://central/%s' % other.id, {})

        step('Downloading at the edge (glanceclient verifies os_hash, as '
             'nova does)')
        received, seconds = download(edge, linked.id)
        digest = hashlib.new(image.os_hash_algo, received).hexdigest()
        if received != data or digest != image.os_hash_value:
            fails('the edge returned different bytes')
            return 1
        works('download at the edge: %d MiB in %.2f s (the first read fills '
              'the edge cache), bytes identical to central' % (IMAGE_MIB,
                                                               seconds))
        session = lab.edge.session(lab_module.ADMIN)
        ranged = session.get('%s/v2/images/%s/file' % (lab.edge.url,
                                                       linked.id),
                             headers={'Range': 'bytes=1048576-1052671'})
        if ranged.status_code == 206 and ranged.content == data[
                1048576:1052672]:
            works('Range bytes=1048576-1052671 at the edge: 206, 4096 '
                  'bytes, identical')
        else:
            fails('Range download answered %d' % ranged.status_code)
            return 1

        step('Cutting the WAN: central is stopped')
        lab.central.stop()
        shown = edge.images.get(linked.id)
        works('image-show at the edge: %s, %d bytes, os_distro %s, '
              'hw_disk_bus %s (the edge database holds the record)'
              % (shown.status, shown.size, shown.get('os_distro'),
                 shown.get('hw_disk_bus')))
        received, seconds = download(edge, linked.id)
        if received == data:
            works('download at the edge, central down: %d MiB in %.2f s '
                  'from the edge cache, os_hash verified by glanceclient '
                  'as nova does' % (IMAGE_MIB, seconds))
        else:
            fails('the edge returned different bytes offline')
            return 1
        ranged = session.get('%s/v2/images/%s/file' % (lab.edge.url,
                                                       linked.id),
                             headers={'Range': 'bytes=0-1023'},
                             raise_exc=False)
        if ranged.status_code == 206 and ranged.content == data[:1024]:
            works('Range download at the edge, central down: 206 from the '
                  'cache')
        else:
            fails('Range download offline answered %d' % ranged.status_code)
        asked = time.monotonic()
        offline = session.get('%s/v2/images/%s/file' % (lab.edge.url,
                                                        never_read.id),
                              raise_exc=False)
        waited = time.monotonic() - asked
        fails('download of an image the edge never read: %d after %.2f s '
              '(a clear answer, no hang; read or pin images before an '
              'outage)' % (offline.status_code, waited))
        stats = subprocess.run(
            [os.path.join(lab_module.BIN, 'glance-remote'), '--config-file',
             lab.edge.config_file, 'cache', 'stats'],
            capture_output=True, text=True).stdout
        info('glance-remote cache stats:')
        for line in stats.splitlines():
            if line.split()[0] in ('hits', 'misses', 'bytes_from_central',
                                   'bytes_from_cache', 'breaker'):
                info('  ' + line)

        step('Restoring the WAN: central is started again')
        lab.central.start()
        received, seconds = download(edge, never_read.id)
        if len(received) == 1024 * 1024:
            works('download of the image never read: works again, and is '
                  'now cached')
        else:
            fails('download of the image never read still fails')
            return 1

        step('Asking the edge for an image only central knows, by its ID '
             '(remote_glance_import_on_demand = true)')
        booted = central.images.create(
            name='booted-by-id', disk_format='raw', container_format='bare',
            visibility='public', os_distro='debian')
        booted_data = os.urandom(1024 * 1024)
        central.images.upload(booted.id, io.BytesIO(booted_data))
        shown = edge.images.get(booted.id)
        works('image-show %s at the edge, never imported before: %s, '
              '%d bytes, os_distro %s (imported on demand, same ID)'
              % (booted.id, shown.status, shown.size,
                 shown.get('os_distro')))
        received, _ = download(edge, booted.id)
        (works if received == booted_data else fails)(
            'download of it at the edge: bytes identical to central')

        edge_requests = [e for e in lab.central.access_entries()
                         if 'glance-store-remote' in e.agent]
        info('central saw %d requests from the edge driver, all %s'
             % (len(edge_requests),
                '/'.join(sorted({e.method for e in edge_requests}))))
        step('Stopping both servers and removing the lab directory')
    print('\nDemo finished in %.0f s.' % (time.monotonic() - started))
    return 0


if __name__ == '__main__':
    sys.exit(main())
