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

"""requirements.txt lists exactly what glance_store_remote imports at run
time: every top-level import of the package comes from a listed
distribution, and every listed distribution is imported. An optional feature's
imports (setup.cfg [extras], e.g. tooz for a coordinated site) count as
listed too.

Not counted: the standard library, the package itself, and ``glance``: the
host, the glance-api that loads the driver and its paste filters (the
modules that import Glance run only inside it); a requirement on it would
make every install of the driver pull a second copy of the server.
"""

import ast
import configparser
import importlib.metadata
import os
import re
import sys

import testtools

PACKAGE = 'glance_store_remote'
HOST = 'glance'
IGNORED = (PACKAGE, HOST)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))


def canonical(name):
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r'[-_.]+', '-', name).lower()


def imports():
    """{top-level module: {files of the package importing it}}, without the
    standard library, the package and the host.
    """
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, PACKAGE)):
        for name in sorted(files):
            if not name.endswith('.py'):
                continue
            path = os.path.join(folder, name)
            with open(path) as f:
                tree = ast.parse(f.read(), path)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and not node.level:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.partition('.')[0]
                    if top in sys.stdlib_module_names or top in IGNORED:
                        continue
                    found.setdefault(top, set()).add(
                        os.path.relpath(path, ROOT))
    return found


def requirements():
    """Canonical names of the distributions requirements.txt lists."""
    listed = set()
    with open(os.path.join(ROOT, 'requirements.txt')) as f:
        for line in f:
            line = line.partition('#')[0].strip()
            if line:
                listed.add(canonical(
                    re.match(r'[A-Za-z0-9._-]+', line).group(0)))
    return listed


def extras():
    """Canonical names of the distributions of setup.cfg's [extras]
    (optional features: imported only when configured, e.g. tooz).
    """
    parser = configparser.ConfigParser()
    parser.read(os.path.join(ROOT, 'setup.cfg'))
    listed = set()
    if parser.has_section('extras'):
        for _, value in parser.items('extras'):
            for line in value.splitlines():
                line = line.partition('#')[0].strip()
                if line:
                    listed.add(canonical(
                        re.match(r'[A-Za-z0-9._-]+', line).group(0)))
    return listed


class TestRequirements(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.imports = imports()
        self.listed = requirements()
        self.providers = {
            module: {canonical(d) for d in dists} for module, dists in
            importlib.metadata.packages_distributions().items()}

    def test_every_import_comes_from_a_listed_distribution(self):
        unlisted = {module: (sorted(self.providers.get(module, ())) or
                             'not installed', sorted(files))
                    for module, files in self.imports.items()
                    if not self.providers.get(module, set()) & (
                        self.listed | extras())}
        self.assertEqual({}, unlisted)

    def test_every_listed_distribution_is_imported(self):
        imported = set().union(*(self.providers.get(module, set())
                                 for module in self.imports))
        self.assertEqual(set(), self.listed - imported)

    def test_the_host_is_not_a_requirement(self):
        self.assertNotIn(HOST, self.listed)
