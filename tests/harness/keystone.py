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

"""A real Keystone on loopback for the functional tests' Keystone tier.

The ``keystone`` package from PyPI, sqlite, fernet tokens, served by
gunicorn (one worker: token caches are per process). Bootstrapped with an
admin, then provisioned by KeystoneLab: regions, the image service's
endpoints, projects, users and roles. Cleanup as tests.harness.daemon does
it: by process group, at stop, at exit and when the test process dies.
"""

import os
import subprocess
import sys

import requests

from tests.harness import daemon
from tests.harness import lab as lab_module

ADMIN_PASSWORD = 'admin-lab-password'
DOMAIN = 'Default'


class Keystone:
    """One Keystone in *root*.

    :param connection: its ``[database] connection`` (default: SQLite in
        *root*); the tempest tier's many concurrent clients need a server
        database (SQLite answers some of them "database is locked")
    """

    def __init__(self, root, connection=None):
        self.root = root
        self.connection = connection or 'sqlite:///' + os.path.join(
            root, 'keystone.sqlite')
        os.makedirs(root, exist_ok=True)
        self.port = daemon.free_port()
        self.url = 'http://%s:%d/v3' % (lab_module.HOST, self.port)
        self.proc = None
        self.log_file = os.path.join(root, 'keystone.log')
        self.config_file = os.path.join(root, 'keystone.conf')

    def _manage(self, *args):
        subprocess.run([os.path.join(lab_module.BIN, 'keystone-manage'),
                        '--config-file', self.config_file] + list(args),
                       check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE, timeout=120)

    def start(self):
        keys = {name: os.path.join(self.root, name)
                for name in ('fernet-keys', 'fernet-receipts',
                             'credential-keys')}
        with open(self.config_file, 'w') as f:
            f.write(lab_module._ini({
                'DEFAULT': {'log_file': self.log_file},
                'database': {'connection': self.connection},
                'token': {'provider': 'fernet'},
                'fernet_tokens': {'key_repository': keys['fernet-keys']},
                'fernet_receipts': {
                    'key_repository': keys['fernet-receipts']},
                'credential': {'key_repository': keys['credential-keys']},
                'identity': {'password_hash_rounds': 4},
                'cache': {'enabled': True,
                          'backend': 'dogpile.cache.memory'},
            }))
        owner = ('--keystone-user', 'root', '--keystone-group', 'root')
        self._manage('fernet_setup', *owner)
        self._manage('credential_setup', *owner)
        self._manage('db_sync')
        self._manage('bootstrap', '--bootstrap-password', ADMIN_PASSWORD,
                     '--bootstrap-admin-url', self.url,
                     '--bootstrap-public-url', self.url,
                     '--bootstrap-internal-url', self.url,
                     '--bootstrap-region-id', 'RegionOne')
        env = dict(os.environ, OS_KEYSTONE_CONFIG_DIR=self.root,
                   PYTHONPATH=lab_module.PROJECT_ROOT)
        self.proc = daemon.spawn(
            [sys.executable, '-m', 'gunicorn', '--bind',
             '%s:%d' % (lab_module.HOST, self.port), '--workers', '1',
             '--worker-class', 'gthread', '--threads', '8',
             '--no-control-socket',
             'tests.harness.keystone_wsgi:application'],
            os.path.join(self.root, 'gunicorn.log'), self.root, env=env)
        daemon.wait_until(
            lambda: requests.get(self.url, timeout=2).status_code == 200,
            lab_module.START_TIMEOUT, {'keystone': self.proc},
            'an answer from keystone', self.log_tail, interval=0.2)
        return self

    def log_tail(self, lines=30):
        """The last *lines* of Keystone's log and of gunicorn's output."""
        parts = []
        for name in ('keystone.log', 'gunicorn.log'):
            try:
                with open(os.path.join(self.root, name),
                          errors='replace') as f:
                    text = f.read().splitlines()[-lines:]
            except FileNotFoundError:
                continue
            parts.append('--- %s\n%s' % (name, '\n'.join(text)))
        return '\n'.join(parts) or '(no output in %s)' % self.root

    def stop(self):
        """SIGKILL Keystone's process group (it keeps nothing worth a
        graceful stop) and reap it; safe to call twice.
        """
        daemon.kill(self.proc)
        self.proc = None

    def session(self, user, password, project, **kw):
        """A keystoneauth1 session as *user* in *project*."""
        from keystoneauth1.identity import v3
        from keystoneauth1 import session as ks_session
        return ks_session.Session(auth=v3.Password(
            auth_url=self.url, username=user, password=password,
            project_name=project, user_domain_name=DOMAIN,
            project_domain_name=DOMAIN), **kw)

    def admin(self):
        from keystoneclient.v3 import client
        return client.Client(session=self.session('admin', ADMIN_PASSWORD,
                                                  'admin'))


# name: (password, project, roles)
USERS = {
    'glance': ('glance-lab-pw', 'service', ('admin', 'service')),
    'edge-driver': ('driver-lab-pw', 'service', ('admin',)),
    'far-driver': ('far-driver-lab-pw', 'service', ('admin',)),
    'operator': ('operator-lab-pw', 'edge-ops', ('admin', 'member')),
    'alice': ('alice-lab-pw', 'project-a', ('member', 'reader')),
    'bob': ('bob-lab-pw', 'project-b', ('member', 'reader')),
}


