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

"""Property-based tests of the location parser (locations.parse_location):
hypothesis generates arbitrary URIs and proves that exactly
``remote-glance://<this backend>/<lowercase uuid>`` is accepted, and that a
refusal never reaches central (any HTTP request fails the test)."""

import string
import uuid

import hypothesis
from hypothesis import strategies
from requests_mock.contrib import fixture as requests_mock_fixture
import testtools

from glance_store_remote import exceptions
from glance_store_remote import locations

# The tests run beside others on a loaded 2-core machine: how fast inputs
# are generated says nothing about the parser, and no example has a time
# limit. The examples themselves stay as many as by default.
hypothesis.settings.register_profile(
    'shared-machine', deadline=None,
    suppress_health_check=[hypothesis.HealthCheck.too_slow])
hypothesis.settings.load_profile('shared-machine')

BACKEND = 'central'
CANONICAL = 'remote-glance://%s/%s'

uuids = strategies.uuids().map(str)
anything = strategies.text(
    alphabet=strategies.characters(codec='utf-8'), max_size=120)
url_ish = strategies.text(
    alphabet=(string.ascii_letters + string.digits +
              ':/@?#%.-_~[]+!$&\'()*,;= \t\n'), max_size=120)


def is_canonical(uri):
    """The oracle, independent of the parser: this backend, then a UUID
    exactly as str(uuid.UUID(...)) prints it.
    """
    prefix = CANONICAL % (BACKEND, '')
    if not uri.startswith(prefix):
        return False
    rest = uri[len(prefix):]
    try:
        return str(uuid.UUID(rest)) == rest
    except ValueError:
        return False


def accepted(uri):
    try:
        locations.parse_location(uri, BACKEND)
        return True
    except exceptions.InvalidLocation:
        return False


def mutated(uri):
    """Small edits of a valid location: each must be refused."""
    return strategies.one_of(
        strategies.builds(lambda s: uri + s, url_ish.filter(bool)),
        strategies.builds(lambda s: s + uri, url_ish.filter(bool)),
        strategies.builds(lambda i, c: uri[:i] + c + uri[i + 1:],
                          strategies.integers(0, len(uri) - 1),
                          strategies.sampled_from('/:@?#%.A. \n\x00')),
        strategies.builds(lambda i: uri[:i] + uri[i + 1:],
                          strategies.integers(0, len(uri) - 1)),
    )


class TestParseLocationProperties(testtools.TestCase):

    def setUp(self):
        super().setUp()
        # Nothing is registered: any request would raise NoMockAddress.
        self.useFixture(requests_mock_fixture.Fixture())

    @hypothesis.given(uuids)
    def test_every_canonical_location_is_accepted(self, image_id):
        self.assertEqual(image_id, locations.parse_location(
            CANONICAL % (BACKEND, image_id), BACKEND))

    @hypothesis.given(anything)
    def test_arbitrary_text_is_refused_unless_canonical(self, text):
        self.assertEqual(is_canonical(text), accepted(text))

    @hypothesis.given(uuids.flatmap(
        lambda image_id: mutated(CANONICAL % (BACKEND, image_id))))
    def test_edits_of_a_valid_location_match_the_oracle(self, uri):
        self.assertEqual(is_canonical(uri), accepted(uri))

    @hypothesis.given(strategies.from_regex(r'[A-Za-z0-9_-]{1,20}',
                                            fullmatch=True), uuids)
    def test_another_backend_is_refused(self, backend, image_id):
        hypothesis.assume(backend != BACKEND)
        self.assertRaises(exceptions.InvalidLocation, locations.parse_location,
                          CANONICAL % (backend, image_id), BACKEND)
