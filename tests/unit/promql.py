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

"""The metric names a PromQL expression reads, for the tests of the shipped
alert rules (etc/prometheus/) and dashboard (etc/grafana/): both may name
only the series the node exports (metrics.SERIES, the contract), so a
renamed metric fails a unit test before it fails an operator.

Prometheus ships no parser a test can call (promtool parses only whole
rule files), so this is a lexical reading, enough for the expressions we
write: strings, label matchers, ranges and grouping label lists are cut
out first; what remains of the identifiers, less functions (an identifier
followed by a parenthesis) and PromQL's keywords, are metric names.
"""

import re

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_MATCHERS = re.compile(r'\{[^}]*\}')
_RANGES = re.compile(r'\[[^\]]*\]')
_GROUPING = re.compile(
    r'\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)')
# Not after a digit (1e3, 5m), a dot, a $ (a Grafana variable) or a name.
_IDENTIFIER = re.compile(r'(?<![\w:.$])([A-Za-z_:][\w:]*)(\s*\()?')
_KEYWORDS = frozenset({
    'and', 'or', 'unless', 'bool', 'offset', 'by', 'without', 'on',
    'ignoring', 'group_left', 'group_right', 'inf', 'nan', 'atan2'})


def metric_names(expr):
    """The set of metric names *expr* selects."""
    rest = _STRINGS.sub('""', expr)
    rest = _MATCHERS.sub(' ', rest)
    rest = _RANGES.sub(' ', rest)
    rest = _GROUPING.sub(' ', rest)
    return {name for name, call in _IDENTIFIER.findall(rest)
            if not call and name.lower() not in _KEYWORDS}
