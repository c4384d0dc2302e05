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

"""The edge Glance's own database, from inside glance-api.

The driver and the filters run in glance-api's process, where Glance's
database engine is configured. ``EdgeRecords`` reads and writes image rows
through Glance's database API with an admin context: callers use it only for
what Glance has already authorized (see record_copy.py and ondemand.py).
``count_live_locations`` answers None outside glance-api (the CLI, unit
tests), and callers keep to the safe side.
"""

import logging

LOG = logging.getLogger(__name__)

_COUNT_LIVE_LOCATIONS = (
    "SELECT COUNT(*) FROM image_locations WHERE value = :uri "
    "AND deleted = :deleted AND status = 'active'")


_LIVE_IMAGES_AT = (
    "SELECT DISTINCT image_id FROM image_locations WHERE value = :uri "
    "AND deleted = :deleted AND status = 'active'")


def _engine():
    from glance.db.sqlalchemy import api as db_api
    return db_api.get_engine()


def count_live_locations(uri):
    """How many live edge image locations use *uri* (the image being
    deleted included: Glance marks its location deleted afterwards).

    :returns: the count, or None when the edge database cannot be read
    """
    try:
        import sqlalchemy
        # deleted is bound as a boolean: PostgreSQL refuses a comparison
        # of its boolean column with 0.
        with _engine().connect() as connection:
            return connection.execute(
                sqlalchemy.text(_COUNT_LIVE_LOCATIONS),
                {'uri': uri, 'deleted': False}).scalar()
    except Exception as e:
        LOG.debug('edge database not readable here: %s', e)
        return None


def live_images_at(uri):
    """The IDs of the edge images with a live location *uri* (an empty
    list when the edge database cannot be read).
    """
    try:
        import sqlalchemy
        with _engine().connect() as connection:
            return sorted(row[0] for row in connection.execute(
                sqlalchemy.text(_LIVE_IMAGES_AT),
                {'uri': uri, 'deleted': False}))
    except Exception as e:
        LOG.debug('edge database not readable here: %s', e)
        return []


def api_view(record):
    """An edge image row (edge_db.EdgeRecords.get) in the shape Glance's
    API shows it: properties as top-level keys, ``stores`` from the active
    locations, ``locations`` as url and metadata.
    """
    image = dict(record.get('properties') or {})
    for key in ('id', 'status', 'size', 'checksum', 'os_hash_algo',
                'os_hash_value', 'disk_format', 'container_format', 'owner'):
        image[key] = record.get(key)
    active = [loc for loc in record.get('locations') or ()
              if loc.get('status', 'active') == 'active']
    image['locations'] = [{'url': loc.get('url'),
                           'metadata': loc.get('metadata') or {}}
                          for loc in active]
    image['stores'] = ','.join(
        loc['metadata']['store'] for loc in image['locations']
        if loc['metadata'].get('store'))
    return image


class EdgeRecords:
    """The edge images as Glance's database API holds them.

    These writes bypass Glance's domain layer: no notification, no quota,
    no property protection. Callers write only what Glance accepted.
    """

    def __init__(self):
        from glance import context as glance_context
        from glance import db as glance_db
        self._db = glance_db.get_api()
        self._context = glance_context.get_admin_context()

    def get(self, image_id, context=None):
        """The live edge record (a dict, ``properties`` as a dict,
        ``locations`` as Glance lists them) or None.

        :param context: a request context: then None also when Glance
            would not show the image to that requester
        """
        from glance.common import exception as glance_exception
        try:
            image = self._db.image_get(context or self._context, image_id)
        except (glance_exception.NotFound, glance_exception.Forbidden):
            return None
        if image.get('deleted'):
            return None
        record = dict(image)
        record['properties'] = {
            p['name']: p['value'] for p in image.get('properties', ())
            if not p.get('deleted')}
        return record

    def known(self, image_id):
        """Whether the edge has, or had, an image with this ID: deleted
        rows count, since Glance never gives a deleted image's ID again.
        """
        from glance.common import exception as glance_exception
        try:
            self._db.image_get(self._context, image_id,
                               force_show_deleted=True)
        except glance_exception.NotFound:
            return False
        return True

    def create(self, values, tags, members):
        """Create an image row, then its tags and members.

        :param members: {project: membership status}
        :raises glance.common.exception.Duplicate: the ID exists already
        """
        self._db.image_create(self._context, values)
        if tags:
            self._db.image_tag_set_all(self._context, values['id'], tags)
        for project, status in sorted(members.items()):
            self._db.image_member_create(self._context, {
                'image_id': values['id'], 'member': project,
                'status': status, 'can_share': False})

    def update(self, image_id, values, properties):
        """Set core *values* and add *properties*; other properties stay."""
        self._db.image_update(self._context, image_id,
                              dict(values, properties=properties),
                              purge_props=False)
