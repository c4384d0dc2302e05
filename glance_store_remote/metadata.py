"""The companion hook: central's image record lands in the edge database.

A paste filter for the edge's glance-api pipeline, placed after the context
filter (``[filter:remote-glance]``, see etc/glance-api-paste.ini.edge-example).
When a request adds a ``remote-glance://`` location to an edge image
(``PATCH /v2/images/<id>`` with ``add /locations``, or
``POST /v2/images/<id>/locations``), it:

1. refuses (403) a requester who could not see that image at central:
   non-admin, non-service callers may link only public or community images,
   images their project owns, and images shared with their project as an
   accepted member. Nothing of a refused image is fetched, cached or copied;
2. refuses (400) a location whose image contradicts what the edge record
   already says about the data (size, checksum, os_hash, disk and container
   format): it points at the wrong image. The edge record is left as it was;
3. copies central's record into the edge database, before Glance handles
   the request: size, checksum, os_hash (when central hashes with the edge's
   ``hashing_algorithm``), min_disk, min_ram, virtual_size and central's
   custom properties. Values the edge record already has are kept. If Glance
   then refuses the request, the copy is undone.

With the hash copied, Glance's location task has nothing left to compute, so
``POST /locations`` no longer reads the whole image over the WAN at link
time. It runs inside glance-api, whose database API it uses.
"""

import logging
import re

import webob
import webob.exc

from glance_store_remote import exceptions
from glance_store_remote import store as store_module

LOG = logging.getLogger(__name__)

# Columns of Glance's images table and fields the API computes: everything
# else in a central record is a custom property.
CORE_FIELDS = frozenset((
    'id', 'name', 'status', 'visibility', 'protected', 'os_hidden', 'owner',
    'checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size',
    'min_disk', 'min_ram', 'disk_format', 'container_format', 'created_at',
    'updated_at', 'deleted_at', 'deleted', 'tags', 'self', 'file', 'schema',
    'locations', 'direct_url', 'stores', 'members'))
# What describes the data: a disagreement means the wrong image.
DATA_FIELDS = ('size', 'checksum', 'os_hash_algo', 'os_hash_value',
               'disk_format', 'container_format')
# Copied when the edge record has no value (0 counts as none for these two).
COPIED_FIELDS = ('size', 'checksum', 'virtual_size', 'min_disk', 'min_ram')
ZERO_IS_UNSET = ('min_disk', 'min_ram')

_IMAGE_PATH = re.compile(r'^/v2/images/(?P<id>[0-9a-fA-F-]{36})'
                         r'(?P<locations>/locations)?/?$')


def custom_properties(record):
    """Central's custom properties, without Glance's reserved os_glance_*
    keys and location data.
    """
    return {key: value for key, value in record.items()
            if key not in CORE_FIELDS and isinstance(value, str) and
            not key.startswith('os_glance_')}


def may_use(context, record, member_status, member_statuses=('accepted',)):
    """Whether the requester could see the central image at central.

    Glance's own rule (glance.db.utils.is_image_visible): admins see every
    image; anyone sees public and community images and images without an
    owner; a project sees its own images and the shared images it is a
    member of. Linking an image asks for an accepted membership; merely
    showing one, as Glance does, for any membership.

    :param member_status: callable(project_id) -> central membership
        status of that project, or None; only called for shared images
    :param member_statuses: the membership statuses that count
    """
    # The requester's own roles only: the roles of a service token that
    # travels with a user's request (nova sends one) grant the user nothing.
    roles = set(getattr(context, 'roles', None) or ())
    if getattr(context, 'is_admin', False) or 'service' in roles:
        return True
    project = getattr(context, 'project_id', None)
    visibility = record.get('visibility')
    if visibility in ('public', 'community') or not record.get('owner'):
        return True
    if project is None:
        return False
    if record.get('owner') == project:
        return True
    return (visibility == 'shared' and
            member_status(project) in member_statuses)


# Membership statuses that let a project see (not use) a shared image.
ANY_MEMBERSHIP = ('accepted', 'pending', 'rejected')


def plan_copy(record, edge, hashing_algorithm):
    """What to write into the edge record.

    :param record: central's record (dict)
    :param edge: the edge record: its fields and a ``properties`` dict
    :returns: (conflicts as text, core values to set, properties to add)
    """
    conflicts = ['%s: edge %r, central %r' % (name, edge.get(name),
                                              record.get(name))
                 for name in DATA_FIELDS
                 if edge.get(name) not in (None, '') and
                 record.get(name) not in (None, '') and
                 edge.get(name) != record.get(name)]
    values = {}
    for name in COPIED_FIELDS:
        unset = (None, 0) if name in ZERO_IS_UNSET else (None,)
        if edge.get(name) in unset and record.get(name) not in unset:
            values[name] = record[name]
    if (record.get('os_hash_algo') == hashing_algorithm and
            record.get('os_hash_value') and not edge.get('os_hash_value')):
        values['os_hash_algo'] = record['os_hash_algo']
        values['os_hash_value'] = record['os_hash_value']
    properties = {key: value
                  for key, value in custom_properties(record).items()
                  if key not in edge['properties']}
    return conflicts, values, properties


