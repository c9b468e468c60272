"""Printable payment notices (缴款通知书) as PDF, with a QR code to pay online.

Chinese text needs a real CJK font embedded in the PDF: the core PDF fonts (Helvetica…) have no
Han glyphs. :func:`cjk_font_path` finds one, in this order:

1. ``FEISHUI_CJK_FONT`` — a path to a TTF/OTF/TTC file (an error if it is set but missing);
2. Noto Sans SC from the ``pylopdf-fonts-zh-cn`` package (a dependency, SIL OFL 1.1), so a fresh
   install renders notices with no system fonts at all;
3. common system locations of Noto Sans CJK and WenQuanYi.

fpdf2 subsets the font, so a one-page notice embeds only the glyphs it uses (tens of KB).
Amounts are integer fen throughout and printed with :func:`clearing.money.format_fen`.
"""

from __future__ import annotations

import io
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, time
from functools import lru_cache
from pathlib import Path

import qrcode
from fontTools.ttLib import TTCollection
from fpdf import FPDF
from fpdf.enums import Align, TextMode, WrapMode, XPos, YPos
from fpdf.fonts import FontFace
from qrcode.image.pil import PilImage

from clearing.errors import ConfigurationError, ValidationError
from clearing.money import format_fen
from notices.codes import format_code
from notices.fees import SHANGHAI

FONT_ENV = "FEISHUI_CJK_FONT"

#: Where distributions install CJK fonts, tried last (Debian/Ubuntu, Fedora, Arch, Alpine).
SYSTEM_FONT_PATHS: tuple[Path, ...] = tuple(
    Path(p)
    for p in (
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJKsc-Regular.otf",
        "/usr/share/fonts/noto-cjk/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/google-noto-cjk/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/google-noto-sans-cjk-fonts/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/noto/NotoSansCJK-Regular.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
        "/usr/share/fonts/wqy-microhei/wqy-microhei.ttc",
        "/usr/share/fonts/wenquanyi/wqy-microhei/wqy-microhei.ttc",
    )
)

KIND_LABELS = {
    "traffic_fine": ("交通违法罚款", "Traffic fine"),
    "tuition": ("学费", "Tuition"),
    "service_fee": ("行政事业性收费", "Service fee"),
}


@dataclass(frozen=True)
class NoticeLine:
    """One item on a notice; ``amount_fen`` is the line total, not a unit price."""

    name_zh: str
    name_en: str
    quantity: int
    amount_fen: int


@dataclass(frozen=True)
class NoticeDocument:
    """Everything printed on one payment notice. Build it from a stored notice; it holds no PII
    beyond the masked payer name."""

    payment_code: str  # 20 digits; printed grouped in 4s
    department_name: str
    kind: str  # traffic_fine | tuition | service_fee
    payer_name_masked: str  # e.g. "张*三"
    reference: str | None
    description: str | None
    lines: tuple[NoticeLine, ...]
    principal_fen: int
    due_date: date
    issued_on: date
    pay_url: str  # encoded in the QR code
    late_fee_note: str | None


# --------------------------------------------------------------------------- font & QR


def cjk_font_path() -> Path:
    """The TTF/OTF/TTC file used for Chinese text; raise :class:`ConfigurationError` if none."""
    configured = os.environ.get(FONT_ENV, "").strip()
    if configured:
        path = Path(configured).expanduser()
        if not path.is_file():
            raise ConfigurationError(
                f"{FONT_ENV} is set to {configured!r}, which is not a font file", field="cjk_font"
            )
        return path
    packaged = _packaged_font()
    if packaged is not None:
        return packaged
    for path in SYSTEM_FONT_PATHS:
        if path.is_file():
            return path
    raise ConfigurationError(
        "no CJK font found for payment notices: install the 'pylopdf-fonts-zh-cn' package "
        f"(a feishui dependency), install Noto Sans CJK or WenQuanYi, or set {FONT_ENV} to a "
        "TTF/OTF file with Simplified Chinese glyphs",
        field="cjk_font",
    )


