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

"""Where a loopback miss spends its time.

Starts central and a one-worker edge with the lab harness, as tools/bench.py
does, with four remote-glance backends on the same central that differ
only in remote_glance_chunk_size (256 KiB, 1, 4 and 16 MiB), uploads one
image and then, alternating the cases in every trial:

* direct: the image from central, and direct with the client hashing it;
* a miss through the default backend (4 MiB), the client not hashing;
* a verified miss through each backend (evicted before each), the client
  hashing what arrives as nova does;

and for each, the CPU seconds that central's worker, the edge's worker and
the client spent (from /proc), and how many of the machine's cores were
busy meanwhile (all processes). Then the references of one core without
the servers: sha512 alone, writing a file alone (with and without the
fill's fdatasync every 256 MiB), and hashing plus writing in one loop.
With ``--py-spy`` one more miss (4 MiB chunks) is sampled in central's and
the edge's workers at once, and the functions where they spend the samples
are printed. Nothing is written but what --out names.

    python -m tools.profile_miss --py-spy /path/to/py-spy
"""

import argparse
import collections
import functools
import hashlib
import os
import shutil
import statistics
import subprocess
import tempfile
import time

from glance_store_remote import cache as cache_module
from glance_store_remote import fill as fill_module
from tests.harness import lab as lab_module
from tools import bench
from tools import bench_data

MiB = 1024 * 1024
KiB = 1024
# remote_glance_chunk_size of the backends, in KiB (4096 is the default).
CHUNKS = (256, 1024, 4096, 16384)
TICK = os.sysconf('SC_CLK_TCK')


def cpu_seconds(pid):
    """User and system seconds of process *pid*, all threads."""
    with open('/proc/%d/stat' % pid) as f:
        fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def evict(cache, central_id):
    """Evict an image, waiting for readers that are still closing."""
    deadline = time.monotonic() + 30
    while cache.evict(central_id, force_pinned=True) == 'busy':
        if time.monotonic() > deadline:
            raise RuntimeError('image %s stays busy' % central_id)
        time.sleep(0.05)


def machine_busy():
    """Seconds the machine's cores were busy since boot, all cores (idle
    and iowait excluded).
    """
    with open('/proc/stat') as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / TICK


def backend(chunk):
    return 'central' if chunk == 4096 else 'k%d' % chunk