class EdgeRecords:
    """The edge images as Glance's database API holds them."""

    def __init__(self):
        from glance import context as glance_context
        from glance import db as glance_db
        self._db = glance_db.get_api()
        self._context = glance_context.get_admin_context()

    def get(self, image_id):
        """The edge record (a dict, ``properties`` as a dict) or None."""
        from glance.common import exception as glance_exception
        try:
            image = self._db.image_get(self._context, image_id)
        except glance_exception.NotFound:
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
        self._db.image_update(self._context, image_id,
                              dict(values, properties=properties),
                              purge_props=False)

    def restore(self, image_id, before, values, properties):
        """Undo update(): the fields and the property set of *before*."""
        self._db.image_update(
            self._context, image_id,
            dict({name: before.get(name) for name in values},
                 properties=before['properties']),
            purge_props=True)


def _hashing_algorithm():
    from oslo_config import cfg
    try:
        return cfg.CONF.hashing_algorithm
    except cfg.NoSuchOptError:
        return 'sha512'


class MetadataFilter:
    """WSGI middleware; see the module docstring."""

    def __init__(self, app, records=None, find_store=None):
        self.app = app
        self._records = records
        self._find_store = find_store or _remote_glance_store

    @property
    def records(self):
        if self._records is None:
            self._records = EdgeRecords()
        return self._records

    def __call__(self, environ, start_response):
        request = webob.Request(environ)
        target = self._location_added(request)
        if target is None:
            return self.app(environ, start_response)
        try:
            undo = self._prepare(request, *target)
        except webob.exc.HTTPException as refusal:
            return refusal(environ, start_response)
        if undo is None:
            return self.app(environ, start_response)
        status = []

        def capture(code, headers, exc_info=None):
            status.append(int(code.split()[0]))
            return start_response(code, headers, exc_info)
        body = self.app(environ, capture)
        if status and status[0] >= 400:
            LOG.info('remote-glance: Glance refused the location (%d); the '
                     'copied record is undone', status[0])
            undo()
        return body

    def _location_added(self, request):
        """(edge image ID, location URI) of a location-add request."""
        match = _IMAGE_PATH.match(request.path_info)
        if match is None:
            return None
        try:
            if request.method == 'POST' and match['locations']:
                url = request.json_body.get('url')
            elif request.method == 'PATCH' and not match['locations']:
                url = next((op['value'].get('url')
                            for op in request.json_body
                            if _adds_location(op)), None)
            else:
                return None
        except (ValueError, AttributeError, TypeError):
            return None
        if not isinstance(url, str) or not url.startswith(
                store_module.SCHEME + '://'):
            return None
        return match['id'], url

    def _prepare(self, request, image_id, url):
        """Authorize, check and copy; return an undo callable, or None to
        let Glance answer on its own.

        :raises webob.exc.HTTPException: the refusal to send
        """
        backend = url[len(store_module.SCHEME) + 3:].split('/', 1)[0]
        store = self._find_store(backend)
        if store is None:
            return None
        try:
            central_id = store_module.parse_location(url, backend)
        except exceptions.InvalidLocation:
            return None
        context = getattr(request, 'context', None)
        try:
            record = store.central_record(central_id)
            if not may_use(context, record, lambda project: (
                    store.central.member_status(central_id, project))):
                LOG.warning('remote-glance: project %s may not use central '
                            'image %s (visibility %s); location refused',
                            getattr(context, 'project_id', None), central_id,
                            record.get('visibility'))
                raise webob.exc.HTTPForbidden(
                    explanation='central image %s is not visible to your '
                    'project at central' % central_id)
        except exceptions.UpstreamNotFound:
            return None
        except exceptions.UpstreamError as e:
            LOG.warning('remote-glance: location of central image %s refused '
                        'for now: %s', central_id, e)
            raise webob.exc.HTTPServiceUnavailable(explanation=str(e))
        edge = self.records.get(image_id)
        if edge is None:
            return None
        conflicts, values, properties = plan_copy(record, edge,
                                                  _hashing_algorithm())
        if conflicts:
            LOG.warning('remote-glance: central image %s does not match edge '
                        'image %s (%s); location refused', central_id,
                        image_id, '; '.join(conflicts))
            raise webob.exc.HTTPBadRequest(
                explanation='the location points at an image whose data '
                'differs from this record: %s' % '; '.join(conflicts))
        if values or properties:
            self.records.update(image_id, values, properties)
            LOG.info('remote-glance: copied the record of central image %s '
                     'into edge image %s: %s and %d properties', central_id,
                     image_id, ', '.join(sorted(values)) or 'no fields',
                     len(properties))
        return lambda: self.records.restore(image_id, edge, values,
                                            properties)


def _adds_location(op):
    return (isinstance(op, dict) and op.get('op') == 'add' and
            str(op.get('path', '')).startswith('/locations') and
            isinstance(op.get('value'), dict))


def _remote_glance_store(backend):
    """This edge's remote-glance Store for *backend*, or None."""
    from glance_store import location
    entry = location.SCHEME_TO_CLS_BACKEND_MAP.get(
        store_module.SCHEME, {}).get(backend)
    return entry['store'] if entry else None


def filter_factory(global_conf, **local_conf):
    """Paste entry point: ``paste.filter_factory =
    glance_store_remote.metadata:filter_factory``.

    One filter, two duties: this module's metadata hook, and the on-demand
    import of ondemand.py (active only where a backend enables it).
    """
    from glance_store_remote import ondemand

    def remote_glance_filter(app):
        return MetadataFilter(ondemand.OnDemandImport(app))
    return remote_glance_filter
