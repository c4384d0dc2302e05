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

"""The rules for central's image records at the edge: who may use one, and
what of it the edge copies.

One place for both, used by the driver (authorization at location add), the
record copy after Glance accepted a location, the on-demand import and the
``glance-remote`` CLI, so that they can never disagree. No Glance import
here: records are plain dicts as central's API sends them.
"""

import fnmatch

from glance_store_remote import locations

# Columns of Glance's images table and fields its API computes: never
# custom properties, whatever their name.
CORE_FIELDS = frozenset((
    'id', 'name', 'status', 'visibility', 'protected', 'os_hidden', 'owner',
    'checksum', 'os_hash_algo', 'os_hash_value', 'size', 'virtual_size',
    'min_disk', 'min_ram', 'disk_format', 'container_format', 'created_at',
    'updated_at', 'deleted_at', 'deleted', 'tags', 'self', 'file', 'schema',
    'locations', 'direct_url', 'stores', 'members'))

# What describes the data: an edge record that disagrees with central on
# one of these points at the wrong image.
DATA_FIELDS = ('size', 'checksum', 'os_hash_algo', 'os_hash_value',
               'disk_format', 'container_format')

# Core fields copied into an edge record that lacks them (0 counts as
# unset for min_disk and min_ram, Glance's default).
COPIED_FIELDS = ('size', 'checksum', 'virtual_size', 'min_disk', 'min_ram')
ZERO_IS_UNSET = ('min_disk', 'min_ram')

# Custom properties copied by default: what nova and the scheduler read to
# place and boot an instance (Glance's glance-download precedent copies
# hw_*, trait:*, os_distro, os_secure_boot and os_type).
DEFAULT_COPIED_PROPERTIES = (
    'hw_*', 'os_*', 'trait:*', 'img_*', 'architecture', 'hypervisor_type',
    'vm_mode', 'auto_disk_config')

# Never copied, whatever the options say: Glance's own bookkeeping, data
# that locates central's storage, and keys whose owner is central (deleting
# the edge copy of an image must never delete central's encryption key).
NEVER_COPIED = (
    'os_glance_*', 'direct_url', 'locations', 'stores',
    'cinder_encryption_key_*', 'os_encrypt_*')

# Central's signature and its certificate reference: copied only when the
# operator says the edge verifies with the same key manager.
SIGNATURE_PROPERTIES = ('img_signature*',)

ACCEPTED = ('accepted',)
# Membership statuses that let a project see (not link) a shared image.
ANY_MEMBERSHIP = ('accepted', 'pending', 'rejected')


def _matches(name, patterns):
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)


class CopyRules:
    """Which of central's custom properties an edge copies.

    :param patterns: shell-style patterns of property names to copy
    :param signatures: copy ``img_signature*`` too
    """

    def __init__(self, patterns=DEFAULT_COPIED_PROPERTIES,
                 signatures=False):
        self.patterns = tuple(patterns)
        self.signatures = signatures

    @classmethod
    def from_conf(cls, conf, backend):
        """The rules of remote-glance backend group *backend*."""
        group = conf[backend]
        return cls(DEFAULT_COPIED_PROPERTIES +
                   tuple(group.remote_glance_extra_properties or ()),
                   signatures=group.remote_glance_copy_signatures)

    def copies(self, name):
        """Whether a property called *name* is copied."""
        if name in CORE_FIELDS or _matches(name, NEVER_COPIED):
            return False
        if _matches(name, SIGNATURE_PROPERTIES):
            return self.signatures
        return _matches(name, self.patterns)

    def properties(self, record):
        """The custom properties of central's *record* that are copied."""
        return {key: value for key, value in record.items()
                if isinstance(value, str) and self.copies(key)}


# Properties Glance reserves for itself: no user sets them.
RESERVED_PREFIX = 'os_glance_'


