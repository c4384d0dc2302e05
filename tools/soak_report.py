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

"""The fault soak's bookkeeping (tools/soak.py), kept free of the lab so
that it can be unit-tested: how one answer is judged against central's
bytes, how answers add up per phase and target, the verdict, and the text
table published in doc/source/benchmarks/soak.txt.
"""

import collections
import hashlib

OK = 'ok'
# A body that ended as its headers said it would, with bytes that are not
# central's: a client that trusts the answer boots wrong data. The soak
# fails on any.
WRONG = 'WRONG BYTES'
# Fewer bytes than the answer's Content-Length: the client sees the stream
# break and retries; counted, never hidden.
SHORT = 'short body'
# An image record (image-show, or the database after the soak) that is not
# central's: as bad as wrong bytes.
WRONG_RECORD = 'WRONG RECORD'
STEADY = 'between faults'
CAPPED = 'edge-3'
TARGETS = ('edge-1', 'edge-2', CAPPED, 'balancer')

# started: time.monotonic() at the request; after: (the last fault that
# had ended by then, when it ended) or None.
Result = collections.namedtuple(
    'Result', 'started phase target op outcome seconds peer_held '
              'request_id after')
# One fault: its name, how long it lasted (seconds), {node: seconds from
# its end to the node's first good read, or None}, {node: [failed, reads]}
# of the image only central held, read during it, and the nodes whose
# breaker for central was open at its end.
Recovery = collections.namedtuple(
    'Recovery', 'fault outage seconds during breakers')


def judge_body(status, headers, body, expected, asked=None):
    """The outcome of one image-data answer.

    :param status: the HTTP status
    :param headers: the answer's headers (a mapping, case-insensitive)
    :param body: the bytes received (the whole body, or what came before
        the stream broke)
    :param expected: the bytes central holds for the image
    :param asked: (first, last) byte of a Range (inclusive), or None for
        a whole read
    :returns: OK, SHORT, WRONG or ``'status NNN'``
    """
    if status not in (200, 206):
        return 'status %d' % status
    declared = headers.get('Content-Length')
    if declared is not None and declared.isdigit() and \
            len(body) < int(declared):
        return SHORT
    if status == 200:
        # A whole answer (also to a Range: a server may ignore it).
        wanted = expected
    else:
        if asked is None:
            return WRONG
        first, last = asked
        wanted = expected[first:last + 1]
        if not headers.get('Content-Range', '').startswith(
                'bytes %d-%d/%d' % (first, first + len(wanted) - 1,
                                    len(expected))):
            return WRONG
    if len(body) != len(wanted):
        # Ended cleanly without every byte: a silent short body.
        return WRONG
    if hashlib.sha512(body).digest() != hashlib.sha512(wanted).digest():
        return WRONG
    return OK


def judge_record(record, central):
    """OK, or what differs between an image record (a dict of the edge's
    JSON or database row) and central's (a dict: size, checksum,
    os_hash_value).
    """
    wrong = ['%s %r, central %r' % (key, record.get(key), central[key])
             for key in ('size', 'checksum', 'os_hash_value')
             if record.get(key) != central[key]]
    if record.get('status', 'active') != 'active':
        wrong.append('status %s' % record.get('status'))
    return '; '.join(wrong) or OK


