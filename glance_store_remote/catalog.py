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

"""Copying central's image catalogue to an edge, through the edge's API.

``glance-remote import`` creates edge images with central's IDs and full
records; ``glance-remote sync`` brings them up to date later. Both compare a
central record with an edge record field by field (the functions below) and
talk to the edge through its public API as any OpenStack client does, so
the edge's own policy, the driver's authorization and the record copy
apply.

An imported image is an edge image that has central's ID and a
``remote-glance://<backend>/<id>`` location. Glance lets any project member
choose the ID of an image it creates, so an edge image with central's ID
proves nothing: import and sync change an existing image only when it is
provably ours (``not_ours``), and report anything else as a conflict that
they leave alone.
"""

import logging

from glance_store_remote import exceptions
from glance_store_remote import locations as locations_module
from glance_store_remote import record_rules

LOG = logging.getLogger(__name__)

# Record fields an import sets through the API (the record copy sets size,
# checksum and os_hash once the location is accepted: the API cannot).
SETTABLE = ('name', 'visibility', 'protected', 'min_disk', 'min_ram',
            'owner')
# Fields Glance refuses to change once an image has data.
CREATE_ONLY = ('disk_format', 'container_format')
# Fields that describe an image's bytes: those of an image we adopt must be
# central's (or not set yet).
DATA_FIELDS = ('size', 'checksum', 'os_hash_algo', 'os_hash_value')


class EdgeError(exceptions.RemoteGlanceError):
    """The edge's API refused or failed a request."""


class EdgeConflict(EdgeError):
    """The edge answered 409: another client (another node's operator, a
    concurrent run) made the same change first, or the state forbids it.
    """


class ForeignImage(exceptions.RemoteGlanceError):
    """An edge image has central's ID but is not provably an import of
    central's image: it is left alone, and reported.
    """


class LocationsHidden(EdgeError):
    """The edge shows this caller no image locations (neither the
    ``locations`` field nor ``GET /v2/images/<id>/locations``).
    """


HIDDEN_HINT = (
    'the edge shows you no locations: give this identity the service role '
    'at the edge (Glance\'s fetch_image_location policy) or set '
    'show_multiple_locations there')


def not_ours(edge, locations, backend, central=None, rules=None):
    """Why edge image *edge* is not provably the import of central's image
    of the same ID from *backend*, or None when it is
    (record_rules.why_not_an_import).

    :param locations: the image's location URLs, or None when the caller
        cannot see them (then nothing is provable)
    :param central: central's record, or None (central no longer has the
        image: only the locations can be checked)
    :param rules: the record_rules.CopyRules of the import
    """
    if locations is None:
        return HIDDEN_HINT
    rules = rules or record_rules.CopyRules()
    return record_rules.why_not_an_import(
        edge, locations, locations_module.location_url(backend, edge['id']),
        central, copies=rules.copies)


def wanted_fields(central, rules):
    """The edge record an import aims at, from central's record.

    :param rules: a record_rules.CopyRules (which properties are copied)
    """
    fields = {name: central.get(name) for name in SETTABLE}
    fields['tags'] = sorted(central.get('tags') or ())
    fields.update(rules.properties(central))
    return fields


def create_body(central, rules):
    body = {name: value
            for name, value in wanted_fields(central, rules).items()
            if value is not None}
    body.update({'id': central['id']}, **{
        name: central[name] for name in CREATE_ONLY if central.get(name)})
    return body


def patch_ops(edge, central, rules):
    """JSON-patch operations that make *edge* say what *central* says.

    Properties the edge has and central lacks are left alone: they may be
    the edge operator's own.
    """
    ops = []
    for name, value in wanted_fields(central, rules).items():
        current = edge.get(name)
        if name == 'tags':
            current = sorted(current or ())
        if current == value or (value is None and name not in edge):
            continue
        op = 'replace' if name in edge else 'add'
        ops.append({'op': op, 'path': '/%s' % name, 'value': value})
    return ops


