"""Report formats: CSV escapes formula injection (but not amounts), XLSX amounts are exact and
formatted, the PDF carries Chinese text."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from openpyxl import load_workbook
from pypdf import PdfReader

from reconciliation.reports import MEDIA_TYPES, render
from reconciliation.reports.chart import bar_chart_svg
from reconciliation.reports.model import Amount, Report, Table
from reconciliation.reports.pdf_format import grouped
from reconciliation.reports.safety import safe_text

EVIL = ['=HYPERLINK("http://x","y")', "+1+1", "-2+3", "@SUM(A1)", "\tcmd", "\rcmd"]


def sample() -> Report:
    rows = [[text, 1, Amount(-1230)] for text in EVIL]
    rows += [
        ["成都市公安局交通管理局", 2, Amount(1_234_567_89)],
        ["plain", 3, Amount(1)],
        ["0.1+0.2", 4, Amount(30)],
    ]
    table = Table(
        "按执收单位 By department",
        ["执收单位 Department", "笔数", "金额 Amount"],
        rows,
        ["合计 Total", 10, Amount(sum(r[2].fen for r in rows))],
    )
    return Report(
        "每日收缴报表 Daily collections",
        "collections-test",
        [("业务日期 Business date", "2026-11-27"), ("=evil fact", "-1")],
        [table],
    )


def csv_rows(data: bytes) -> list[list[str]]:
    assert data.startswith(b"\xef\xbb\xbf")
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"))))


@pytest.mark.parametrize("text", EVIL)
def test_safe_text_prefixes_dangerous_starts(text):
    assert safe_text(text) == "'" + text


def test_safe_text_leaves_ordinary_text():
    assert safe_text("成都 = fine") == "成都 = fine"
    assert safe_text("") == ""


def test_csv_escapes_text_cells_but_not_amounts():
    rows = csv_rows(render(sample(), "csv"))
    assert rows[0] == ["每日收缴报表 Daily collections"]
    assert rows[2] == ["'=evil fact", "'-1"]  # a fact is text, so even "-1" is escaped
    body = rows[rows.index(["执收单位 Department", "笔数", "金额 Amount"]) + 1 :]
    for text, row in zip(EVIL, body, strict=False):
        assert row == ["'" + text, "1", "-12.30"]  # the negative amount stays a number
    assert ["成都市公安局交通管理局", "2", "1234567.89"] in body
    assert body[-1] == [
        "合计 Total",
        "10",
        str(Amount(sum(r[2].fen for r in sample().tables[0].rows))),
    ]
    for row in body:
        assert not row[0].startswith(("=", "+", "-", "@", "\t", "\r"))


def test_xlsx_amounts_are_exact_decimals_with_a_number_format():
    wb = load_workbook(io.BytesIO(render(sample(), "xlsx")))
    assert wb.sheetnames[0] == "Info"
    ws = wb[wb.sheetnames[1]]
    assert ws.freeze_panes == "A2"
    assert all(c.font.bold for c in ws[1])
    assert ws.column_dimensions["A"].width >= 20
    values = {
        ws.cell(row=r, column=1).value: ws.cell(row=r, column=3) for r in range(2, ws.max_row + 1)
    }
    big = values["成都市公安局交通管理局"]
    assert big.number_format == "#,##0.00"
    assert Decimal(str(big.value)) == Decimal("1234567.89")
    assert Decimal(str(values["0.1+0.2"].value)) == Decimal("0.30")
    assert Decimal(str(values["plain"].value)) == Decimal("0.01")
    assert ws.cell(row=ws.max_row, column=1).font.bold  # the total row


def test_xlsx_text_is_never_a_formula():
    wb = load_workbook(io.BytesIO(render(sample(), "xlsx")))
    ws = wb[wb.sheetnames[1]]
    firsts = [ws.cell(row=r, column=1) for r in range(2, 2 + len(EVIL))]
    assert [c.value for c in firsts] == ["'" + t for t in EVIL]
    assert all(c.data_type == "s" for c in firsts)


def test_amount_refuses_floats():
    with pytest.raises(TypeError):
        Amount(12.3)  # type: ignore[arg-type]
    assert Amount(-5).yuan == Decimal("-0.05")


def test_pdf_has_the_chinese_text():
    data = render(sample(), "pdf")
    assert data.startswith(b"%PDF")
    pages = PdfReader(io.BytesIO(data)).pages
    text = "".join(page.extract_text() for page in pages).replace("\x00", "")
    assert "每日收缴报表" in text
    assert "成都市公安局交通管理局" in text
    assert "1,234,567.89" in text and "-12.30" in text


@pytest.mark.parametrize(
    ("fen", "text"),
    [(0, "0.00"), (-5, "-0.05"), (123456789, "1,234,567.89"), (-100000, "-1,000.00")],
)
def test_pdf_amounts_are_grouped_exactly(fen, text):
    assert grouped(fen) == text


def test_the_chart_escapes_labels_and_scales_bars_to_a_round_top():
    svg = bar_chart_svg([("<b>", 150_00), ("11-27", 0), ("x", 75_00)], title="收缴 & more")
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert "&lt;b&gt;" in svg and "<b>" not in svg and "收缴 &amp; more" in svg
    assert svg.count("<rect") == 3
    heights = [int(h) for h in re.findall(r'<rect [^>]*height="(\d+)"', svg)]
    assert heights[1] == 0 and heights[0] == 2 * heights[2]  # top is 200.00: 150 and 75
    assert ">200.00<" in svg and "<title>&lt;b&gt;: 150.00</title>" in svg


def test_media_types():
    assert MEDIA_TYPES["xlsx"].startswith("application/vnd.openxmlformats")
    with pytest.raises(ValueError):
        render(sample(), "doc")
