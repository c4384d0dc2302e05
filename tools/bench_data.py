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

"""Image data for the benchmarks: random bytes written to a file a block at
a time, so that a large image never sits in memory.
"""

import os

MiB = 1024 * 1024


def random_file(path, size):
    """Write *size* random bytes to *path*; return *path*."""
    with open(path, 'wb') as f:
        left = size
        while left:
            block = os.urandom(min(64 * MiB, left))
            f.write(block)
            left -= len(block)
    return path
