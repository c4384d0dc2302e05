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

"""The edge Glance's own code, from inside glance-api: the one module of
this package that calls Glance (its database API, its schema, its import
tasks, its discovery API and its ``all_stores`` expansion, which the
store_info filter adjusts). Each function names the Glance code it mirrors
or calls, as read in Glance 30.2.0 and 33.0.0 (the releases the tests run
it against: tests/functional/test_glance_edge.py and
tests/functional/test_store_info.py).

The driver and the filters run in glance-api's process, where Glance's
database engine is configured. ``EdgeRecords`` reads and writes image rows
through Glance's database API with an admin context: callers use it only for
what Glance has already authorized (see record_copy.py and ondemand.py).
``GlanceEdge`` is what the automatic copy (store_copy.AutoCopy) needs of
the edge: images, their users, and Glance's copy-image import started as
Glance's API starts it. ``count_live_locations`` answers None outside
glance-api (the CLI, unit tests), and callers keep to the safe side.

Outside glance-api (``glance-remote readiness``, the metrics exporter),
``database_engine`` opens the edge database that glance-api.conf names
(``[database] connection``: SQLite, MySQL/MariaDB or PostgreSQL by URL) and
``linked_images`` reads Glance's images and image_locations tables with it,
read only.

Glance is imported when a function runs, never at module level: store.py
imports this module, and Glance imports every store driver to list its
options.
"""

import collections
import datetime
import functools
import logging
import os

from oslo_config import cfg

from glance_store_remote import exceptions
from glance_store_remote import locations
from glance_store_remote import upstream

LOG = logging.getLogger(__name__)

# Glance's bookkeeping of an import, in image properties
# (glance/api/v2/images.py, glance/async_/flows/api_image_import.py).
IMPORT_LOCK = 'os_glance_import_task'
IMPORTING = 'os_glance_importing_to_stores'
FAILED = 'os_glance_failed_import'

# Glance's tasks table refuses a task without an owner: a copy this package
# starts for an image without one is owned by this name.
TASK_OWNER = 'glance-store-remote'

# ImagesController._enforce_import_lock: a lock whose task has not been
# updated for this long is stale (twice as long for a pending task), in
# these task states.
LOCK_EXPIRY = datetime.timedelta(minutes=60)
BUSTABLE_STATES = ('pending', 'processing', 'success', 'failure')

# The live locations of a URI in Glance's image_locations table
# (glance/db/sqlalchemy/models.py: ImageLocation). deleted is bound as a
# boolean: PostgreSQL refuses a comparison of its boolean column with 0.
_LIVE_LOCATIONS = (
    "SELECT image_id FROM image_locations WHERE value = :uri "
    "AND deleted = :deleted AND status = 'active'")

# The active edge images with a live location whose URI starts with
# :prefix (models.py: Image, ImageLocation), booleans bound as above. LIKE
# only narrows the rows down ('_' of a backend name matches any character,
# MySQL compares without case): linked_images parses each value again.
# stored: the image also has a live location outside remote-glance (a
# copy in a store of the edge's own, e.g. its Ceph: Glance reads it when
# the remote-glance location cannot be, central cut or not).
_LINKED_IMAGES = (
    "SELECT images.id, image_locations.value, images.size, "
    "EXISTS (SELECT 1 FROM image_locations AS other "
    "WHERE other.image_id = images.id AND other.deleted = :deleted "
    "AND other.status = 'active' AND other.value NOT LIKE :ours) "
    "FROM images JOIN image_locations "
    "ON image_locations.image_id = images.id "
    "WHERE images.status = 'active' AND images.deleted = :deleted "
    "AND image_locations.deleted = :deleted "
    "AND image_locations.status = 'active' "
    "AND image_locations.value LIKE :prefix")

# glance-api.conf's database URL, as oslo.db registers it (oslo_db/
# options.py): read by a process that has no oslo.db options of its own.
# It holds the database password: never logged, never in a message.
_CONNECTION = cfg.StrOpt(
    'connection', secret=True,
    help='The SQLAlchemy URL of the edge Glance database.')

# An edge image with a live location of a remote-glance backend: the
# edge's image ID (what users boot), central's image ID, the edge record's
# size in bytes (None when the record has none), and whether the image
# also has a live location in a store of the edge's own (stored).
LinkedImage = collections.namedtuple('LinkedImage',
                                     'image_id central_id size stored',
                                     defaults=(False,))


class AlreadyExists(exceptions.RemoteGlanceError):
    """The edge database holds an image of that ID already (Glance's
    ``Duplicate``, translated here so callers import no Glance code).
    """