def _packaged_font() -> Path | None:
    try:
        import pylopdf_fonts_zh_cn
    except ImportError:
        return None
    path = Path(pylopdf_fonts_zh_cn.sans_path())
    return path if path.is_file() else None


@lru_cache(maxsize=8)
def _collection_index(path: Path) -> int:
    """For a font collection (.ttc/.otc), the index of the Simplified Chinese face, else 0."""
    if path.suffix.lower() not in (".ttc", ".otc"):
        return 0
    collection = TTCollection(str(path), lazy=True)
    try:
        for index, face in enumerate(collection.fonts):
            family = face["name"].getDebugName(1) or ""
            if family.endswith((" SC", " GB")) or "Simplified" in family:
                return index
    finally:
        collection.close()
    return 0


def qr_png(data: str, box_size: int = 6) -> bytes:
    """PNG bytes of a QR code for ``data`` (error correction M, quiet zone of 4 modules).

    The smallest QR version that fits ``data`` is chosen; the image is
    ``(17 + 4 * version + 8) * box_size`` pixels square.
    """
    if not data:
        raise ValidationError("QR code data must not be empty", field="pay_url")
    if isinstance(box_size, bool) or not isinstance(box_size, int) or box_size < 1:
        raise ValidationError("box_size must be a positive integer", field="box_size")
    code = qrcode.QRCode(
        error_correction=qrcode.constants.ERROR_CORRECT_M,
        box_size=box_size,
        border=4,
        image_factory=PilImage,
    )
    code.add_data(data)
    code.make(fit=True)
    out = io.BytesIO()
    code.make_image().save(out)
    return out.getvalue()


# --------------------------------------------------------------------------- rendering

_FONT = "cjk"
_INK = (33, 37, 41)
_MUTED = (108, 117, 125)
_RED = (176, 30, 35)  # the red of official Chinese forms
_RULE = (190, 190, 190)
_SHADE = (242, 242, 242)
_MARGIN = 18.0
_QR_SIZE = 36.0


def _check(doc: NoticeDocument) -> None:
    """Refuse to print a notice whose figures are wrong; a printed error cannot be recalled."""
    if doc.kind not in KIND_LABELS:
        raise ValidationError(f"unknown notice kind {doc.kind!r}", field="kind")
    if not isinstance(doc.principal_fen, int) or isinstance(doc.principal_fen, bool):
        raise ValidationError("principal_fen must be an int of fen", field="principal_fen")
    if doc.principal_fen <= 0:
        raise ValidationError("principal must be positive", field="principal_fen")
    for line in doc.lines:
        if isinstance(line.amount_fen, bool) or not isinstance(line.amount_fen, int):
            raise ValidationError("line amounts must be ints of fen", field="lines")
        if isinstance(line.quantity, bool) or not isinstance(line.quantity, int):
            raise ValidationError("line quantities must be ints", field="lines")
    if doc.lines and sum(line.amount_fen for line in doc.lines) != doc.principal_fen:
        raise ValidationError(
            f"line amounts add up to {format_fen(sum(line.amount_fen for line in doc.lines))}, "
            f"not the principal {format_fen(doc.principal_fen)}",
            field="lines",
        )
    if not doc.pay_url:
        raise ValidationError("pay_url must not be empty", field="pay_url")


class _NoticePDF(FPDF):
    footer_text = ""
    running_head = ""

    def header(self) -> None:
        if self.page_no() == 1:
            return
        self.set_font(_FONT, size=8.5)
        self.set_text_color(*_MUTED)
        self.cell(0, 5, f"{self.running_head}  第 {self.page_no()} 页 / page {self.page_no()}")
        self.set_draw_color(*_RULE)
        self.line(_MARGIN, self.t_margin + 6, self.w - _MARGIN, self.t_margin + 6)
        self.set_y(self.t_margin + 9)

    def footer(self) -> None:
        ruled_footer(self, self.footer_text, top=-20, size=8.5, line_height=4.2)