class Tally:
    """Answers added up per phase and target; the failures by kind."""

    def __init__(self):
        self.results = []

    def add(self, result):
        self.results.append(result)

    def phases(self):
        """Phases in the order they were first seen, steady first."""
        seen = [STEADY]
        for result in self.results:
            if result.phase not in seen:
                seen.append(result.phase)
        return seen

    def cell(self, phase, target):
        """(failed, total) of *target* in *phase* (None: every one)."""
        chosen = [r for r in self.results
                  if (phase is None or r.phase == phase) and
                  (target is None or r.target == target)]
        return sum(1 for r in chosen if r.outcome != OK), len(chosen)

    def kinds(self, phase):
        """{outcome: count} of the failures in *phase*."""
        return dict(collections.Counter(
            r.outcome for r in self.results
            if r.phase == phase and r.outcome != OK))

    def capped_peer_held(self, phase):
        """(failed, total) of the capped node's own answers in *phase*
        that started while a running peer held the image complete.
        """
        chosen = [r for r in self.results if r.phase == phase and
                  r.target == CAPPED and r.peer_held]
        return sum(1 for r in chosen if r.outcome != OK), len(chosen)

    def notable(self):
        """The failures a reader looks for first: the capped node's while
        a running peer held the image, and any between two faults.
        """
        return [r for r in self.results if r.outcome != OK and (
            r.phase == STEADY or (r.target == CAPPED and r.peer_held))]

    def wrong(self):
        return [r for r in self.results
                if r.outcome in (WRONG, WRONG_RECORD)]


def _cell(failed_total):
    failed, total = failed_total
    return '%d/%d' % (failed, total) if total else '-'


def _kinds(kinds, limit=4):
    text = ', '.join('%s %d' % item for item in sorted(
        kinds.items(), key=lambda item: (-item[1], item[0]))[:limit])
    if len(kinds) > limit:
        text += ', ...'
    return text


def describe(result):
    """One failure, for the table."""
    text = '%s: %s %s at %s' % (
        result.phase, result.op, result.outcome, result.target)
    if result.target == CAPPED and result.peer_held:
        text += ', a peer held it'
    if result.phase == STEADY and result.after:
        fault, ended = result.after
        text += ', %.1f s after "%s" ended' % (result.started - ended, fault)
    return text


