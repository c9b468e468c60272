"""A report as CSV (UTF-8 with a BOM, so that spreadsheet programs read the Chinese right).

Layout: the title; ``fact,value`` lines; then each table after a blank line: its title, the
header, the rows and the total row. Text cells are escaped against formula injection
(:func:`~reconciliation.reports.safety.safe_text`); amounts are plain numbers like ``-12.30``.
"""

from __future__ import annotations

import csv
import io

from reconciliation.reports.model import Amount, Cell, Report
from reconciliation.reports.safety import safe_text


def cell_text(cell: Cell) -> str:
    if cell is None:
        return ""
    if isinstance(cell, Amount):
        return str(cell)
    if isinstance(cell, int):
        return str(cell)
    return safe_text(cell)


def render_csv(report: Report) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow([safe_text(report.title)])
    for name, value in report.facts:
        writer.writerow([safe_text(name), safe_text(value)])
    for table in report.tables:
        writer.writerow([])
        writer.writerow([safe_text(table.title)])
        writer.writerow([safe_text(c) for c in table.columns])
        for row in [*table.rows, *([table.total] if table.total else [])]:
            writer.writerow([cell_text(c) for c in row])
    return ("\ufeff" + out.getvalue()).encode("utf-8")
