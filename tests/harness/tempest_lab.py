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

"""The tempest tier: Glance's own API tests against the edge, compared with
a stock Glance.

tempest 47's image API tests (``tempest.api.image``) and
glance-tempest-plugin's RBAC tests, from a virtualenv of their own
(tools/tempest_env.py), run against Glance 33 servers behind one real
Keystone (tests/harness/keystone.py), on 127.0.0.1, in pairs (PAIRS):

* an EDGE configured as the docs say: ``local:file`` (the default),
  ``central:remote-glance`` reading a central Glance (RegionOne) with a
  password and the catalog, the store-info, record-copy and on-demand
  filters, Glance's own image cache and its management API
  (``keystone+cachemanagement``) beside ours;
* a STOCK Glance with the same configuration minus this package: its
  ``central`` is an ``http`` store, read-only as the edge's now is, so that
  tempest sees the same stores at both (with a writable file store there,
  tempest's waiters, which wait for every writable store, time out on its
  single-store import tests: a worse comparison).

Every server also has a ``web:http`` store and ``show_multiple_locations``
(tempest's location tests), lets Glance read a loopback web server holding
tempest's ``http_image`` and ``http_qcow2_image`` and itself
(glance-download), and has Glance's metadefs loaded, as devstack does. The
first pair runs the whole selection with one writable store; the second
adds a writable ``spare:file`` store and runs the tests that need two
(copy-image to all stores, deleting from one store).

The tier compares each pair test by test: a test that fails on the edge and
not on stock is a regression (the tier fails); one that fails on both is
shared, reported by name, and does not fail the tier (it is Glance's,
tempest's or the lab's, not ours).

    python -m tests.harness.tempest_lab \
        --tempest-python .tox/tempest-47/bin/python

Keystone and the Glance servers keep their databases in one private MariaDB
(tests/harness/site.py), as production does: on SQLite, tempest's concurrency
made Keystone and both Glance servers answer 500 ("database is locked") to
dozens of requests of one run, in WAL mode too.
"""

import argparse
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time

from tests.harness import keystone
from tests.harness import lab as lab_module
from tests.harness import site
from tests.harness import web_server

# The selection: Glance's image API tests and the plugin's RBAC tests.
SELECTION = r'^(tempest\.api\.image\.|glance_tempest_plugin\.tests\.rbac\.)'
# The tests that need two writable stores (copies, deleting from one store):
# tempest's waiters wait for every writable store, so its single-store
# import tests cannot pass on such a Glance, and these need one.
MULTI_SELECTION = (r'^tempest\.api\.image\.v2\.(admin\.)?test_images\.'
                   r'(MultiStores\w*|ImportCopyImagesTest|'
                   r'MultistoreLocationImportTest)\.')
# (title, tempest selection, tests left out, (edge, stock)): the edge has
# local:file and central:remote-glance, stock local:file and central:http
# (read-only as ours); both web:http. The "multi" pair adds a writable
# spare:file and runs the tests the first pair leaves to it.
PAIRS = (('one writable store', SELECTION, MULTI_SELECTION,
          ('edge', 'stock')),
         ('two writable stores', MULTI_SELECTION, None,
          ('edge-multi', 'stock-multi')))
CONCURRENCY = 3
RUN_TIMEOUT = 30 * 60  # seconds for one tempest run
HTTP_IMAGE_SIZE = 64 * 1024
# Statuses of a subunit stream that count as a failure.
FAILED = ('fail', 'uxsuccess', 'inprogress')

_PARSE_SUBUNIT = r'''
import json, sys
import subunit, testtools
results = {}
def on_test(test):
    reason = ''
    details = test['details']
    for key in ('reason', 'traceback'):
        if key in details:
            reason = details[key].as_text()[-2000:]
    results[test['id']] = [test['status'], reason]
with open(sys.argv[1], 'rb') as stream:
    case = subunit.ByteStreamToStreamResult(stream, non_subunit_name='stdout')
    result = testtools.StreamToDict(on_test)
    result.startTestRun()
    case.run(result)
    result.stopTestRun()
json.dump(results, sys.stdout)
'''