class DatabaseUnreadable(exceptions.RemoteGlanceError):
    """The edge database cannot be read from here: not configured, not
    reachable, or without Glance's tables. ``str()`` never holds the
    database URL.
    """


def _engine():
    from glance.db.sqlalchemy import api as db_api
    return db_api.get_engine()


def database_engine(conf):
    """An SQLAlchemy engine on the edge database named by *conf*'s
    ``[database] connection`` (glance-api.conf), for a process outside
    glance-api. No pool: each read opens and closes its connection, so an
    exporter never keeps one that the server has dropped. The caller
    disposes of it.

    :param conf: an oslo.config ConfigOpts that read glance-api.conf
    :raises DatabaseUnreadable: no URL, an unusable one (its database
        driver not installed), or an SQLite file that does not exist (a
        connection would create an empty one)
    """
    import sqlalchemy
    try:
        conf.register_opt(_CONNECTION, group='database')
    except cfg.DuplicateOptError:
        pass  # oslo.db's own option (in glance-api): the same setting
    text = conf.database.connection
    if not text:
        raise DatabaseUnreadable(
            '[database] connection is not set in the configuration: the '
            'edge database cannot be read')
    try:
        url = sqlalchemy.engine.make_url(text)
    except sqlalchemy.exc.ArgumentError:
        raise DatabaseUnreadable(
            '[database] connection is not a database URL') from None
    if (url.get_backend_name() == 'sqlite' and url.database and
            url.database != ':memory:' and
            not os.path.exists(url.database)):
        raise DatabaseUnreadable(
            '[database] connection: SQLite file %s does not exist'
            % url.database)
    try:
        return sqlalchemy.create_engine(
            url, poolclass=sqlalchemy.pool.NullPool)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as e:
        raise DatabaseUnreadable(
            '[database] connection (%s) cannot be used: %s'
            % (url.drivername, upstream.redact(str(e)))) from None


def linked_images(backend, engine):
    """The active edge images with a live location of *backend*, one
    LinkedImage per edge image and central image it names, ordered by edge
    image ID. Read only; one query.

    :param engine: an SQLAlchemy engine on the edge database
        (database_engine)
    :raises DatabaseUnreadable: the query failed (unreachable server,
        refused credentials, no Glance tables)
    """
    import sqlalchemy
    prefix = locations.PREFIX + backend + '/'
    try:
        with engine.connect() as connection:
            rows = connection.execute(
                sqlalchemy.text(_LINKED_IMAGES),
                {'deleted': False, 'prefix': prefix + '%',
                 'ours': locations.PREFIX + '%'}).fetchall()
    except sqlalchemy.exc.SQLAlchemyError as e:
        # The driver's own words (e.orig) say why without the statement.
        raise DatabaseUnreadable('the edge database cannot be read: %s'
                                 % upstream.redact(str(getattr(
                                     e, 'orig', None) or e))) from None
    linked = set()
    for image_id, value, size, stored in rows:
        parsed = locations.central_image_of(value)
        if parsed is not None and parsed[0] == backend:
            linked.add(LinkedImage(image_id, parsed[1], size, bool(stored)))
    return sorted(linked)


def _live_location_images(uri):
    """The image ID of each live location *uri*, one per location row
    (Glance's own image_locations rows, through its engine).

    :raises Exception: the edge database cannot be read here
    """
    import sqlalchemy
    with _engine().connect() as connection:
        return [row[0] for row in connection.execute(
            sqlalchemy.text(_LIVE_LOCATIONS),
            {'uri': uri, 'deleted': False})]


def count_live_locations(uri):
    """How many live edge image locations use *uri* (the image being
    deleted included: Glance marks its location deleted afterwards).

    :returns: the count, or None when the edge database cannot be read
    """
    try:
        return len(_live_location_images(uri))
    except Exception as e:
        LOG.debug('edge database not readable here: %s', e)
        return None


def live_images_at(uri):
    """The IDs of the edge images with a live location *uri* (an empty
    list when the edge database cannot be read).
    """
    try:
        return sorted(set(_live_location_images(uri)))
    except Exception as e:
        LOG.debug('edge database not readable here: %s', e)
        return []