def member_changes(edge_members, central_members):
    """(to add, status changes, to remove): each a list of (project,
    status); the arguments map project -> status.
    """
    add = [(p, s) for p, s in central_members.items()
           if p not in edge_members]
    change = [(p, s) for p, s in central_members.items()
              if p in edge_members and edge_members[p] != s]
    remove = [(p, s) for p, s in edge_members.items()
              if p not in central_members]
    return add, change, remove


class EdgeAPI:
    """The edge Glance's images API through an authenticated adapter (an
    openstacksdk image proxy or a keystoneauth1 Adapter on /v2).
    """

    PATCH_TYPE = 'application/openstack-images-v2.1-json-patch'

    def __init__(self, adapter):
        self._api = adapter

    def _call(self, method, path, ok=(200, 201, 202, 204), **kw):
        response = self._api.request(path, method, raise_exc=False, **kw)
        if response.status_code not in ok:
            error = EdgeConflict if response.status_code == 409 else EdgeError
            raise error('edge answered %d to %s %s: %s' % (
                response.status_code, method, path,
                response.text.strip()[:300]))
        return response

    def image(self, image_id):
        response = self._call('GET', '/images/%s' % image_id,
                              ok=(200, 404))
        return response.json() if response.status_code == 200 else None

    def images(self):
        """Every edge image the caller can list (follows pagination)."""
        path = '/images?limit=100'
        while path:
            page = self._call('GET', path).json()
            yield from page.get('images', ())
            following = page.get('next')
            path = following[len('/v2'):] if following else None

    def locations(self, image):
        """The location URLs of edge image *image* (a record from image()
        or images()): its ``locations`` field when the edge shows it, else
        ``GET /images/<id>/locations`` (Glance 29 and later, policy
        fetch_image_location: the service role by default).

        :raises LocationsHidden: the edge shows this caller neither
        """
        if 'locations' in image:
            return [location.get('url')
                    for location in image['locations'] or ()]
        response = self._call('GET', '/images/%s/locations' % image['id'],
                              ok=(200, 400, 403, 404, 405))
        try:
            listed = response.json() if response.status_code == 200 \
                else None
        except ValueError:
            listed = None
        if not isinstance(listed, list):
            raise LocationsHidden('edge image %s: %s (it answered %d to GET '
                                  '/images/%s/locations)' % (
                                      image['id'], HIDDEN_HINT,
                                      response.status_code, image['id']))
        return [location.get('url') for location in listed
                if isinstance(location, dict)]

    def create(self, body):
        return self._call('POST', '/images', json=body).json()

    def patch(self, image_id, ops):
        return self._call('PATCH', '/images/%s' % image_id, json=ops,
                          headers={'Content-Type': self.PATCH_TYPE}).json()

    def members(self, image_id):
        return dict(self.member_list(image_id))

    def member_list(self, image_id):
        """[(project, status)] as the edge lists them: a project twice is
        a duplicate row (see Importer._sync_members).
        """
        response = self._call('GET', '/images/%s/members' % image_id,
                              ok=(200, 403, 404))
        if response.status_code != 200:
            return []
        return [(m['member_id'], m['status'])
                for m in response.json().get('members', ())]

    def add_member(self, image_id, project):
        """Add *project*; a member added meanwhile by another client (409,
        "Member ... is duplicated") counts as added.
        """
        self._call('POST', '/images/%s/members' % image_id,
                   json={'member': project}, ok=(200, 409))

    def set_member(self, image_id, project, status):
        self._call('PUT', '/images/%s/members/%s' % (image_id, project),
                   json={'status': status})

    def remove_member(self, image_id, project):
        """Remove *project*; one removed meanwhile (404) counts as removed.
        """
        self._call('DELETE', '/images/%s/members/%s' % (image_id, project),
                   ok=(204, 404))

    def add_location(self, image_id, url):
        """POST /locations when the caller has the service role, else PATCH
        add /locations (needs show_multiple_locations).
        """
        response = self._api.request(
            '/images/%s/locations' % image_id, 'POST', raise_exc=False,
            json={'url': url})
        if response.status_code in (200, 202):
            return
        if response.status_code != 403:
            raise EdgeError('edge answered %d adding location %s: %s' % (
                response.status_code, url, response.text.strip()[:300]))
        self.patch(image_id, [{'op': 'add', 'path': '/locations/-',
                               'value': {'url': url, 'metadata': {}}}])

    def action(self, image_id, name):
        self._call('POST', '/images/%s/actions/%s' % (image_id, name))