def render_notice_pdf(doc: NoticeDocument) -> bytes:
    """Render ``doc`` as an A4 PDF (one page unless it has many items), CJK font embedded."""
    _check(doc)
    code = format_code(doc.payment_code)  # validates the check digit too
    font = cjk_font_path()

    pdf = _NoticePDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(f"缴款通知书 / Payment Notice {code}")
    pdf.set_subject(doc.department_name)
    pdf.set_creator("feishui")
    pdf.set_creation_date(datetime.combine(doc.issued_on, time(), tzinfo=SHANGHAI))
    pdf.set_margins(_MARGIN, _MARGIN, _MARGIN)
    pdf.set_auto_page_break(auto=True, margin=26)
    pdf.add_font(_FONT, fname=str(font), collection_font_number=_collection_index(font))
    pdf.footer_text = (
        f"可通过 {doc.pay_url} 或任一合作银行柜台缴款。\n"
        f"Pay at {doc.pay_url} or any partner bank counter."
    )
    pdf.running_head = f"缴款通知书 Payment Notice · 缴款码 {code}"
    pdf.add_page()

    _header(pdf, doc)
    _code_box(pdf, code)
    _particulars(pdf, doc)
    _items(pdf, doc)
    _total_and_due(pdf, doc)
    _late_fee(pdf, doc)
    _qr(pdf, doc)
    return bytes(pdf.output())


_CJK = (
    "\u2e80-\u2fff\u3000-\u303f\u3040-\u30ff\u3100-\u312f\u3200-\u9fff"
    "\uf900-\ufaff\ufe30-\ufe4f\uff00-\uffef"
)
_OPENING = "（《「『【〔“‘([{"
_CLOSING = "，。、；：！？）》」』】〕”’…%,.;:!?)]}"
#: What a line may not be broken inside: a run of spaces, or one Han character or one Latin word
#: with the opening brackets before it and the closing punctuation after it (禁则, kinsoku).
_ATOM = re.compile(
    rf"\s+|[{re.escape(_OPENING)}]*(?:[{_CJK}]|[^\s{_CJK}]+)[{re.escape(_CLOSING)}]*"
)


def _wrap(pdf: FPDF, text: str, width: float) -> list[str]:
    """Break mixed Chinese/English ``text`` into lines no wider than ``width`` (current font).

    Lines break between Han characters and at spaces, never inside an English word (unless the
    word alone is wider than a line, like a long URL) nor before closing punctuation.
    """
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for atom in _ATOM.findall(paragraph):
            candidate = line + atom
            if line.strip() and pdf.get_string_width(candidate.rstrip()) > width:
                lines.append(line.rstrip())
                line = atom.lstrip()
            else:
                line = candidate
            while len(line) > 1 and pdf.get_string_width(line) > width:
                cut = len(line) - 1
                while cut > 1 and pdf.get_string_width(line[:cut]) > width:
                    cut -= 1
                lines.append(line[:cut])
                line = line[cut:]
        lines.append(line.rstrip())
    return lines


def _paragraph(
    pdf: FPDF, text: str, width: float, line_height: float, align: Align = Align.L
) -> None:
    """Print ``text`` wrapped by :func:`_wrap`, starting at the current x, y."""
    x = pdf.get_x()
    for line in _wrap(pdf, text, width):
        pdf.set_x(x)
        pdf.cell(width, line_height, line, align=align, new_x=XPos.LEFT, new_y=YPos.NEXT)


def _bold(pdf: FPDF, on: bool) -> None:
    """Faux bold (fill + stroke) — the embedded font has one weight only."""
    pdf.text_mode = TextMode.FILL_STROKE if on else TextMode.FILL
    pdf.set_line_width(0.18 if on else 0.2)


def _header(pdf: FPDF, doc: NoticeDocument) -> None:
    zh, en = KIND_LABELS[doc.kind]
    official_header(
        pdf,
        doc.department_name,
        ("缴款通知书", "Payment Notice"),
        size=24,
        spacing=4,
        facts=(f"业务类型 Kind：{zh} / {en}", f"开具日期 Issued：{doc.issued_on.isoformat()}"),
    )
    pdf.ln(4)