def api_view(record):
    """An edge image row (EdgeRecords.get) in the shape Glance's API shows
    it (glance/api/v2/images.py: ResponseSerializer._format_image):
    properties as top-level keys, ``stores`` from the active locations,
    ``locations`` as url and metadata.
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
    """The edge images as Glance's database API holds them
    (``glance.db.get_api()``: glance/db/sqlalchemy/api.py), with Glance's
    admin context (glance/context.py: get_admin_context).

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
        ``locations`` as Glance lists them) or None: Glance's
        ``image_get``.

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
        rows count, since Glance never gives a deleted image's ID again
        (``image_get`` with ``force_show_deleted``).
        """
        from glance.common import exception as glance_exception
        try:
            self._db.image_get(self._context, image_id,
                               force_show_deleted=True)
        except glance_exception.NotFound:
            return False
        return True

    def create(self, values, tags, members):
        """Create an image row, then its tags and members: Glance's
        ``image_create``, ``image_tag_set_all``, ``image_member_create``.

        :param members: {project: membership status}
        :raises AlreadyExists: the ID exists already
        """
        from glance.common import exception as glance_exception
        try:
            self._db.image_create(self._context, values)
        except glance_exception.Duplicate as e:
            raise AlreadyExists('image %s exists in the edge database '
                                'already' % values['id']) from e
        if tags:
            self._db.image_tag_set_all(self._context, values['id'], tags)
        for project, status in sorted(members.items()):
            self._db.image_member_create(self._context, {
                'image_id': values['id'], 'member': project,
                'status': status, 'can_share': False})

    def update(self, image_id, values, properties):
        """Set core *values* and add *properties*; other properties stay
        (Glance's ``image_update`` with ``purge_props=False``).
        """
        self._db.image_update(self._context, image_id,
                              dict(values, properties=properties),
                              purge_props=False)


class GlanceEdge:
    """Glance's own database and import tasks, from inside glance-api:
    what store_copy.AutoCopy needs of the edge (the same methods as
    store_copy.EdgeCopies, which asks the edge's API instead).
    """

    def __init__(self):
        self._records = EdgeRecords()

    def image(self, image_id):
        """The edge image, API-shaped (see api_view), or None."""
        record = self._records.get(image_id)
        return api_view(record) if record is not None else None

    def users(self, location):
        """The live edge images with an active *location*, API-shaped.

        :raises Exception: the edge database cannot be read
        """
        return [image for image in map(self.image, sorted(set(
            _live_location_images(location)))) if image is not None]

    def start_copy(self, image_id, target):
        """Start Glance's copy-image import of *image_id* into *target*, as
        ``POST /v2/images/<id>/import`` does once its policy check passed
        (glance/api/v2/images.py: ImagesController.import_image): a stale
        import lock recovered (``_enforce_import_lock``), a task, the
        image's import lock, what the stale lock's task left in the import
        properties cleaned up (``_cleanup_stale_task_progress``), the task
        run in Glance's task pool. Runs with an admin context: the operator
        asked for it in the configuration.

        :returns: the task ID
        :raises ImportLocked: another import holds the image's lock
        """
        from glance.api import common as api_common
        from glance.common import exception as glance_exception
        from glance import context as glance_context
        from glance import gateway as glance_gateway

        context = glance_context.get_admin_context()
        gateway = glance_gateway.Gateway()
        image_repo = gateway.get_repo(context)
        task_repo = gateway.get_task_repo(context)
        image = image_repo.get(image_id)
        stole_lock_from_task = None
        if IMPORT_LOCK in image.extra_properties:
            stole_lock_from_task = _enforce_import_lock(
                image_repo, task_repo, image)
        task = gateway.get_task_factory(context).new_task(
            task_type='api_image_import',
            owner=image.owner or TASK_OWNER,
            task_input={'image_id': image_id,
                        'import_req': {'method': {'name': 'copy-image'},
                                       'stores': [target]},
                        'backend': [target]},
            image_id=image_id, user_id=None,
            request_id=context.request_id)
        try:
            image_repo.set_property_atomic(image, IMPORT_LOCK, task.task_id)
        except glance_exception.Duplicate:
            raise exceptions.ImportLocked(
                'edge image %s: another import runs' % image_id)
        if stole_lock_from_task:
            _cleanup_stale_task_progress(image_repo, image,
                                         stole_lock_from_task)
        task_repo.add(task)
        executor = gateway.get_task_executor_factory(
            context, admin_context=context).new_task_executor(context)
        api_common.get_thread_pool('tasks_pool').spawn(task.run, executor)
        return task.task_id


def _enforce_import_lock(image_repo, task_repo, image):
    """Glance's ImagesController._enforce_import_lock: the lock of *image*
    is stale when its task is gone, or in a state Glance may bust and not
    updated for LOCK_EXPIRY (twice that while pending); then remove it
    (``_bust_import_lock``) and return the task (None when gone).

    :raises ImportLocked: the lock is valid
    """
    from glance.common import exception as glance_exception
    from oslo_utils import timeutils

    other_task = image.extra_properties[IMPORT_LOCK]
    expiry = LOCK_EXPIRY
    try:
        task = task_repo.get(other_task)
    except glance_exception.NotFound:
        LOG.warning('Image %(image)s has non-existent import task '
                    '%(task)s; considering it stale',
                    {'image': image.image_id, 'task': other_task})
        task = None
        age = 0
    else:
        age = timeutils.utcnow() - task.updated_at
        if task.status == 'pending':
            expiry *= 2
    if not task or (task.status in BUSTABLE_STATES and age >= expiry):
        _bust_import_lock(image_repo, task_repo, image, task, other_task)
        return task
    if task.status in BUSTABLE_STATES:
        LOG.warning('Image %(image)s has active import task %(task)s in '
                    'status %(status)s; lock remains valid for %(expire)i '
                    'more seconds',
                    {'image': image.image_id, 'task': task.task_id,
                     'status': task.status,
                     'expire': (expiry - age).total_seconds()})
    raise exceptions.ImportLocked(
        'edge image %s: another import runs' % image.image_id)


def _bust_import_lock(image_repo, task_repo, image, task, task_id):
    """Glance's ImagesController._bust_import_lock: fail the stale task
    (when it can still fail), drop its lock.

    :raises ImportLocked: another request removed the lock first
    """
    from glance.common import exception as glance_exception

    if task:
        try:
            task.fail('Expired lock preempted')
            task_repo.save(task)
        except glance_exception.InvalidTaskStatusTransition:
            # A task in a terminal state whose lock was never dropped.
            pass
    try:
        image_repo.delete_property_atomic(image, IMPORT_LOCK, task_id)
    except glance_exception.NotFound:
        LOG.warning('Image %(image)s has stale import task %(task)s but we '
                    'lost the race to remove it.',
                    {'image': image.image_id, 'task': task_id})
        # As Glance: act as if it had not expired, no retry loop.
        raise exceptions.ImportLocked(
            'edge image %s: another import runs' % image.image_id)
    LOG.warning('Image %(image)s has stale import task %(task)s in status '
                '%(status)s from %(owner)s; removed lock because it had '
                'expired.',
                {'image': image.image_id, 'task': task_id,
                 'status': task and task.status or 'missing',
                 'owner': task and task.owner or 'unknown owner'})


def _cleanup_stale_task_progress(image_repo, image, task):
    """Glance's ImagesController._cleanup_stale_task_progress: take the
    stores of the task whose lock was busted out of the image's importing
    and failed lists.
    """
    stores = task.task_input.get('backend', [])
    changed = set()
    for store in stores:
        for key in (IMPORTING, FAILED):
            values = image.extra_properties.get(key, '').split(',')
            if store in values:
                values.remove(store)
                changed.add(key)
            image.extra_properties[key] = ','.join(values)
    if changed:
        image_repo.save(image)
        LOG.debug('Image %(image)s had stale import progress info %(keys)s '
                  'from task %(task)s which was cleaned up',
                  {'image': image.image_id, 'task': task.task_id,
                   'keys': ','.join(changed)})


# Marks Glance's _get_available_stores once wrapped (the filter may be
# loaded more than once in a process).
_WRAPPED = '_remote_glance_wrapped'


def wrap_available_stores(wrapper):
    """Replace Glance's ``glance.common.utils._get_available_stores`` (the
    one place Glance 30.2 and 33 expand ``all_stores``) by
    ``wrapper(original, *args, **kwargs)``, once per process.

    :returns: True when the wrapper is in place; False when this Glance has
        no such function; None when Glance is not installed
    """
    try:
        from glance.common import utils as glance_utils
    except ImportError:
        return None
    original = getattr(glance_utils, '_get_available_stores', None)
    if not callable(original):
        return False
    if getattr(original, _WRAPPED, False):
        return True

    @functools.wraps(original)
    def available_stores(*args, **kwargs):
        return wrapper(original, *args, **kwargs)
    setattr(available_stores, _WRAPPED, True)
    glance_utils._get_available_stores = available_stores
    return True


def discovery_controller_class():
    """Glance's controller of ``/v2/info`` (``glance.api.v2.discovery.
    InfoController``), for the store_info filter to subclass.
    """
    from glance.api.v2 import discovery
    return discovery.InfoController


def discovery_resource(controller_class):
    """Glance's own ``/v2/info`` resource (``discovery.create_resource``:
    its serializer and policy enforcer) with a controller of
    *controller_class* in place of Glance's.
    """
    from glance.api.v2 import discovery
    resource = discovery.create_resource()
    resource.controller = controller_class(resource.controller.policy)
    return resource
