"""The demo: an edge Glance that reads its images from a central Glance.

Starts a REAL central and edge Glance on loopback (tests.lab), uploads an
image with properties to central, links it at the edge with a
remote-glance location, downloads and verifies it at the edge, then cuts
central and shows plainly what still works at the edge and what does not.
Everything it starts is stopped and removed at the end, also on Ctrl-C.

Run it with ``tox -e demo``.
"""

import hashlib
import io
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(
    __file__))))

from tests import lab as lab_module  # noqa: E402

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
    with lab_module.Lab() as lab:
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

        step('Linking it at the edge: POST /v2/images/<id>/locations with '
             'remote-glance://central/%s' % image.id)
        linked = edge.images.create(name='demo-server', disk_format='raw',
                                    container_format='bare')
        edge.images.add_image_location(
            linked.id, 'remote-glance://central/%s' % image.id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            linked = edge.images.get(linked.id)
            if linked.status == 'active' and linked.os_hash_value:
                break
            time.sleep(0.2)
        info('edge image %s: %s, %d bytes; Glance hashed it through the '
             'driver: %s' % (linked.id, linked.status, linked.size,
                             'same os_hash as central'
                             if linked.os_hash_value == image.os_hash_value
                             else 'HASH DIFFERS'))

        step('Downloading at the edge (glanceclient verifies os_hash, as '
             'nova does)')
        received, seconds = download(edge, linked.id)
        digest = hashlib.new(image.os_hash_algo, received).hexdigest()
        if received != data or digest != image.os_hash_value:
            fails('the edge returned different bytes')
            return 1
        works('download at the edge: %d MiB in %.2f s (%.0f MiB/s), bytes '
              'identical to central' % (IMAGE_MIB, seconds,
                                        IMAGE_MIB / seconds))
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
        works('image-show at the edge: %s, %d bytes (the edge database '
              'holds the record)' % (shown.status, shown.size))
        asked = time.monotonic()
        offline = session.get('%s/v2/images/%s/file' % (lab.edge.url,
                                                        linked.id),
                              raise_exc=False)
        waited = time.monotonic() - asked
        if offline.status_code == 503:
            fails('download at the edge: 503 after %.2f s, a clear answer '
                  'and no hang; this release keeps no local copy of the '
                  'data yet' % waited)
        else:
            fails('download at the edge answered %d' % offline.status_code)
        info("central's properties (os_distro, hw_disk_bus) are not copied "
             "to the edge record by this release either")

        step('Restoring the WAN: central is started again')
        lab.central.start()
        received, seconds = download(edge, linked.id)
        if received == data:
            works('download at the edge: identical bytes again')
        else:
            fails('the edge returned different bytes')
            return 1

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