def empty_qcow2(virtual_size=1024 * 1024):
    """A valid, empty qcow2 image (version 2, 64 KiB clusters: header,
    refcount table, refcount block, L1 table), as ``qemu-img create``
    makes one, for tempest's ``http_qcow2_image``: Glance 33 checks that
    web-download data has the image's disk_format.
    """
    cluster = 64 * 1024
    data = bytearray(4 * cluster)
    struct.pack_into('>4sIQIIQIIQQIIQ', data, 0, b'QFI\xfb', 2, 0, 0, 16,
                     virtual_size, 0, 1, 3 * cluster, cluster, 1, 0, 0)
    struct.pack_into('>Q', data, cluster, 2 * cluster)
    for index in range(4):
        struct.pack_into('>H', data, 2 * cluster + 2 * index, 1)
    return bytes(data)


class TempestLab(keystone.KeystoneLab):
    """Keystone, central (RegionOne), and two pairs of Glance servers that
    tempest runs against, an edge and a stock Glance each (see PAIRS), plus
    the web server of tempest's http_image.
    """

    def __init__(self, cache_max_size=1024 ** 3):
        super().__init__(cache_max_size=cache_max_size)
        self.servers = {}   # name: (GlanceServer, region)
        self.web = self.mariadb = None
        self.http_image = self.http_qcow2_image = None

    @property
    def stock(self):
        return self.servers.get('stock', (None,))[0]

    def _parts(self):
        return tuple(server for server, _ in self.servers.values()) + (
            self.central, self.web, self.keystone, self.mariadb)

    def _database(self, name):
        """A database of the lab's MariaDB for *name*: its URL."""
        db = self.mariadb
        if name != db.database:
            db.query('CREATE DATABASE `%s` CHARACTER SET utf8mb4' % name)
            for host in (lab_module.HOST, 'localhost'):
                db.query("GRANT ALL ON `%s`.* TO '%s'@'%s'" % (
                    name, db.user, host))
        return db.url.replace('/%s?' % db.database, '/%s?' % name)

    def _glance(self, name, edge, spare):
        """The edge or stock Glance *name*; with *spare*, a second
        writable file store.
        """
        root = os.path.join(self.root, name)
        options = {
            'database': {'connection': self._database(
                'glance_' + name.replace('-', '_'))},
            'DEFAULT': {
                'enabled_import_methods': '[glance-direct,web-download,'
                                          'copy-image,glance-download]',
                'image_cache_dir': os.path.join(root, 'cache')},
            'keystone_authtoken': self.authtoken(),
            'web': {'store_description': 'images on a web server'},
            'central': {'store_description': 'Central Glance'},
        }
        backends = {'local': 'file'}
        if spare:
            backends['spare'] = 'file'
            options['spare'] = {'filesystem_store_datadir': os.path.join(
                root, 'spare')}
        if edge:
            backends['central'] = 'remote-glance'
            options['central'].update(self.driver_options(),
                                      **lab_module.cache_options(
                                          os.path.join(root, 'remote-cache'),
                                          self.cache_max_size,
                                          on_demand=True))
            flavor = 'keystone+cachemanagement+edge'
        else:
            backends['central'] = 'http'
            flavor = 'keystone+cachemanagement'
        backends['web'] = 'http'
        server = lab_module.GlanceServer(name, root, flavor=flavor,
                                         options=options, backends=backends)
        # web-download and the http store may read the web server, and
        # glance-download reads this Glance itself.
        server.set_options({'import_filtering_opts': {
            'allowed_hosts': '[%s]' % lab_module.HOST,
            'allowed_ports': '[%d,%d]' % (self.web.port, server.port)}})
        return server

    def _start(self):
        self.mariadb = site.MariaDB(os.path.join(self.root, 'mariadb'),
                                    database='keystone')
        self.mariadb.start()
        self.keystone = keystone.Keystone(
            os.path.join(self.root, 'keystone'),
            connection=self._database('keystone')).start()
        self.web = web_server.ImageWebServer(
            os.path.join(self.root, 'web')).start()
        self.http_image, _ = self.web.publish(os.urandom(HTTP_IMAGE_SIZE))
        self.http_qcow2_image, _ = self.web.publish(empty_qcow2())
        self.central = lab_module.GlanceServer(
            'central', os.path.join(self.root, 'central'), flavor='keystone',
            options={'keystone_authtoken': self.authtoken(), 'database': {
                'connection': self._database('glance_central')}})
        region = 2
        for _, _, _, names in PAIRS:
            for name in names:
                self.servers[name] = (self._glance(
                    name, edge=name.startswith('edge'),
                    spare=name.endswith('multi')), 'Region%d' % region)
                region += 1
        self._provision()
        glances = [server for server, _ in self.servers.values()]
        lab_module.db_sync(self.central)
        for server in glances:
            lab_module.db_sync(server)
            subprocess.run(
                [os.path.join(os.path.dirname(server.python),
                              'glance-manage'), '--config-file',
                 server.config_file, 'db_load_metadefs',
                 os.path.join(lab_module.GLANCE_ETC, 'metadefs')],
                check=True, stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE, timeout=120)
        for server in [self.central] + glances:
            server.launch()
        for server in [self.central] + glances:
            server.wait_ready()

    def _provision(self):
        admin = self.keystone.admin()
        regions = [('RegionOne', self.central)] + [
            (region, server) for server, region in self.servers.values()]
        for region, _ in regions[1:]:
            admin.regions.create(region)
        service = admin.services.create('glance', type='image')
        for region, server in regions:
            for interface in ('public', 'internal', 'admin'):
                admin.endpoints.create(service, server.url,
                                       interface=interface, region=region)
        domain = admin.domains.find(name=keystone.DOMAIN)
        users = {name: keystone.USERS[name]
                 for name in ('glance', 'edge-driver')}
        for name in {project for _, project, _ in users.values()}:
            self.projects[name] = admin.projects.create(name, domain).id
        self.create_users(admin, domain, users)