def label(chunk):
    return ('%d MiB' % (chunk // KiB)) if chunk >= KiB else '%d KiB' % chunk


class Profile:

    def __init__(self, args):
        self.args = args
        self.size = args.size_mib * MiB
        self.tmp = tempfile.mkdtemp(prefix='gsr-profile-')
        self.lab = None
        self.lines = []

    def say(self, text):
        self.lines.append(text)
        print(text, flush=True)

    def start(self):
        self.lab = lab_module.Lab(cache_max_size=64 * 1024 * MiB).start()
        central = self.lab.central.url
        options = {'DEFAULT': {'enabled_backends': ', '.join(
            ['local:file'] + ['%s:remote-glance' % backend(c)
                              for c in CHUNKS])}}
        self.caches = {}
        for chunk in CHUNKS:
            name = backend(chunk)
            folder = (self.lab.cache_dir if name == 'central' else
                      os.path.join(self.lab.root, name + '-cache'))
            self.caches[name] = cache_module.Cache(folder, 64 * 1024 * MiB)
            options[name] = {'auth_type': 'none',
                             'endpoint_override': central,
                             'remote_glance_cache_dir': folder,
                             'remote_glance_cache_max_size': 64 * 1024 * MiB,
                             'remote_glance_chunk_size': chunk * KiB}
        self.lab.edge.set_options(options)
        self.lab.edge.restart()

    def stop(self):
        if self.lab is not None:
            self.lab.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def image(self):
        path = bench_data.random_file(os.path.join(self.tmp, 'image.raw'),
                                      self.size)
        client = self.lab.central.glance()
        image = client.images.create(name='profile', disk_format='raw',
                                     container_format='bare')
        with open(path, 'rb') as f:
            client.images.upload(image.id, f)
        os.unlink(path)
        return client.images.get(image.id)

    def link(self, central_id, name):
        client = self.lab.edge.glance(lab_module.ADMIN)
        image = client.images.create(name=name, disk_format='raw',
                                     container_format='bare')
        client.images.add_location(
            image.id, 'remote-glance://%s/%s' % (name, central_id), {})
        return image.id

    def timed(self, url, headers, algo):
        """(seconds, CPU seconds of central, edge, client) of one GET."""
        pids = {'central': self.lab.central.worker_pids()[0],
                'edge': self.lab.edge.worker_pids()[0],
                'client': os.getpid()}
        before = {k: cpu_seconds(p) for k, p in pids.items()}
        busy = machine_busy()
        stamps = [time.perf_counter()]
        seconds, status, received, error = bench.get(
            url, headers, verify=algo,
            on_bytes=lambda _: stamps.append(time.perf_counter()))
        busy = (machine_busy() - busy) / seconds
        # The client's 4 MiB reads: the last one waits for the verdict on
        # a miss (the last byte is held back until the hash matched).
        gaps = [b - a for a, b in zip(stamps, stamps[1:])]
        if status != 200 or received != self.size or error:
            raise RuntimeError('%s: %s %s %s' % (url, status, received,
                                                 error))
        return seconds, dict({k: cpu_seconds(p) - before[k]
                              for k, p in pids.items()}, cores=busy,
                             last=gaps[-1] * 1000,
                             read=statistics.median(gaps) * 1000)

    def run(self):
        self.start()
        image = self.image()
        algo = image.os_hash_algo
        headers = bench.identity_headers()
        cases = [('direct', lambda: self.timed(
            '%s/v2/images/%s/file' % (self.lab.central.url, image.id),
            None, None)),
            ('direct, client verifies', lambda: self.timed(
                '%s/v2/images/%s/file' % (self.lab.central.url, image.id),
                None, algo))]
        for chunk in CHUNKS:
            name = backend(chunk)
            edge_id = self.link(image.id, name)

            def miss(name=name, edge_id=edge_id, verify=algo):
                evict(self.caches[name], image.id)
                return self.timed('%s/v2/images/%s/file' % (
                    self.lab.edge.url, edge_id), headers, verify)
            if name == 'central':
                cases.append(('miss, %s chunks' % label(chunk),
                              functools.partial(miss, verify=None)))
            cases.append(('verified miss, %s chunks' % label(chunk), miss))
        results = collections.defaultdict(list)
        for _ in range(self.args.trials):
            for name, fn in cases:
                results[name].append(fn())
        self.say('%d MiB image, %d trials, alternating; MiB/s median '
                 '(min-max);\nCPU seconds median: central / edge / client; '
                 'busy cores of the machine (all processes);\n'
                 'the client\'s last 4 MiB read / its median 4 MiB read, '
                 'ms'
                 % (self.args.size_mib, self.args.trials))
        speeds = {}
        for name, _ in cases:
            mib_s = [self.size / MiB / s for s, _ in results[name]]
            speeds[name] = statistics.median(mib_s)
            cpu = {k: statistics.median(c[k] for _, c in results[name])
                   for k in ('central', 'edge', 'client', 'cores', 'last',
                             'read')}
            self.say('  %-30s %6.1f (%6.1f-%6.1f)  %4.2f / %4.2f / %4.2f;'
                     ' %4.2f; %3.0f / %2.0f' % (
                         name, speeds[name], min(mib_s), max(mib_s),
                         cpu['central'], cpu['edge'], cpu['client'],
                         cpu['cores'], cpu['last'], cpu['read']))
        references = self.references(algo)
        for name, mib_s in references.items():
            self.say('  %-32s %6.1f  (one core, no server)' % (name, mib_s))
        direct_v = speeds['direct, client verifies']
        self.say('  (the references: median of 3)')
        self.say('  miss, 4 MiB chunks / direct: %.2fx; %s alone / direct: '
                 '%.2fx' % (speeds['miss, 4 MiB chunks'] / speeds['direct'],
                            algo, references[algo] / speeds['direct']))
        for chunk in CHUNKS:
            name = 'verified miss, %s chunks' % label(chunk)
            self.say('  %s / direct verified: %.2fx; / %s alone: %.2fx'
                     % (name, speeds[name] / direct_v, algo,
                        speeds[name] / references[algo]))
        if self.args.py_spy:
            self.sample(image, headers, algo)
        if self.args.out:
            with open(self.args.out, 'w') as f:
                f.write('\n'.join(self.lines) + '\n')

    def references(self, algo, repeat=3):
        """MiB/s of the same work without the servers, on one core, 4 MiB
        blocks, median of *repeat*: hashing alone, writing a file alone
        (as the fill does, with and without its fdatasync every
        CHECKPOINT_BYTES), and hashing and writing in one loop.
        """
        block = os.urandom(bench.READ)
        count = self.size // bench.READ
        path = os.path.join(self.tmp, 'written')
        every = fill_module.CHECKPOINT_BYTES // bench.READ

        def run(write, hash_it, sync=False):
            hasher = hashlib.new(algo)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC,
                         0o600) if write else None
            started = time.perf_counter()
            try:
                for i in range(count):
                    if write:
                        os.write(fd, block)
                        if sync and (i + 1) % every == 0:
                            os.fdatasync(fd)
                    if hash_it:
                        hasher.update(block)
                seconds = time.perf_counter() - started
            finally:
                if fd is not None:
                    os.close(fd)
                    os.unlink(path)
            return self.size / MiB / seconds

        cases = {algo: (False, True),
                 'write a file': (True, False),
                 'write a file, fdatasync / 256 MiB': (True, False, True),
                 '%s + write a file' % algo: (True, True)}
        return {name: statistics.median(run(*how) for _ in range(repeat))
                for name, how in cases.items()}

    def sample(self, image, headers, algo):
        """One more miss (4 MiB chunks) with py-spy in both workers."""
        edge_id = self.link(image.id, 'central')
        evict(self.caches['central'], image.id)
        spies = {}
        for side, server in (('central', self.lab.central),
                             ('edge', self.lab.edge)):
            raw = os.path.join(self.tmp, side + '.txt')
            spies[side] = (raw, subprocess.Popen(
                [self.args.py_spy, 'record', '--format', 'raw',
                 '--rate', '200', '--nonblocking', '-o', raw,
                 '-p', str(server.worker_pids()[0])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        time.sleep(2)
        seconds, cpu = self.timed('%s/v2/images/%s/file' % (
            self.lab.edge.url, edge_id), headers, algo)
        time.sleep(0.5)
        for raw, spy in spies.values():
            spy.send_signal(2)
            spy.wait(30)
        self.say('\npy-spy, one verified miss (4 MiB chunks) in %.1f s; '
                 'CPU seconds central %.2f,\nedge %.2f, client %.2f; the '
                 'client\'s last 4 MiB read %.0f ms'
                 % (seconds, cpu['central'], cpu['edge'], cpu['client'],
                    cpu['last']))
        for side, (raw, _) in spies.items():
            self.summary(side, raw)
            if self.args.keep:
                shutil.copy(raw, os.path.join(self.args.keep,
                                              'miss-%s.txt' % side))

    def summary(self, side, raw, top=12):
        """The sampled functions of *side*: own samples (the innermost
        frame) and the share of samples under each thread's entry.
        """
        own = collections.Counter()
        threads = collections.Counter()
        total = 0
        with open(raw) as f:
            for line in f:
                stack, _, count = line.rstrip('\n').rpartition(' ')
                if not count.isdigit():
                    continue
                count = int(count)
                frames = [short(fr) for fr in stack.split(';')]
                total += count
                own[short(stack.split(';')[-1], line=True)] += count
                threads[role(frames)] += count
        self.say('%s worker: %d active samples (idle excluded)'
                 % (side, total))
        self.say('  by thread role:')
        for name, count in threads.most_common():
            self.say('    %5.1f%%  %s' % (100.0 * count / total, name))
        self.say('  by own function (innermost frame):')
        for name, count in own.most_common(top):
            self.say('    %5.1f%%  %s' % (100.0 * count / total, name))


ROLES = (('Filler._hash (fill.py)', 'fill hasher thread'),
         ('Filler._fetch (fill.py)',
          'fill writer thread (reads central, writes the file)'),
         ('ThreadWorker.handle_request (gthread.py)',
          'WSGI request thread (serves the client)'))


def short(frame, line=False):
    """'Class.function (file.py)' (with its line if *line*) of one of
    py-spy's 'Class.function (path/file.py:line)'.
    """
    name, _, where = frame.partition(' (')
    where = os.path.basename(where.rstrip(')'))
    return '%s (%s)' % (name, where if line else where.split(':')[0])


def role(frames):
    for frame, name in ROLES:
        if frame in frames:
            return name
    return 'other: ' + (frames[1] if len(frames) > 1 else frames[0])


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--size-mib', type=int, default=1024)
    parser.add_argument('--trials', type=int, default=3)
    parser.add_argument('--py-spy', help='path of py-spy: sample one miss')
    parser.add_argument('--out', help='write the summary to this file')
    parser.add_argument('--keep', help='keep py-spy\'s raw stacks here')
    args = parser.parse_args()
    profile = Profile(args)
    try:
        profile.run()
    finally:
        profile.stop()


if __name__ == '__main__':
    main()
