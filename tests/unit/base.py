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

"""Unit-test base: a fresh ConfigOpts, a configured remote-glance Store and
a requests-mock stub of central. No socket is opened: requests-mock answers
every request, so these tests cover what a real central cannot be made to do
on demand (lies, broken streams, redirects)."""

import hashlib
import json
import uuid

import fixtures
from oslo_config import cfg
from oslo_config import fixture as config_fixture
from requests_mock.contrib import fixture as requests_mock_fixture
import testtools

from glance_store import location

from glance_store_remote import opts
from glance_store_remote import store

CENTRAL = 'https://central.invalid:9292'
BACKEND = 'central'


def record(image_id=None, size=1024, **fields):
    """A central image record as Glance 33 returns it."""
    body = {'id': image_id or str(uuid.uuid4()), 'status': 'active',
            'size': size, 'checksum': 'c' * 32, 'os_hash_algo': 'sha512',
            'os_hash_value': 'h' * 128, 'disk_format': 'raw',
            'container_format': 'bare', 'visibility': 'public'}
    body.update(fields)
    return body


def hashes_of(data):
    """The checksum and os_hash fields of a record of *data*: a whole read
    is verified against them.
    """
    return {'checksum': hashlib.md5(data).hexdigest(),
            'os_hash_algo': 'sha512',
            'os_hash_value': hashlib.sha512(data).hexdigest()}


class Context:
    """The parts of Glance's RequestContext the package reads."""

    def __init__(self, project_id='p1', roles=(), is_admin=False,
                 service_roles=()):
        self.project_id = project_id
        self.roles = list(roles)
        self.service_roles = list(service_roles)
        self.is_admin = is_admin
        self.request_id = 'req-%s' % uuid.uuid4()
        self.global_request_id = None


class StoreTestCase(testtools.TestCase):
    """A Store for backend ``central`` whose central is requests-mock."""

    OPTIONS = {}

    def setUp(self):
        super().setUp()
        self.useFixture(fixtures.Timeout(60, gentle=True))
        self.log = self.useFixture(fixtures.FakeLogger())
        self.conf = cfg.ConfigOpts()
        self.config_fixture = self.useFixture(
            config_fixture.Config(self.conf))
        self.conf([], project='glance')
        self.store = self.make_store(**dict(
            {'auth_type': 'none', 'endpoint_override': CENTRAL},
            **self.OPTIONS))
        self.central = self.useFixture(requests_mock_fixture.Fixture())

    def make_store(self, backend=BACKEND, **options):
        driver = store.Store(self.conf, backend=backend)
        opts.register_keystoneauth_opts(self.conf, backend)
        self.config_fixture.config(group=backend, **options)
        driver.configure()
        return driver

    def make_cached_store(self):
        """A store for backend ``central`` with a cache in a temp dir."""
        return self.make_store(
            auth_type='none', endpoint_override=CENTRAL,
            remote_glance_cache_dir=self.useFixture(fixtures.TempDir()).path)

    def location(self, image_id, backend=BACKEND):
        return location.Location(
            store.SCHEME, store.StoreLocation, self.conf,
            uri='remote-glance://%s/%s' % (backend, image_id),
            backend=backend)

    def serve_record(self, body=None, http_status=200, **fields):
        body = body if body is not None else record(**fields)
        self.central.get('%s/v2/images/%s' % (CENTRAL, body['id']),
                         text=json.dumps(body), status_code=http_status)
        return body

    def serve_data(self, image_id, data, status=200, headers=None):
        """Serve *data* (bytes, or a file-like object that may fail) as the
        image's data; Content-Length is len(data) unless *headers* says.
        """
        body = {'content': data} if isinstance(data, bytes) else {'body': data}
        headers = dict(headers or {})
        if isinstance(data, bytes):
            headers.setdefault('Content-Length', str(len(data)))
        return self.central.get('%s/v2/images/%s/file' % (CENTRAL, image_id),
                                status_code=status, headers=headers, **body)
