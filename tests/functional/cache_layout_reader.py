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

"""Read images through the remote-glance driver in a process of its own.

test_cache_layout runs this script with an earlier release of the package
first on PYTHONPATH, so that the earlier code writes a cache directory that
the current code then reads, and with the current code. It uses only what
every release keeps: glance-api's configuration file, ``Store.configure``
and ``Store.get`` on a ``remote-glance://`` location, so the same script
drives both::

    python cache_layout_reader.py GLANCE_API_CONF IMAGE_ID...

Each image is read whole, one after the other. One JSON line is printed when
``Store.get`` has answered (``opened``: the stream is handed out, its fill
started) and one when the read ended (``image``: bytes received, their
sha512, the error if any). Before the next image, and before exiting, it
waits until the image's fill has ended, so that what the fill committed is
on disk when the process is gone. Exit status 1 when a read failed.
"""

import fcntl
import hashlib
import json
import os
import sys
import time

from glance_store import location
from oslo_config import cfg

import glance_store_remote
from glance_store_remote import store

BACKEND = 'central'
FILL_END_TIMEOUT = 60  # seconds


def emit(**fields):
    print(json.dumps(fields), flush=True)


def wait_for_fill_end(cache_dir, image_id):
    """Whether the image's fill lock (layout 1: ``locks/<id>.fill``) came
    free within FILL_END_TIMEOUT: the fill recorded its outcome and let go.
    """
    path = os.path.join(cache_dir, 'locks', image_id + '.fill')
    deadline = time.monotonic() + FILL_END_TIMEOUT
    try:
        lock = open(path, 'rb')
    except FileNotFoundError:
        return True  # no fill ran (a hit)
    with lock:
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                if time.monotonic() > deadline:
                    return False
                time.sleep(0.02)


def read(driver, conf, image_id):
    """Read the image whole; True when every byte came without error."""
    loc = location.Location(
        'remote-glance', store.StoreLocation, conf,
        uri='remote-glance://%s/%s' % (BACKEND, image_id), backend=BACKEND)
    data, size = driver.get(loc)
    emit(opened=image_id, size=size, kind=getattr(data, 'kind', None),
         module=os.path.dirname(os.path.abspath(glance_store_remote.__file__)))
    hasher = hashlib.sha512()
    received = 0
    error = None
    try:
        for chunk in data:
            hasher.update(chunk)
            received += len(chunk)
    except IOError as e:
        error = '%s: %s' % (type(e).__name__, e)
    ended = wait_for_fill_end(conf[BACKEND].remote_glance_cache_dir,
                              image_id)
    emit(image=image_id, received=received, sha512=hasher.hexdigest(),
         error=error, fill_ended=ended)
    return error is None and ended


def main(argv):
    config_file, image_ids = argv[0], argv[1:]
    conf = cfg.ConfigOpts()
    conf(['--config-file', config_file], project='glance')
    driver = store.Store(conf, backend=BACKEND)
    driver.configure()
    results = [read(driver, conf, image_id) for image_id in image_ids]
    return 0 if all(results) else 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