def official_header(
    pdf: FPDF,
    issuer: str,
    title: tuple[str, str],
    *,
    size: int,
    spacing: int,
    facts: tuple[str, str],
) -> None:
    """The head of an official form (notice or receipt): the issuer, the red, spaced Chinese
    title over its English one, the double rule of official forms, then two facts left and
    right."""
    pdf.set_text_color(*_INK)
    pdf.set_font(_FONT, size=11)
    pdf.cell(0, 6, issuer, align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(1)
    pdf.set_text_color(*_RED)
    pdf.set_draw_color(*_RED)
    pdf.set_font(_FONT, size=size)
    pdf.set_char_spacing(spacing)
    _bold(pdf, True)
    pdf.cell(0, size * 0.46, title[0], align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _bold(pdf, False)
    pdf.set_char_spacing(0)
    pdf.set_font(_FONT, size=11)
    pdf.cell(0, 6, title[1], align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.ln(2)
    y = pdf.get_y()
    pdf.set_line_width(0.8)
    pdf.line(_MARGIN, y, pdf.w - _MARGIN, y)
    pdf.set_line_width(0.25)
    pdf.line(_MARGIN, y + 1.2, pdf.w - _MARGIN, y + 1.2)
    pdf.set_line_width(0.2)
    pdf.set_y(y + 3)
    pdf.set_text_color(*_MUTED)
    pdf.set_font(_FONT, size=9)
    half = (pdf.w - 2 * _MARGIN) / 2
    pdf.cell(half, 5, facts[0])
    pdf.cell(half, 5, facts[1], align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)


def _code_box(pdf: FPDF, code: str) -> None:
    width = pdf.w - 2 * _MARGIN
    top = pdf.get_y()
    pdf.set_fill_color(*_SHADE)
    pdf.set_draw_color(*_INK)
    pdf.set_line_width(0.4)
    pdf.rect(_MARGIN, top, width, 24, style="DF")
    pdf.set_line_width(0.2)
    pdf.set_xy(_MARGIN, top + 2.5)
    pdf.set_text_color(*_MUTED)
    pdf.set_font(_FONT, size=9)
    pdf.cell(width, 5, "缴款码 Payment code", align=Align.C, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_text_color(*_INK)
    pdf.set_font(_FONT, size=22)
    pdf.set_char_spacing(1.5)
    _bold(pdf, True)
    pdf.cell(width, 13, code, align=Align.C)
    _bold(pdf, False)
    pdf.set_char_spacing(0)
    pdf.set_fill_color(255)  # tables take their default cell fill from the current fill color
    pdf.set_xy(_MARGIN, top + 24 + 5)


def _particulars(pdf: FPDF, doc: NoticeDocument) -> None:
    rows = [
        ("执收单位", "Department", doc.department_name),
        ("缴款人", "Payer", doc.payer_name_masked),
    ]
    if doc.reference:
        rows.append(("文书编号", "Reference", doc.reference))
    if doc.description:
        rows.append(("事由", "Description", doc.description))
    particulars_table(pdf, rows, label_width=40.0, line_height=5.5, padding_v=1.4)


def particulars_table(
    pdf: FPDF,
    rows: list[tuple[str, str, object]],
    *,
    label_width: float,
    line_height: float,
    padding_v: float,
) -> None:
    """A form's particulars: a shaded label column (Chinese and English) beside the values,
    horizontal rules between rows; used by the notice and the receipt."""
    pad = 2.0
    value_width = pdf.w - 2 * _MARGIN - label_width
    pdf.set_draw_color(*_RULE)
    pdf.set_text_color(*_INK)
    pdf.set_font(_FONT, size=10)
    with pdf.table(
        col_widths=(label_width, value_width),
        first_row_as_headings=False,
        borders_layout="HORIZONTAL_LINES",
        line_height=line_height,
        padding=(padding_v, pad),
        v_align="M",
        cell_fill_mode="EVEN_COLUMNS",  # the label column
        cell_fill_color=_SHADE,
    ) as table:
        for zh, en, value in rows:
            row = table.row()
            row.cell(f"{zh}  {en}", style=FontFace(color=_MUTED, size_pt=9))
            # Pre-wrapped (with 1 mm to spare) so that Chinese breaks between characters.
            row.cell("\n".join(_wrap(pdf, str(value), value_width - 2 * pad - 1)))
    pdf.set_fill_color(255)
    pdf.ln(5)


def ruled_footer(pdf: FPDF, text: str, *, top: float, size: float, line_height: float) -> None:
    """A page footer of the official documents: a rule, then ``text`` centred in small muted
    type, starting ``top`` mm from the page's bottom (negative)."""
    pdf.set_y(top)
    pdf.set_draw_color(*_RULE)
    pdf.line(_MARGIN, pdf.get_y(), pdf.w - _MARGIN, pdf.get_y())
    pdf.ln(2)
    pdf.set_font(_FONT, size=size)
    pdf.set_text_color(*_MUTED)
    pdf.set_x(_MARGIN)
    _paragraph(pdf, text, pdf.w - 2 * _MARGIN, line_height, align=Align.C)


def section_heading(pdf: FPDF, text: str) -> None:
    """A bold section title such as "缴款项目  Items"."""
    pdf.set_font(_FONT, size=10)
    pdf.set_text_color(*_INK)
    _bold(pdf, True)
    pdf.cell(0, 6, text, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _bold(pdf, False)
    pdf.ln(1)


def _items(pdf: FPDF, doc: NoticeDocument) -> None:
    section_heading(pdf, "缴款项目  Items")
    lines = doc.lines or (
        NoticeLine(KIND_LABELS[doc.kind][0], KIND_LABELS[doc.kind][1], 1, doc.principal_fen),
    )
    pdf.set_draw_color(*_RULE)
    heading = FontFace(color=_INK, fill_color=_SHADE, size_pt=9)
    name_width, pad = pdf.w - 2 * _MARGIN - 70, 2.0
    with pdf.table(
        col_widths=(10, name_width, 22, 38),
        headings_style=heading,
        borders_layout="SINGLE_TOP_LINE",
        line_height=5.2,
        padding=(1.6, pad),
        text_align=("CENTER", "LEFT", "RIGHT", "RIGHT"),
        wrapmode=WrapMode.CHAR,
    ) as table:
        header = table.row()
        for title in ("#", "项目 Item", "数量 Qty", "金额（元）Amount"):
            header.cell(title)
        for number, line in enumerate(lines, start=1):
            row = table.row()
            row.cell(str(number), v_align="M")
            name = f"{line.name_zh}\n{line.name_en}"
            row.cell("\n".join(_wrap(pdf, name, name_width - 2 * pad - 1)))
            row.cell(str(line.quantity), v_align="M")
            row.cell(format_fen(line.amount_fen), v_align="M")
    y = pdf.get_y()
    pdf.set_draw_color(*_INK)
    pdf.line(_MARGIN, y, pdf.w - _MARGIN, y)
    pdf.ln(2)


def _total_and_due(pdf: FPDF, doc: NoticeDocument) -> None:
    width = pdf.w - 2 * _MARGIN
    pdf.set_text_color(*_INK)
    pdf.set_font(_FONT, size=11)
    pdf.cell(width - 60, 8, "应缴金额合计  Total principal", align=Align.R)
    pdf.set_font(_FONT, size=15)
    _bold(pdf, True)
    pdf.cell(
        60,
        8,
        f"¥ {format_fen(doc.principal_fen)}",
        align=Align.R,
        new_x=XPos.LMARGIN,
        new_y=YPos.NEXT,
    )
    _bold(pdf, False)
    pdf.set_font(_FONT, size=11)
    pdf.cell(width - 60, 8, "缴款期限  Pay by", align=Align.R)
    pdf.set_text_color(*_RED)
    pdf.set_font(_FONT, size=13)
    _bold(pdf, True)
    pdf.cell(60, 8, doc.due_date.isoformat(), align=Align.R, new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _bold(pdf, False)
    pdf.set_text_color(*_INK)
    pdf.ln(4)


def _late_fee(pdf: FPDF, doc: NoticeDocument) -> None:
    if not doc.late_fee_note:
        return
    width = pdf.w - 2 * _MARGIN
    top = pdf.get_y()
    pdf.set_x(_MARGIN + 4)
    pdf.set_font(_FONT, size=9)
    pdf.set_text_color(*_RED)
    pdf.cell(0, 5.5, "逾期说明  Late payment", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    pdf.set_x(_MARGIN + 4)
    pdf.set_text_color(*_INK)
    pdf.set_font(_FONT, size=10)
    _paragraph(pdf, doc.late_fee_note, width - 8, 5.5)
    bottom = pdf.get_y() + 1
    pdf.set_draw_color(*_RED)
    pdf.set_line_width(0.8)
    pdf.line(_MARGIN + 0.4, top, _MARGIN + 0.4, bottom)  # a red bar down the left side
    pdf.set_line_width(0.2)
    pdf.set_y(bottom + 4)


_PAY_STEPS = (
    ("1. 使用手机银行、微信或支付宝扫描右侧二维码，核对缴款码与金额后支付。", False),
    ("Scan with a banking or payment app, check the code and amount, and pay.", True),
    ("2. 或持本通知书到任一合作银行柜台，凭缴款码缴款。", False),
    ("Or bring this notice to any partner bank counter and quote the payment code.", True),
    ("3. 缴款后可凭缴款码查询缴款状态并下载电子票据。", False),
    ("After paying, use the payment code to check the payment and get the e-receipt.", True),
)


def _qr(pdf: FPDF, doc: NoticeDocument) -> None:
    """The QR code and how to pay, anchored above the footer (on a new page if it won't fit)."""
    width = pdf.w - 2 * _MARGIN
    text_width = width - _QR_SIZE - 14
    pdf.set_font(_FONT, size=7.5)
    url_lines = _wrap(pdf, doc.pay_url, _QR_SIZE + 10)
    pdf.set_font(_FONT, size=9)
    step_lines = sum(len(_wrap(pdf, text, text_width - 4)) for text, _ in _PAY_STEPS)
    height = 5 + max(_QR_SIZE + 1 + 3.6 * len(url_lines), 8 + 4.6 * step_lines)
    limit = pdf.h - 27  # 1 mm above the automatic page break
    if pdf.get_y() + height > limit:
        pdf.add_page()
    top = max(pdf.get_y(), limit - height)
    pdf.set_draw_color(*_RULE)
    pdf.set_dash_pattern(dash=1, gap=1)
    pdf.line(_MARGIN, top, pdf.w - _MARGIN, top)
    pdf.set_dash_pattern()
    top += 5
    qr_x = pdf.w - _MARGIN - _QR_SIZE - 5
    pdf.image(io.BytesIO(qr_png(doc.pay_url)), x=qr_x, y=top, w=_QR_SIZE, h=_QR_SIZE)
    pdf.set_xy(qr_x - 5, top + _QR_SIZE + 1)
    pdf.set_font(_FONT, size=7.5)
    pdf.set_text_color(*_MUTED)
    _paragraph(pdf, doc.pay_url, _QR_SIZE + 10, 3.6, align=Align.C)

    pdf.set_xy(_MARGIN, top + 1)
    pdf.set_text_color(*_INK)
    pdf.set_font(_FONT, size=11)
    _bold(pdf, True)
    pdf.cell(text_width, 6, "扫码缴款  Scan to pay", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _bold(pdf, False)
    pdf.ln(2)
    pdf.set_font(_FONT, size=9)
    for text, english in _PAY_STEPS:
        pdf.set_text_color(*(_MUTED if english else _INK))
        pdf.set_x(_MARGIN + (4 if english else 0))
        _paragraph(pdf, text, text_width - 4, 4.6)
