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

"""An edge's state as outage readiness reads it, for unit tests: an edge
Glance database (an SQLite file with Glance's own tables, from the
glance.db.sqlalchemy.models the tests install) and a real cache's entries,
complete or partial, written as a fill writes them.
"""

import datetime
import hashlib
import os
import uuid

from glance.db.sqlalchemy import models
import sqlalchemy

from glance_store_remote import cache as cache_module


def hold(cache, image_id, data=b'image data', pinned=False, complete=True):
    """Put central image *image_id* in *cache* as a fill does: reserved,
    written, and (*complete*) committed; pinned if asked.
    """
    record = {'id': image_id, 'size': len(data), 'os_hash_algo': 'sha512',
              'os_hash_value': hashlib.sha512(data).hexdigest(),
              'checksum': hashlib.md5(data).hexdigest()}
    assert cache.reserve(cache_module.expected_from_record(record), record)
    with open(cache.data_path(image_id, partial=True), 'wb') as f:
        f.write(data)
    if complete:
        cache.commit(image_id, record)
    if pinned:
        cache.set_pinned(image_id, True)


class EdgeDatabase:
    """An SQLite edge database in *folder* (``url`` for glance-api.conf's
    ``[database] connection``).
    """

    def __init__(self, folder):
        self.path = os.path.join(folder, 'glance.sqlite')
        self.url = 'sqlite:///' + self.path
        self.engine = sqlalchemy.create_engine(self.url)
        models.BASE.metadata.create_all(self.engine)

    def close(self):
        self.engine.dispose()

    def add_image(self, *location_uris, image_id=None, status='active',
                  deleted=False, size=1024, location_status='active',
                  location_deleted=False):
        """Add an edge image with a location row for each URI; return its
        ID.
        """
        image_id = image_id or str(uuid.uuid4())
        now = datetime.datetime.now(datetime.timezone.utc).replace(
            tzinfo=None)
        with self.engine.begin() as connection:
            connection.execute(models.Image.__table__.insert().values(
                id=image_id, name='edge', disk_format='raw',
                container_format='bare', size=size, status=status,
                visibility='public', min_disk=0, min_ram=0,
                protected=False, os_hidden=False, created_at=now,
                deleted=deleted))
            for uri in location_uris:
                connection.execute(
                    models.ImageLocation.__table__.insert().values(
                        image_id=image_id, value=uri, meta_data={},
                        status=location_status, created_at=now,
                        deleted=location_deleted))
        return image_id

    def add_location(self, image_id, uri, status='active', deleted=False):
        """Add a location row to an image."""
        now = datetime.datetime.now(datetime.timezone.utc).replace(
            tzinfo=None)
        with self.engine.begin() as connection:
            connection.execute(
                models.ImageLocation.__table__.insert().values(
                    image_id=image_id, value=uri, meta_data={},
                    status=status, created_at=now, deleted=deleted))
