"""A report as an XLSX workbook (openpyxl): an ``Info`` sheet with the title and facts, then
one sheet per table with a bold, frozen header row, column widths, amounts as exact
``Decimal(fen) / 100`` numbers formatted ``#,##0.00`` (never floats), and a bold total row.

Text that starts with ``=`` would become a formula in openpyxl; every text cell is escaped
(:func:`~reconciliation.reports.safety.safe_text`) and stored explicitly as a string.
"""

from __future__ import annotations

import io
import re

from openpyxl import Workbook
from openpyxl.styles import Alignment, Font, PatternFill
from openpyxl.utils import get_column_letter
from openpyxl.worksheet.worksheet import Worksheet

from reconciliation.reports.model import Amount, Cell, Report, Table
from reconciliation.reports.safety import safe_text

AMOUNT_FORMAT = "#,##0.00"
_BOLD = Font(bold=True)
_HEADER_FILL = PatternFill("solid", fgColor="E8EEF7")
_SHEET_BAD = re.compile(r"[\[\]:*?/\\]")


def _put(ws: Worksheet, row: int, col: int, cell: Cell) -> None:
    target = ws.cell(row=row, column=col)
    if isinstance(cell, Amount):
        target.value = cell.yuan
        target.number_format = AMOUNT_FORMAT
    elif isinstance(cell, int):
        target.value = cell
    elif cell is not None:
        target.value = safe_text(cell)
        target.data_type = "s"


def _width(cell: Cell) -> int:
    text = str(cell) if cell is not None else ""
    return sum(2 if ord(ch) > 0x2E80 else 1 for ch in text)


def _sheet_title(title: str, used: set[str]) -> str:
    base = _SHEET_BAD.sub(" ", title)[:28] or "Sheet"
    name, n = base, 2
    while name in used:
        name, n = f"{base[:25]} {n}", n + 1
    used.add(name)
    return name


def _table_sheet(ws: Worksheet, table: Table) -> None:
    for col, name in enumerate(table.columns, 1):
        _put(ws, 1, col, name)
        ws.cell(row=1, column=col).font = _BOLD
        ws.cell(row=1, column=col).fill = _HEADER_FILL
        ws.cell(row=1, column=col).alignment = Alignment(vertical="center")
    rows = [*table.rows, *([table.total] if table.total else [])]
    for r, row in enumerate(rows, 2):
        for col, cell in enumerate(row, 1):
            _put(ws, r, col, cell)
            if table.total is not None and r == len(rows) + 1:
                ws.cell(row=r, column=col).font = _BOLD
    ws.freeze_panes = "A2"
    for col in range(1, len(table.columns) + 1):
        widest = max(
            [_width(table.columns[col - 1])]
            + [_width(row[col - 1]) for row in rows if col - 1 < len(row)]
        )
        ws.column_dimensions[get_column_letter(col)].width = min(60, max(10, widest + 2))


def render_xlsx(report: Report) -> bytes:
    wb = Workbook()
    info = wb.active
    info.title = "Info"
    _put(info, 1, 1, report.title)
    info.cell(row=1, column=1).font = Font(bold=True, size=14)
    for r, (name, value) in enumerate(report.facts, 3):
        _put(info, r, 1, name)
        info.cell(row=r, column=1).font = _BOLD
        _put(info, r, 2, value)
    info.column_dimensions["A"].width = 24
    info.column_dimensions["B"].width = 70
    used = {"Info"}
    for table in report.tables:
        _table_sheet(wb.create_sheet(_sheet_title(table.title, used)), table)
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()
