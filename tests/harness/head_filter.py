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

"""A paste filter for the benchmark's "today's alternative" only: Glance v2
answers 405 to HEAD on /v2/images/<id>/file, so glance_store's http store
cannot validate a location pointing there. This filter answers that HEAD
with the image's size, read from the image record through the same app.
Never part of a real deployment.
"""

import json
import re

_FILE = re.compile(r'^/v2/images/(?P<id>[0-9a-f-]{36})/file$')


class HeadFileFilter:

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        match = _FILE.match(environ.get('PATH_INFO', ''))
        if environ['REQUEST_METHOD'] != 'HEAD' or match is None:
            return self.app(environ, start_response)
        inner = dict(environ, REQUEST_METHOD='GET',
                     PATH_INFO='/v2/images/%s' % match['id'])
        captured = {}

        def capture(status, headers, exc_info=None):
            captured['status'] = status
        body = b''.join(self.app(inner, capture))
        if not captured['status'].startswith('200'):
            start_response(captured['status'], [('Content-Length', '0')])
            return [b'']
        size = json.loads(body)['size'] or 0
        start_response('200 OK', [('Content-Length', str(size)),
                                  ('Content-Type',
                                   'application/octet-stream')])
        return [b'']


def filter_factory(global_conf, **local_conf):
    return HeadFileFilter
