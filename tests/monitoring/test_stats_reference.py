"""Every statistic is defined once (``pool/stats.py``) and documented (docs/stats.rst), and nothing else is."""

from __future__ import annotations

import re
from pathlib import Path

from django_mysql_pooled.pool import stats
from tests.pool.fake_connections import FakeFactory

DOCS = Path(__file__).resolve().parents[2] / "docs" / "stats.rst"


def _documented() -> dict[str, str]:
    """Key -> the heading of the docs section that lists it (keys start a line of a table or list)."""
    text = DOCS.read_text()
    reference = text[text.index("Sizes (gauges)") : text.index("Published snapshots")]
    found: dict[str, str] = {}
    heading = ""
    lines = reference.splitlines()
    for number, line in enumerate(lines):
        if number + 1 < len(lines) and re.fullmatch(r"-{3,}", lines[number + 1]):
            heading = line
        match = re.match(r"``([a-z_]+)``", line)
        if match:
            found[match.group(1)] = heading
    return found


def test_the_docs_list_every_key_and_no_other() -> None:
    documented = _documented()
    assert sorted(documented) == sorted(stats.BY_NAME)


def test_gauges_are_documented_as_sizes_and_counters_elsewhere() -> None:
    for key, heading in _documented().items():
        assert (stats.BY_NAME[key].kind == "gauge") == heading.startswith("Sizes"), (key, heading)


def test_a_new_pool_reports_exactly_the_keys_that_are_not_late() -> None:
    pool = FakeFactory().pool()
    try:
        reported = set(pool.get_stats())
    finally:
        pool.close()
    assert reported == {stat.name for stat in stats.STATS if not stat.late}


def test_every_stat_has_a_unit_and_a_sentence() -> None:
    for stat in stats.STATS:
        assert stat.unit and stat.help.endswith("."), stat
        assert stat.name.endswith("_ms") == (stat.unit == "milliseconds"), stat