class Importer:
    """Imports and syncs central images at the edge; reports per image.

    :param central: an upstream.Central (the backend group's credentials)
    :param edge: an EdgeAPI
    :param backend: the remote-glance backend name used in locations
    :param rules: a record_rules.CopyRules (the backend's by default)
    """

    def __init__(self, central, edge, backend, rules=None):
        self.central = central
        self.edge = edge
        self.backend = backend
        self.rules = rules or record_rules.CopyRules()

    def location(self, image_id):
        return locations_module.location_url(self.backend, image_id)

    def import_image(self, central_id):
        """Create one edge image from central's record, or update the one
        that is provably ours (not_ours).

        :returns: (action, details): 'created', 'updated' or 'unchanged'
        :raises ForeignImage: an edge image has the ID but is not ours
        :raises RemoteGlanceError: central or the edge failed
        """
        central = self.central.fetch_record(central_id).raw
        edge = self.edge.image(central_id)
        if edge is None:
            try:
                self.edge.create(create_body(central, self.rules))
            except EdgeConflict:
                # Another client created this ID meanwhile (or the edge
                # had it once and deleted it: then it shows no image).
                edge = self.edge.image(central_id)
                if edge is None:
                    raise
                return self._adopt(central, edge)
            # The location before the members: an import stopped after it
            # leaves an imported image, which sync completes.
            self._add_location(central_id)
            self._sync_members(central_id, central)
            return 'created', 'with its location and %d members' % len(
                self._central_members(central_id, central))
        return self._adopt(central, edge)

    def _locations(self, edge):
        """The location URLs of *edge*, or None when hidden from us."""
        try:
            return self.edge.locations(edge)
        except LocationsHidden:
            return None

    def check_ours(self, edge, central, locations, settling=False):
        """Raise ForeignImage, and log it, unless *edge* is provably ours.

        :param locations: its location URLs, or None (hidden from us)
        :param settling: a location was just added: Glance may still be
            hashing it (status importing, no location shown yet)
        """
        if settling and not locations and edge.get('status') == 'importing':
            edge = dict(edge, status='queued')
        why = not_ours(edge, locations, self.backend, central, self.rules)
        if why:
            LOG.warning("edge image %s has central's ID but is not provably "
                        "its import from backend %s: %s; left alone",
                        edge['id'], self.backend, why)
            raise ForeignImage(
                "edge image %s has central's ID but is not provably its "
                "import: %s; left alone, nothing changed" % (edge['id'], why))

    def _adopt(self, central, edge):
        image_id = central['id']
        self.check_ours(edge, central, self._locations(edge))
        changed = []
        if edge.get('status') == 'queued':
            # The location first, then look again before changing any
            # field: an image given other bytes meanwhile is not adopted.
            self._add_location(image_id)
            changed.append('location')
            edge = self.edge.image(image_id)
            if edge is None:
                raise EdgeError('edge image %s went away during its import'
                                % image_id)
            self.check_ours(edge, central, self._locations(edge),
                            settling=True)
        return self._update(central, edge, changed)

    def _add_location(self, image_id):
        """Add the image's location; one another client added meanwhile
        (Glance refuses the same location twice) counts as added.
        """
        url = self.location(image_id)
        try:
            self.edge.add_location(image_id, url)
        except EdgeError:
            edge = self.edge.image(image_id) or {}
            if 'locations' not in edge:
                # An edge that hides locations: its stores tell.
                added = edge.get('status') == 'active' and self.backend in (
                    edge.get('stores') or '').split(',')
            else:
                added = any(location.get('url') == url
                            for location in edge['locations'] or ())
            if not added:
                raise

    def _update(self, central, edge, changed=()):
        image_id = central['id']
        changed = list(changed)
        ops = patch_ops(edge, central, self.rules)
        if ops:
            self.edge.patch(image_id, ops)
            changed += [op['path'][1:] for op in ops]
        changed += self._sync_members(image_id, central)
        if changed:
            return 'updated', ', '.join(changed)
        return 'unchanged', ''

    def _central_members(self, image_id, central):
        if central.get('visibility') != 'shared':
            return {}
        return self.central.members(image_id)

    def _sync_members(self, image_id, central):
        listed = self.edge.member_list(image_id)
        extra = len(listed) - len(dict(listed))
        if extra:
            # Two clients adding one member at the same moment (sync run
            # on two nodes) can both pass Glance's check: on MySQL its
            # unique key (image_id, member, deleted_at) holds no live row,
            # deleted_at being NULL. A DELETE removes one of the rows.
            seen = set()
            for project, _ in listed:
                if project in seen:
                    self.edge.remove_member(image_id, project)
                seen.add(project)
            LOG.warning('removed %d duplicate member rows of edge image %s',
                        extra, image_id)
            listed = self.edge.member_list(image_id)
        add, change, remove = member_changes(
            dict(listed), self._central_members(image_id, central))
        for project, status in add:
            self.edge.add_member(image_id, project)
            if status != 'pending':
                self.edge.set_member(image_id, project, status)
        for project, status in change:
            self.edge.set_member(image_id, project, status)
        for project, _ in remove:
            self.edge.remove_member(image_id, project)
        return ['member %s' % p for p, _ in add + change + remove] + (
            ['%d duplicate members' % extra] if extra else [])

    def sync_image(self, edge, deleted_action='mark'):
        """Bring one edge image that has a location in the backend up to
        date with central, if it is provably ours.

        An image whose locations name other central images and whose ID
        central does not have is a user's own link, not an import: None.

        :param deleted_action: for an image central no longer has: 'mark'
            (a property) or 'deactivate' (the property, and deactivate)
        :returns: (action, details), or None (not an import)
        :raises ForeignImage: central's ID, but not provably ours
        :raises LocationsHidden: the edge shows this caller no locations
        """
        image_id = edge['id']
        locations = self.edge.locations(edge)
        try:
            central = self.central.fetch_record(image_id, any_status=True).raw
        except exceptions.UpstreamNotFound:
            central = None
        if central is None and self.location(image_id) not in locations:
            return None
        self.check_ours(edge, central, locations)
        if central is None:
            return self._deleted_at_central(edge, deleted_action)
        status = central.get('status')
        if status == 'deactivated' and edge.get('status') == 'active':
            self.edge.action(image_id, 'deactivate')
            return 'deactivated', 'as at central'
        if status == 'active' and edge.get('status') == 'deactivated':
            self.edge.action(image_id, 'reactivate')
            action, details = self._update(central, dict(edge,
                                                         status='active'))
            return 'reactivated', details
        if status != 'active':
            return 'unchanged', 'central image is %s' % status
        return self._update(central, edge)

    def _deleted_at_central(self, edge, deleted_action):
        if edge.get(DELETED_MARK):
            return 'unchanged', 'already marked deleted at central'
        self.edge.patch(edge['id'], [{'op': 'add', 'path': '/' + DELETED_MARK,
                                      'value': 'true'}])
        if deleted_action == 'deactivate' and edge.get('status') == 'active':
            self.edge.action(edge['id'], 'deactivate')
        return 'marked', 'deleted at central; kept at the edge (property ' \
            '%s%s)' % (DELETED_MARK, ', deactivated'
                       if deleted_action == 'deactivate' else '')


# Property an imported image gets when central no longer has it.
DELETED_MARK = 'remote_glance_deleted_at_central'