def why_not_an_import(edge, urls, own_url, central=None, copies=None):
    """Why the edge image *edge*, which has a central image's ID, is not
    provably the import of that central image; None when it is.

    An import is what the operator's ``glance-remote import`` and the
    on-demand import create: owned by central's owner (a project may not
    give its image another owner; only an admin can), located at
    *own_url* (and, once copied into another store of the edge, there
    too; no other remote-glance location), central's data fields and
    formats (a field not set
    yet counts as equal: the driver checks every byte against central
    anyway), and no property but Glance's own and those the import copies
    from central (a member's own ``kernel_id`` or ``os_command_line`` on a
    published image would boot every user's server their way). An image
    with no data yet (queued, no location, no data field) and central's
    owner is an import stopped before its location.

    :param urls: the image's location URLs (every one of them)
    :param own_url: ``remote-glance://<backend>/<the image's ID>``
    :param central: central's record, or None (central no longer has the
        image: only the locations can be checked)
    :param copies: callable(property name) -> whether the import copies
        that property from central (CopyRules.copies); None: copies none
    """
    others = [url for url in urls if url != own_url]
    # A copy of the import into another store of the edge (its Ceph) adds
    # a location of that store: it is the import's, when the import's owner
    # (an admin's act) stands. Another remote-glance location never is.
    if others and (own_url not in urls or any(
            url.startswith(locations.PREFIX) for url in others)):
        return 'it has %d location(s) other than %s' % (len(others), own_url)
    if central is None:
        return None
    if edge.get('owner') != central.get('owner'):
        return "project %s owns it, not central's owner %s" % (
            edge.get('owner'), central.get('owner'))
    if not urls:
        if edge.get('status') != 'queued' or any(
                edge.get(name) is not None for name in DATA_FIELDS[:4]):
            return 'it has data (status %s) but not %s as its location' % (
                edge.get('status'), own_url)
        return None
    differ = [name for name in DATA_FIELDS
              if edge.get(name) is not None and
              edge.get(name) != central.get(name)]
    if differ:
        return "its %s differ from central's" % ', '.join(differ)
    extra = sorted(
        name for name in edge
        if name not in CORE_FIELDS and not name.startswith(RESERVED_PREFIX) and
        not (copies is not None and copies(name) and name in central))
    if extra:
        return "it has properties central's image does not give it: %s" % (
            ', '.join(extra[:10]))
    return None


def may_use(context, record, member_status, member_statuses=ACCEPTED):
    """Whether the requester could see the central image at central.

    Glance's own rule (glance.db.utils.is_image_visible): admins see every
    image; anyone sees public and community images and images without an
    owner (None; an empty owner is an owner); a project sees its own images
    and the shared images it is a member of. Linking an image asks for an
    accepted membership; merely showing one, as Glance does, for any
    membership. The ``service`` role sees nothing more than its project:
    Glance's visibility ignores it, and the credentials of every service
    user sit on every compute node.

    :param context: the request context (is_admin, roles, project_id)
    :param record: central's record (dict)
    :param member_status: callable(project_id) -> central membership
        status of that project, or None; only called for shared images
    :param member_statuses: the membership statuses that count
    """
    # is_admin comes from the requester's own roles (Glance's
    # context_is_admin): a service token that travels with a user's
    # request (nova sends one) grants the user nothing.
    if getattr(context, 'is_admin', False):
        return True
    project = getattr(context, 'project_id', None)
    visibility = record.get('visibility')
    if visibility in ('public', 'community') or record.get('owner') is None:
        return True
    if project is None:
        return False
    if record.get('owner') == project:
        return True
    return (visibility == 'shared' and
            member_status(project) in member_statuses)


def data_conflicts(record, edge):
    """The data fields on which *edge* and central's *record* disagree,
    as text; empty when the location may point at this image.
    """
    return ['%s: edge %r, central %r' % (name, edge.get(name),
                                         record.get(name))
            for name in DATA_FIELDS
            if edge.get(name) not in (None, '') and
            record.get(name) not in (None, '') and
            edge.get(name) != record.get(name)]


def plan_copy(record, edge, hashing_algorithm, rules):
    """What to write into an edge record that now locates central's image.

    Values the edge record already has are kept.

    :param record: central's record (dict)
    :param edge: the edge record: its fields and a ``properties`` dict
    :param hashing_algorithm: the edge's ``hashing_algorithm``; central's
        os_hash is copied only when it was made with the same one
    :param rules: a CopyRules
    :returns: (core values to set, properties to add)
    """
    values = {}
    for name in COPIED_FIELDS:
        unset = (None, 0) if name in ZERO_IS_UNSET else (None,)
        if edge.get(name) in unset and record.get(name) not in unset:
            values[name] = record[name]
    if (record.get('os_hash_algo') == hashing_algorithm and
            record.get('os_hash_value') and not edge.get('os_hash_value')):
        values['os_hash_algo'] = record['os_hash_algo']
        values['os_hash_value'] = record['os_hash_value']
    properties = {key: value for key, value in rules.properties(record).items()
                  if key not in edge['properties']}
    return values, properties


# Columns an on-demand import copies from central's record into the new
# edge row, next to the ID, the copied properties and the location.
ROW_FIELDS = ('name', 'visibility', 'protected', 'min_disk', 'min_ram',
              'owner', 'disk_format', 'container_format', 'os_hidden',
              'size', 'virtual_size', 'checksum', 'os_hash_algo',
              'os_hash_value')


def edge_row(central, location, backend, rules):
    """The edge database row (values for Glance's ``image_create``) of an
    active central image, located at *location* in *backend*.

    The data fields (size, checksum, os_hash) are central's own: the driver
    verifies every byte it reads against them.
    """
    values = {name: central[name] for name in ROW_FIELDS
              if central.get(name) is not None}
    values.update(
        id=central['id'], status='active',
        properties=rules.properties(central),
        locations=[{'url': location, 'metadata': {'store': backend},
                    'status': 'active'}])
    return values