def tempest_conf(lab, region, folder):
    """A tempest.conf for the Glance of *region*; returns its folder."""
    os.makedirs(folder, exist_ok=True)
    sections = {
        'DEFAULT': {'log_dir': folder, 'log_file': 'tempest.log'},
        'auth': {'use_dynamic_credentials': True,
                 'admin_username': 'admin',
                 'admin_password': keystone.ADMIN_PASSWORD,
                 'admin_project_name': 'admin',
                 'admin_domain_name': keystone.DOMAIN,
                 'create_isolated_networks': False},
        'identity': {'uri_v3': lab.keystone.url, 'auth_version': 'v3',
                     'region': 'RegionOne'},
        'identity-feature-enabled': {'api_v2': False},
        'image': {'region': region, 'endpoint_type': 'public',
                  'http_image': lab.http_image,
                  'http_qcow2_image': lab.http_qcow2_image,
                  'image_caching_enabled': True,
                  'build_timeout': 60, 'build_interval': 1},
        'image-feature-enabled': {'manage_locations': True,
                                  'http_store_enabled': True,
                                  'import_image': True,
                                  'do_secure_hash': True},
        'enforce_scope': {'glance': True},
        'service_available': {'glance': True, 'nova': False,
                              'cinder': False, 'neutron': False,
                              'swift': False},
        'validation': {'run_validation': False},
        'oslo_concurrency': {'lock_path': os.path.join(folder, 'locks')},
    }
    with open(os.path.join(folder, 'tempest.conf'), 'w') as f:
        f.write(lab_module._ini(sections))
    return folder


