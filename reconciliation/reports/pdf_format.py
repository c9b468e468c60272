"""A report as a PDF (fpdf2), A4 landscape, with the CJK font of the payment notices
(:func:`notices.documents.cjk_font_path`) embedded and subset, so Chinese renders anywhere.

Tables repeat their header on each page; amounts are right-aligned yuan from integer fen.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fpdf import FPDF
from fpdf.enums import Align, TextMode, WrapMode, XPos, YPos
from fpdf.fonts import FontFace

from clearing.money import format_fen
from notices.documents import _collection_index, cjk_font_path
from reconciliation.reports.model import Amount, Cell, Report, Table

_FONT = "cjk"
_INK = (33, 37, 41)
_MUTED = (108, 117, 125)
_ACCENT = (23, 64, 125)
_SHADE = (232, 238, 247)
_RULE = (190, 190, 190)
_MARGIN = 12.0


class _ReportPDF(FPDF):
    running_head = ""

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(_FONT, size=8)
        self.set_text_color(*_MUTED)
        self.cell(0, 5, self.running_head, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
        self.ln(2)

    def footer(self) -> None:
        self.set_y(-12)
        self.set_font(_FONT, size=8)
        self.set_text_color(*_MUTED)
        self.cell(0, 5, f"feishui · 第 {self.page_no()} 页 / page {self.page_no()}", align=Align.C)


def grouped(fen: int) -> str:
    """Yuan with thousands separators, from integer fen: ``-123456789 -> "-1,234,567.89"``."""
    whole, _, cents = format_fen(abs(fen)).partition(".")
    return f"{'-' if fen < 0 else ''}{int(whole):,}.{cents}"


def _text(cell: Cell) -> str:
    """Cell text (amounts grouped); tabs and carriage returns (no glyphs) become spaces."""
    if isinstance(cell, Amount):
        return grouped(cell.fen)
    return "" if cell is None else str(cell).replace("\t", " ").replace("\r", " ")


def _widths(pdf: FPDF, table: Table) -> tuple[float, ...]:
    if table.widths:
        weights = [float(w) for w in table.widths]
    else:
        rows = [table.columns, *table.rows[:200], *([table.total] if table.total else [])]
        weights = [
            max(4.0, min(40.0, max(len(_text(r[i])) for r in rows if i < len(r))))
            for i in range(len(table.columns))
        ]
    total = sum(weights)
    usable = pdf.w - 2 * _MARGIN
    return tuple(usable * w / total for w in weights)


def _table(pdf: FPDF, table: Table) -> None:
    pdf.set_font(_FONT, size=11)
    pdf.set_text_color(*_ACCENT)
    pdf.text_mode = TextMode.FILL_STROKE  # faux bold: the font has one weight
    pdf.set_line_width(0.15)
    pdf.cell(0, 7, table.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.text_mode = TextMode.FILL
    pdf.set_line_width(0.2)
    pdf.set_font(_FONT, size=8.5)
    pdf.set_text_color(*_INK)
    pdf.set_draw_color(*_RULE)
    numeric = [
        any(
            isinstance(r[i], Amount | int) and not isinstance(r[i], bool)
            for r in table.rows + ([table.total] if table.total else [])
            if i < len(r)
        )
        for i in range(len(table.columns))
    ]
    align = tuple("RIGHT" if n else "LEFT" for n in numeric)
    with pdf.table(
        col_widths=_widths(pdf, table),
        text_align=align,
        line_height=4.6,
        headings_style=FontFace(fill_color=_SHADE, color=_INK),
        borders_layout="HORIZONTAL_LINES",
        wrapmode=WrapMode.CHAR,
        padding=(1.0, 1.5),
    ) as grid:
        header = grid.row()
        for name in table.columns:
            header.cell(name)
        for row in table.rows:
            cells = grid.row()
            for cell in row:
                cells.cell(_text(cell))
        if table.total:
            cells = grid.row()
            for cell in table.total:
                cells.cell(_text(cell), style=FontFace(fill_color=_SHADE))
    pdf.ln(5)


def render_pdf(report: Report, *, now: datetime | None = None) -> bytes:
    font = cjk_font_path()
    pdf = _ReportPDF(orientation="landscape", unit="mm", format="A4")
    pdf.set_title(report.title)
    pdf.set_creator("feishui")
    pdf.set_creation_date(now or datetime.now(UTC))
    pdf.set_margins(_MARGIN, _MARGIN, _MARGIN)
    pdf.set_auto_page_break(auto=True, margin=16)
    pdf.add_font(_FONT, fname=str(font), collection_font_number=_collection_index(font))
    pdf.running_head = report.title
    pdf.add_page()
    pdf.set_font(_FONT, size=16)
    pdf.set_text_color(*_ACCENT)
    pdf.cell(0, 10, report.title, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_font(_FONT, size=9)
    pdf.set_text_color(*_INK)
    for name, value in report.facts:
        pdf.set_text_color(*_MUTED)
        pdf.cell(45, 5, name)
        pdf.set_text_color(*_INK)
        pdf.multi_cell(
            0, 5, _text(value), wrapmode=WrapMode.CHAR, new_x=XPos.LMARGIN, new_y=YPos.NEXT
        )
    pdf.ln(4)
    for table in report.tables:
        _table(pdf, table)
    return bytes(pdf.output())
