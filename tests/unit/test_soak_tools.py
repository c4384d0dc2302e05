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

"""The fault soak's judgement and bookkeeping (tools/soak_report.py): a
short or wrong body is never counted as a good one, and the table and the
verdict show every failure.
"""

import os

import testtools

from tools import soak_report as report

DATA = os.urandom(4096)
CENTRAL = {'id': 'c', 'size': 4096, 'checksum': 'md5',
           'os_hash_value': 'sha'}


def whole(body, length=None):
    return report.judge_body(
        200, {'Content-Length': str(len(DATA) if length is None
                                    else length)}, body, DATA)


def ranged(body, first, last, content_range=None):
    if content_range is None:
        content_range = 'bytes %d-%d/%d' % (first, last, len(DATA))
    return report.judge_body(
        206, {'Content-Length': str(last - first + 1),
              'Content-Range': content_range}, body, DATA, (first, last))


class TestJudgeBody(testtools.TestCase):

    def test_central_bytes_are_good(self):
        self.assertEqual(report.OK, whole(DATA))
        self.assertEqual(report.OK, ranged(DATA[10:20], 10, 19))

    def test_a_body_shorter_than_its_content_length_is_short(self):
        self.assertEqual(report.SHORT, whole(DATA[:-1]))
        self.assertEqual(report.SHORT, ranged(DATA[10:19], 10, 19))

    def test_a_clean_end_without_every_byte_is_wrong(self):
        # A server that declares the short length: silent, so wrong.
        self.assertEqual(report.WRONG, whole(DATA[:-1], len(DATA) - 1))
        self.assertEqual(report.WRONG, report.judge_body(
            200, {}, DATA[:-1], DATA))

    def test_other_bytes_of_the_right_length_are_wrong(self):
        other = bytes([DATA[0] ^ 1]) + DATA[1:]
        self.assertEqual(report.WRONG, whole(other))
        self.assertEqual(report.WRONG, ranged(DATA[11:21], 10, 19))

    def test_a_range_answered_for_other_bytes_is_wrong(self):
        self.assertEqual(report.WRONG, ranged(
            DATA[10:20], 10, 19, 'bytes 11-20/%d' % len(DATA)))
        self.assertEqual(report.WRONG, report.judge_body(
            206, {}, DATA[:10], DATA))

    def test_a_whole_answer_to_a_range_is_judged_whole(self):
        self.assertEqual(report.OK, report.judge_body(
            200, {}, DATA, DATA, (10, 19)))

    def test_an_error_status_is_named(self):
        self.assertEqual('status 503', report.judge_body(503, {}, b'', DATA))


class TestJudgeRecord(testtools.TestCase):

    def test_central_record_is_good(self):
        self.assertEqual(report.OK, report.judge_record(
            dict(CENTRAL, status='active'), CENTRAL))

    def test_each_difference_is_named(self):
        outcome = report.judge_record(
            dict(CENTRAL, size=1, os_hash_value=None, status='queued'),
            CENTRAL)
        self.assertIn('size 1', outcome)
        self.assertIn('os_hash_value None', outcome)
        self.assertIn('status queued', outcome)


def result(phase, target, outcome, peer_held=None, after=None):
    return report.Result(10.0, phase, target, 'boot', outcome, 0.1,
                         peer_held, None, after)


class TestTally(testtools.TestCase):

    def setUp(self):
        super().setUp()
        self.tally = report.Tally()
        for item in (
                result('central stopped', report.CAPPED, report.OK, True),
                result('central stopped', report.CAPPED, 'status 503',
                       True),
                result('central stopped', report.CAPPED, 'status 503',
                       False),
                result('central stopped', 'balancer', report.SHORT),
                result(report.STEADY, 'edge-1', report.OK),
                result(report.STEADY, 'edge-2', report.WRONG,
                       after=('MariaDB restarted', 7.5))):
            self.tally.add(item)

    def test_cells_count_failures_per_phase_and_target(self):
        self.assertEqual((2, 3), self.tally.cell('central stopped',
                                                 report.CAPPED))
        self.assertEqual((3, 4), self.tally.cell('central stopped', None))
        self.assertEqual((4, 6), self.tally.cell(None, None))
        self.assertEqual([report.STEADY, 'central stopped'],
                         self.tally.phases())

    def test_capped_failures_while_a_peer_held_are_counted_apart(self):
        self.assertEqual((1, 2),
                         self.tally.capped_peer_held('central stopped'))

    def test_failures_are_named_by_kind(self):
        self.assertEqual({'status 503': 2, report.SHORT: 1},
                         self.tally.kinds('central stopped'))

    def test_wrong_bytes_fail_the_soak(self):
        reasons = report.verdict(self.tally, [], [])
        self.assertEqual(['1 answer(s) with wrong bytes or a wrong record'],
                         reasons)

    def test_a_node_that_never_recovers_fails_the_soak(self):
        tally = report.Tally()
        reasons = report.verdict(
            tally, [report.Recovery('etcd stopped', 3.0,
                                    {'edge-1': 1.0, 'edge-3': None}, {},
                                    [])],
            [('records', '5 of 6', False)])
        self.assertEqual(['etcd stopped: edge-3 never recovered',
                          'records: 5 of 6'], reasons)

    def test_the_table_shows_every_failure(self):
        lines = report.table(
            self.tally, ['header'],
            [report.Recovery('central stopped', 3.0,
                             {'edge-1': 1.25, 'edge-2': 1.5, 'edge-3': None},
                             {'edge-1': [4, 6]}, ['edge-1', 'edge-3'])],
            {'edge-1': (40, 41, False)},
            {'edge-1': {'bytes_from_peers': 2 * 1024 * 1024}},
            [('records', '6 of 6', True)],
            {'central stopped': {'edge-3': 1}})
        text = '\n'.join(lines)
        central = [line for line in lines
                   if line.strip().startswith('central stopped ')]
        # The answers, the capped node's while a peer held, the recovery,
        # the reads during the fault.
        self.assertEqual(4, len(central))
        self.assertIn('2/3', central[0])
        self.assertIn('1/1', central[0])
        self.assertIn('status 503 2, short body 1', central[0])
        self.assertIn('1/2', central[1])
        self.assertIn('NEVER', central[2])
        self.assertIn('edge-1, edge-3', central[2])
        self.assertIn('4/6', central[3])
        self.assertIn('balancer failures answered by edge-3 1', text)
        self.assertIn('[ok] records', text)
        # One by one: the capped node's while a peer held it, and any
        # between faults (with the fault that ended before).
        self.assertIn('central stopped: boot status 503 at edge-3, a peer '
                      'held it', text)
        self.assertIn('between faults: boot WRONG BYTES at edge-2, 2.5 s '
                      'after "MariaDB restarted" ended', text)
        self.assertEqual(2, len([line for line in lines if ' at edge-'
                                 in line]))
        self.assertIn('2.0', [line for line in lines
                              if line.strip().startswith('edge-1')][0])