def run_tempest(tempest_python, folder, regex=SELECTION,
                concurrency=CONCURRENCY, exclude=None):
    """Run the tempest selection (*regex* minus *exclude*) with the
    tempest.conf of *folder*; returns {test id: [status, reason]} parsed
    from its subunit stream.
    """
    tempest_python = os.path.abspath(tempest_python)
    bin_dir = os.path.dirname(tempest_python)
    site = subprocess.run(
        [tempest_python, '-c', 'import os, tempest; print(os.path.dirname('
         'os.path.dirname(tempest.__file__)))'],
        check=True, capture_output=True, text=True).stdout.strip()
    with open(os.path.join(folder, '.stestr.conf'), 'w') as f:
        f.write('[DEFAULT]\ntest_path=%s\ntop_dir=%s\ngroup_regex=%s\n' % (
            os.path.join(site, 'tempest', 'test_discover'), site,
            r'([^\.]*\.)*'))
    env = dict(os.environ, TEMPEST_CONFIG_DIR=folder,
               TEMPEST_CONFIG='tempest.conf', OS_TEST_TIMEOUT='600')
    env.pop('PYTHONPATH', None)
    stream = os.path.join(folder, 'results.subunit')
    with open(stream, 'wb') as out, open(os.path.join(
            folder, 'stestr.log'), 'wb') as log:
        command = [os.path.join(bin_dir, 'stestr'), 'run', '--subunit',
                   '--concurrency', str(concurrency)]
        if exclude:
            command += ['--exclude-regex', exclude]
        subprocess.run(command + [regex],
                       cwd=folder, env=env, stdout=out, stderr=log,
                       stdin=subprocess.DEVNULL, timeout=RUN_TIMEOUT)
    parsed = subprocess.run([tempest_python, '-c', _PARSE_SUBUNIT, stream],
                            check=True, capture_output=True, text=True)
    return json.loads(parsed.stdout)


def _name(test_id):
    """A test's ID without tempest's [id-...,attrs] suffix."""
    return re.sub(r'\[.*\]$', '', test_id)


def summary(results):
    counts = {'run': 0, 'passed': 0, 'skipped': 0, 'failed': 0}
    for status, _ in results.values():
        if status == 'exists':
            continue
        counts['run'] += 1
        if status in FAILED:
            counts['failed'] += 1
        elif status == 'skip':
            counts['skipped'] += 1
        else:
            counts['passed'] += 1
    return counts


def compare(edge, stock):
    """Regressions (fail on the edge, not on stock), shared failures and
    stock-only failures, each a sorted list of test names.
    """
    edge_failed = {_name(t) for t, (s, _) in edge.items() if s in FAILED}
    stock_failed = {_name(t) for t, (s, _) in stock.items() if s in FAILED}
    return {'regressions': sorted(edge_failed - stock_failed),
            'shared': sorted(edge_failed & stock_failed),
            'stock_only': sorted(stock_failed - edge_failed)}