def table(tally, header, recoveries, descriptors, counters, checks,
          served_by=None, read=None):
    """The published table, as lines of text.

    :param tally: a Tally
    :param header: lines that describe the run
    :param recoveries: [Recovery]
    :param descriptors: {node: (before, after, restarted)}
    :param counters: {node: {counter: value during the soak}}
    :param checks: [(check, outcome text, held)]
    :param served_by: {phase: {node: count}} of the balancer's failures,
        by the node whose log holds their request
    :param read: {phase: {node: {'bytes_from_central': n,
        'bytes_from_peers': n}}}, what each node's cache read
    """
    lines = list(header)
    lines += ['', 'Answers that failed / answers, by phase and target '
              '(%s = the capped node)' % CAPPED,
              '  %-36s %9s %9s %9s %9s %10s  %s' % (
                  'phase', 'edge-1', 'edge-2', CAPPED, 'balancer', 'all',
                  'failures')]
    for phase in tally.phases():
        lines.append('  %-36s %9s %9s %9s %9s %10s  %s' % ((phase,) + tuple(
            _cell(tally.cell(phase, t)) for t in TARGETS) + (
            _cell(tally.cell(phase, None)), _kinds(tally.kinds(phase)))))
        by_node = (served_by or {}).get(phase)
        if by_node:
            lines.append('  %-36s balancer failures answered by %s' % (
                '', ', '.join('%s %d' % i for i in sorted(by_node.items()))))
    lines.append('  %-36s %9s %9s %9s %9s %10s' % (('all',) + tuple(
        _cell(tally.cell(None, t)) for t in TARGETS) + (
        _cell(tally.cell(None, None)),)))
    lines += ['', 'The capped node\'s own answers while a running peer held '
              'the image complete', '  %-36s %s' % ('phase', 'failed/answers')]
    for phase in tally.phases():
        lines.append('  %-36s %s' % (phase,
                                     _cell(tally.capped_peer_held(phase))))
    notable = tally.notable()
    if notable:
        lines += ['', 'Those failures one by one (the capped node\'s while a '
                  'peer held the image, and', 'any between faults)']
        lines += ['  ' + describe(r) for r in notable[:24]]
        if len(notable) > 24:
            lines.append('  ... %d more in soak.json' % (len(notable) - 24))
    lines += ['', 'Recovery: seconds from the end of the fault (the process '
              'answers again, or SIGCONT)', 'to the first verified read, on '
              'each node, of an image it never read (it needs central,',
              'the database and the node); the nodes whose breaker was open '
              'at that end',
              '  %-36s %7s %7s %7s %7s %7s  %s' % (
                  'fault', 'outage', 'edge-1', 'edge-2', CAPPED, 'site',
                  'breaker open')]
    for recovery in recoveries:
        values = [recovery.seconds.get(n) for n in TARGETS[:3]]
        site = None if None in values else max(values)
        lines.append('  %-36s %7.1f %7s %7s %7s %7s  %s' % (
            (recovery.fault, recovery.outage) + tuple(
                'NEVER' if v is None else '%.2f' % v
                for v in values + [site]) + (
                ', '.join(recovery.breakers) or 'none',)))
    lines += ['', 'During each fault, every node read an image that only '
              'central held when the fault', 'began, every 0.5 s (the first '
              'success caches it): failed / reads',
              '  %-36s %7s %7s %7s' % ('fault', 'edge-1', 'edge-2', CAPPED)]
    for recovery in recoveries:
        lines.append('  %-36s %7s %7s %7s' % ((recovery.fault,) + tuple(
            _cell(recovery.during.get(n, (0, 0))) for n in TARGETS[:3])))
    if read:
        mib = 1024.0 * 1024
        lines += ['', 'MiB each node read from central (from peers), by '
                  'phase; each fault adds 2 fresh', 'images of 1 MiB a node '
                  'that only central holds',
                  '  %-36s %15s %15s %15s' % ('phase', 'edge-1', 'edge-2',
                                              CAPPED)]
        for phase in [p for p in tally.phases() if p in read] + sorted(
                p for p in read if p not in tally.phases()):
            lines.append('  %-36s %15s %15s %15s' % ((phase,) + tuple(
                '%.1f (%.1f)' % (
                    read[phase][n]['bytes_from_central'] / mib,
                    read[phase][n]['bytes_from_peers'] / mib)
                for n in TARGETS[:3])))
    lines += ['', 'Per node: open descriptors of its worker before and after '
              'the soak; its cache\'s counters during it',
              '  %-8s %7s %7s  %10s %10s %9s %11s %9s' % (
                  'node', 'fds', 'after', 'MiB from', 'MiB from',
                  'evictions', 'pass-through', 'verify')]
    lines.append('  %-8s %7s %7s  %10s %10s %9s %11s %9s' % (
        '', 'before', '', 'central', 'peers', '', 'reads', 'failures'))
    mib = 1024.0 * 1024
    for node in TARGETS[:3]:
        before, after, restarted = descriptors.get(node, (None, None, False))
        count = counters.get(node, {})
        lines.append('  %-8s %7s %7s  %10.1f %10.1f %9d %11d %9d%s' % (
            node, before, after, count.get('bytes_from_central', 0) / mib,
            count.get('bytes_from_peers', 0) / mib,
            count.get('evictions', 0), count.get('passthrough', 0),
            count.get('verification_failures', 0),
            '  (restarted: a new worker)' if restarted else ''))
    lines += ['', 'Checks']
    for check, outcome, held in checks:
        lines.append('  [%s] %-44s %s' % ('ok' if held else 'FAILED', check,
                                          outcome))
    return lines


def verdict(tally, recoveries, checks):
    """The reasons the soak failed (empty: it passed)."""
    reasons = []
    wrong = tally.wrong()
    if wrong:
        reasons.append('%d answer(s) with wrong bytes or a wrong record'
                       % len(wrong))
    for recovery in recoveries:
        never = sorted(n for n, s in recovery.seconds.items() if s is None)
        if never:
            reasons.append('%s: %s never recovered'
                           % (recovery.fault, ', '.join(never)))
    reasons += ['%s: %s' % (check, outcome)
                for check, outcome, held in checks if not held]
    return reasons