class KeystoneLab(lab_module.LabBase):
    """Keystone, a central Glance (RegionOne) and an edge Glance
    (RegionTwo), both behind keystonemiddleware; the edge's driver finds
    central in the catalog by region, with the password of ``edge-driver``.

    :param chain: add a far edge (RegionThree, behind keystonemiddleware too)
        whose ``regional`` backend finds the edge in the catalog by region
        and signs in as ``far-driver``; both edges import on demand
    """

    def __init__(self, cache_max_size=1024 ** 3, chain=False):
        self.cache_max_size = cache_max_size
        self.chain = chain
        self.keystone = self.central = self.edge = self.far = None
        self.projects = {}
        self.proxy = None

    def _parts(self):
        return (self.far, self.edge, self.central, self.keystone)

    def authtoken(self):
        password, project, _ = USERS['glance']
        return {'www_authenticate_uri': self.keystone.url,
                'auth_url': self.keystone.url, 'auth_type': 'password',
                'username': 'glance', 'password': password,
                'project_name': project, 'user_domain_name': DOMAIN,
                'project_domain_name': DOMAIN, 'region_name': 'RegionOne',
                # Validate every token, so that a revocation shows at once.
                'token_cache_time': -1}

    def driver_options(self, user='edge-driver', region='RegionOne'):
        """A remote-glance group signing in as *user*, reading the image
        endpoint of *region*.
        """
        password, project, _ = USERS[user]
        return {'auth_type': 'password', 'auth_url': self.keystone.url,
                'username': user, 'password': password,
                'project_name': project, 'user_domain_name': DOMAIN,
                'project_domain_name': DOMAIN, 'region_name': region,
                'timeout': 5}

    def upstreams(self):
        return (self.central, self.edge) if self.chain else (self.central,)

    def _start(self):
        self.keystone = Keystone(os.path.join(self.root, 'keystone')).start()
        self.cache_dir = os.path.join(self.root, 'edge-cache')
        self.central = lab_module.GlanceServer(
            'central', os.path.join(self.root, 'central'), flavor='keystone',
            options={'keystone_authtoken': self.authtoken()})
        self.edge = lab_module.GlanceServer(
            'edge', os.path.join(self.root, 'edge'), flavor='keystonehook',
            backends={'local': 'file', 'central': 'remote-glance'},
            options={'keystone_authtoken': self.authtoken(),
                     'central': dict(self.driver_options(),
                                     **lab_module.cache_options(
                                         self.cache_dir, self.cache_max_size,
                                         self.chain))})
        servers = [self.central, self.edge]
        if self.chain:
            self.far = lab_module.GlanceServer(
                'far-edge', os.path.join(self.root, 'far-edge'),
                flavor='keystonehook',
                backends={'local': 'file', 'regional': 'remote-glance'},
                options={'keystone_authtoken': self.authtoken(),
                         'regional': dict(
                             self.driver_options('far-driver', 'RegionTwo'),
                             **lab_module.cache_options(
                                 os.path.join(self.root, 'far-cache'),
                                 self.cache_max_size, on_demand=True))})
            servers.append(self.far)
        self._provision()
        self._launch(*servers)

    def _provision(self):
        admin = self.keystone.admin()
        regions = [('RegionOne', self.central.url),
                   ('RegionTwo', self.edge.url)]
        if self.far is not None:
            regions.append(('RegionThree', self.far.url))
        for region, _ in regions[1:]:
            admin.regions.create(region)
        service = admin.services.create('glance', type='image')
        for region, url in regions:
            for interface in ('public', 'internal'):
                admin.endpoints.create(service, url, interface=interface,
                                       region=region)
        domain = admin.domains.find(name=DOMAIN)
        for name in {project for _, project, _ in USERS.values()}:
            self.projects[name] = admin.projects.create(name, domain).id
        self.create_users(admin, domain, USERS)

    def create_users(self, admin, domain, users):
        """Create *users* ({name: (password, project, roles)}) in *domain*,
        each granted its roles in its project (one of self.projects).
        """
        roles = {role.name: role for role in admin.roles.list()}
        for name, (password, project, granted) in users.items():
            user = admin.users.create(name, domain=domain, password=password,
                                      default_project=self.projects[project])
            for role in granted:
                admin.roles.grant(roles[role], user=user,
                                  project=self.projects[project])

    def session(self, user):
        password, project, _ = USERS[user]
        return self.keystone.session(user, password, project)

    def glance(self, user, server):
        """python-glanceclient as *user*, with a real token."""
        from glanceclient import client
        return client.Client('2', session=self.session(user),
                             endpoint_override=server.url)

    def application_credential(self, user='edge-driver', name='edge'):
        """Create an application credential of *user*: (id, secret)."""
        from keystoneclient.v3 import client
        own = client.Client(session=self.session(user))
        credential = own.application_credentials.create(
            name, user=own.session.get_user_id())
        return credential.id, credential.secret

    def delete_application_credential(self, credential_id,
                                      user='edge-driver'):
        from keystoneclient.v3 import client
        own = client.Client(session=self.session(user))
        own.application_credentials.delete(credential_id,
                                           user=own.session.get_user_id())
