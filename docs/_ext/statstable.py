"""``.. stats-table::``: the statistics reference table, drawn from ``django_mysql_pooled.pool.stats``.

The keys, kinds, units and meanings are defined once in the package; the
docs render them instead of repeating them.
"""

from __future__ import annotations

from typing import Any

from docutils import nodes
from docutils.parsers.rst import Directive

from django_mysql_pooled.pool import stats


class StatsTable(Directive):
    """A table of every statistic: key, kind, unit, meaning (and whether it appears late)."""

    has_content = False

    def run(self) -> list[nodes.Node]:
        rows = [("Key", "Kind", "Unit", "Meaning")]
        for stat in stats.STATS:
            meaning = stat.help + (" Appears at its first count." if stat.late else "")
            rows.append((stat.name, stat.kind, stat.unit, meaning))
        table = nodes.table()
        group = nodes.tgroup(cols=4)
        table += group
        for width in (30, 10, 14, 46):
            group += nodes.colspec(colwidth=width)
        head, body = nodes.thead(), nodes.tbody()
        group += head
        group += body
        for number, row in enumerate(rows):
            line = nodes.row()
            for column, text in enumerate(row):
                entry = nodes.entry()
                inline: nodes.Node = nodes.literal(text=text) if number and column == 0 else nodes.Text(text)
                entry += nodes.paragraph("", "", inline)
                line += entry
            (head if number == 0 else body).append(line)
        return [table]


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("stats-table", StatsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
