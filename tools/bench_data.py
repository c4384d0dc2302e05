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
