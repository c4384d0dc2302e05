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

"""The benchmarks' results.json: a section run alone (``--only``) replaces
its own numbers and leaves the other sections' as they are.
"""

import json
import os


def merge(folder, section, data):
    """Put *data* under *section* of *folder*/results.json (made if
    missing or unreadable); return the file's path.
    """
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, 'results.json')
    try:
        with open(path) as f:
            results = json.load(f)
    except (OSError, ValueError):
        results = {}
    results[section] = data
    with open(path, 'w') as f:
        json.dump(results, f, indent=2, sort_keys=True)
    return path