def run_tier(tempest_python, folder=None, regex=SELECTION,
             concurrency=CONCURRENCY, pairs=PAIRS):
    """Start the lab, run tempest against every server of every pair at
    the same time, stop the lab; return the report (a dict, see
    report_text). *regex* replaces the first pair's selection.
    """
    folder = folder or tempfile.mkdtemp(prefix='gsr-tempest-')
    pairs = ((pairs[0][0], regex) + tuple(pairs[0][2:]),) + tuple(
        pairs[1:])
    started = time.monotonic()
    results, errors = {}, []
    with TempestLab() as lab:
        ready = time.monotonic()

        def run(name, selection, exclude, workers):
            try:
                results[name] = run_tempest(
                    tempest_python, tempest_conf(
                        lab, lab.servers[name][1],
                        os.path.join(folder, name)),
                    selection, workers, exclude)
            except Exception as exc:  # reported, and fails the tier
                errors.append('%s: %r' % (name, exc))
        threads = [threading.Thread(target=run, args=(
            name, selection, exclude, concurrency if index == 0 else 1))
            for index, (_, selection, exclude, names) in enumerate(pairs)
            for name in names]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # A test that failed on the edge and not on stock while tempest ran
        # its classes side by side (metadef namespaces of one class are
        # seen by another's listing) is run again alone, on both: it is a
        # regression only if it fails on the edge again.
        alone = {}
        for _, _, _, (edge, stock) in pairs:
            if edge not in results or stock not in results:
                continue
            for test in compare(results[edge], results[stock])[
                    'regressions']:
                again = {}
                for name in (edge, stock):
                    try:
                        again[name] = run_tempest(
                            tempest_python, os.path.join(folder, name),
                            r'^%s(\[|$)' % re.escape(test), 1)
                    except Exception as exc:
                        errors.append('%s alone: %r' % (test, exc))
                alone[test] = {name: [s for s, _ in found.values()]
                               for name, found in again.items()}
        servers = [server for server, _ in lab.servers.values()]
        for server in servers + [lab.central]:
            with open(os.path.join(folder, server.name + '-glance.log'),
                      'w') as f:
                f.write(server.log_text())
        shutil.copyfile(lab.keystone.log_file,
                        os.path.join(folder, 'keystone.log'))
        locked = {server.name: server.log_text().count('database is locked')
                  for server in servers}
    report = {'folder': folder, 'errors': errors, 'locked': locked,
              'alone': alone,
              'lab_seconds': round(ready - started, 1),
              'seconds': round(time.monotonic() - started, 1),
              'pairs': []}
    for title, _, _, (edge, stock) in pairs:
        if edge not in results or stock not in results:
            continue
        pair = compare(results[edge], results[stock])
        # Failed on the edge only beside other classes, not alone.
        pair['concurrent_only'] = [
            test for test in pair['regressions']
            if test in alone and alone[test].get(edge) and
            not set(alone[test][edge]) & set(FAILED)]
        pair['regressions'] = [test for test in pair['regressions']
                               if test not in pair['concurrent_only']]
        pair.update(title=title, edge_name=edge, stock_name=stock,
                    edge=summary(results[edge]),
                    stock=summary(results[stock]),
                    reasons={_name(t): reason for t, (s, reason) in
                             results[edge].items() if s in FAILED})
        report['pairs'].append(pair)
    return report


def report_text(report):
    lines = ['tempest tier (%s): %ss in all, lab ready in %ss' % (
        report['folder'], report['seconds'], report['lab_seconds'])]
    for error in report['errors']:
        lines.append('ERROR ' + error)
    for pair in report['pairs']:
        lines.append('-- %s' % pair['title'])
        for name in ('edge', 'stock'):
            counts = pair[name]
            lines.append('%-11s run %d, passed %d, skipped %d, failed %d' % (
                pair[name + '_name'], counts['run'], counts['passed'],
                counts['skipped'], counts['failed']))
        for key, title in (('regressions', 'FAIL on the edge, not on stock'),
                           ('shared', 'shared (fail on both)'),
                           ('stock_only', 'fail on stock only'),
                           ('concurrent_only', 'failed on the edge beside '
                            'other classes, passed alone')):
            for test in pair.get(key, ()):
                lines.append('%s: %s' % (title, test))
                if key == 'regressions':
                    lines.append('    ' + pair['reasons'].get(test, '')[
                        -600:].replace('\n', '\n    '))
    lines.append('"database is locked" in the Glance logs: %s'
                 % report['locked'])
    return '\n'.join(lines)


def passed(report):
    return (not report['errors'] and len(report['pairs']) == len(PAIRS) and
            not any(pair['regressions'] for pair in report['pairs']))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--tempest-python', required=True,
                        help='the python of the tempest virtualenv')
    parser.add_argument('--regex', default=SELECTION)
    parser.add_argument('--concurrency', type=int, default=CONCURRENCY)
    parser.add_argument('--keep', help='keep the tempest runs here')
    args = parser.parse_args(argv)
    report = run_tier(args.tempest_python, args.keep, args.regex,
                      args.concurrency)
    print(report_text(report))
    if not args.keep:
        shutil.rmtree(report['folder'], ignore_errors=True)
    return 0 if passed(report) else 1


if __name__ == '__main__':
    sys.exit(main())
