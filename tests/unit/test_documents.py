from __future__ import annotations

import io
import shutil
import struct
import subprocess
from dataclasses import replace
from datetime import date
from pathlib import Path

import pypdf
import pytest
import qrcode
from fpdf import FPDF

from clearing.errors import ConfigurationError, ValidationError
from notices import documents
from notices.codes import PaymentCodeError, format_code, generate_code
from notices.documents import (
    NoticeDocument,
    NoticeLine,
    cjk_font_path,
    qr_png,
    render_notice_pdf,
)

CODE = generate_code("510104", 2026, rng=lambda n: 12345678901 % n)
LATE_FEE_NOTE = "逾期每日按罚款数额的3%加处罚款，加处罚款不超过罚款本数"
PAY_URL = f"https://pay.feishui.example.cn/p/{CODE}"


def sample(**changes) -> NoticeDocument:
    doc = NoticeDocument(
        payment_code=CODE,
        department_name="成都市公安局交通管理局",
        kind="traffic_fine",
        payer_name_masked="张*三",
        reference="公交决字〔2026〕第 510104-0012345 号",
        description="机动车违反禁止标线指示 (Crossing a solid line)",
        lines=(
            NoticeLine("罚款", "Fine", 1, 20000),
            NoticeLine("工本费", "Document fee", 2, 1000),
        ),
        principal_fen=21000,
        due_date=date(2026, 12, 13),
        issued_on=date(2026, 11, 28),
        pay_url=PAY_URL,
        late_fee_note=LATE_FEE_NOTE,
    )
    return replace(doc, **changes)


def page_texts(pdf: bytes) -> list[str]:
    """Text of each page as pypdf extracts it, with whitespace and NULs removed.

    fpdf2 embeds a CFF (OTF) font as a CIDFontType0 whose /Encoding is an embedded code->CID
    CMap (not Identity-H), as the PDF spec allows. pypdf 7 reads the 2-byte codes of such a
    font a byte at a time: every character comes out right, in order, but preceded by a NUL,
    and its /W lookup by code makes it insert spaces. Poppler's pdftotext extracts the text
    exactly (see test_pdftotext_reads_the_text). Comparing without whitespace or NULs keeps
    the check meaningful: the characters and their order come from the ToUnicode map.
    """
    reader = pypdf.PdfReader(io.BytesIO(pdf))
    return ["".join(page.extract_text().replace("\x00", "").split()) for page in reader.pages]


@pytest.fixture(scope="module")
def rendered() -> bytes:
    return render_notice_pdf(sample())


@pytest.fixture(autouse=True)
def _no_font_override(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(documents.FONT_ENV, raising=False)


# --------------------------------------------------------------------------- the PDF


def test_renders_a_one_page_pdf(rendered: bytes) -> None:
    assert rendered.startswith(b"%PDF-")
    assert rendered.rstrip().endswith(b"%%EOF")
    assert len(pypdf.PdfReader(io.BytesIO(rendered)).pages) == 1


def test_embeds_a_subset_cjk_font(rendered: bytes) -> None:
    assert b"/FontFile2" in rendered or b"/FontFile3" in rendered
    # Subset: the whole font is megabytes, the notice tens of kilobytes.
    assert len(rendered) < 300_000
    reader = pypdf.PdfReader(io.BytesIO(rendered))
    fonts = reader.pages[0]["/Resources"]["/Font"]
    names = [str(font.get_object()["/BaseFont"]) for font in fonts.values()]
    assert names and all("Helvetica" not in name for name in names)


def test_chinese_text_survives(rendered: bytes) -> None:
    [text] = page_texts(rendered)
    assert "缴款通知书" in text
    assert "PaymentNotice" in text
    assert "张*三" in text
    assert "成都市公安局交通管理局" in text
    assert "公交决字〔2026〕第510104-0012345号" in text
    assert "交通违法罚款" in text


def test_prints_code_amounts_dates_and_url(rendered: bytes) -> None:
    [text] = page_texts(rendered)
    assert "".join(format_code(CODE).split()) in text
    assert "罚款" in text and "Fine" in text and "Documentfee" in text
    assert "200.00" in text and "10.00" in text
    assert "¥210.00" in text
    assert "2026-12-13" in text
    assert "2026-11-28" in text
    assert LATE_FEE_NOTE in text
    assert f"Payat{PAY_URL}oranypartnerbankcounter" in text


def test_payment_code_is_printed_grouped_in_fours(monkeypatch: pytest.MonkeyPatch) -> None:
    # Extraction keeps whitespace only roughly (see page_texts), so record what is drawn.
    drawn: list[str] = []
    original = documents._NoticePDF.cell

    def spy(self, *args, **kwargs):
        drawn.append(kwargs.get("text", args[2] if len(args) > 2 else ""))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(documents._NoticePDF, "cell", spy)
    render_notice_pdf(sample())
    grouped = " ".join(CODE[i : i + 4] for i in range(0, 20, 4))
    assert grouped in drawn


def test_late_fee_note_only_when_present() -> None:
    [text] = page_texts(render_notice_pdf(sample(late_fee_note=None, reference=None)))
    assert "逾期说明" not in text
    assert "文书编号" not in text
    assert "缴款通知书" in text


def test_notice_without_lines_prints_the_kind_as_one_item() -> None:
    [text] = page_texts(render_notice_pdf(sample(kind="tuition", lines=(), principal_fen=500000)))
    assert "学费" in text and "Tuition" in text
    assert "5000.00" in text


def test_long_notice_flows_onto_more_pages_with_a_running_head() -> None:
    lines = tuple(
        NoticeLine(f"第{i}学期住宿费（含代收代付项目）", f"Term {i} housing", 1, 100000)
        for i in range(1, 16)
    )
    pdf = render_notice_pdf(sample(lines=lines, principal_fen=1_500_000))
    pages = page_texts(pdf)
    assert len(pages) >= 2
    assert "".join(format_code(CODE).split()) in pages[-1]
    assert "¥15000.00" in pages[-1]
    assert "扫码缴款" in pages[-1]


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"principal_fen": 20999}, ValidationError),
        ({"lines": (NoticeLine("罚款", "Fine", 1, 21000.0),)}, ValidationError),  # not fen
        ({"principal_fen": 0, "lines": ()}, ValidationError),
        ({"kind": "parking"}, ValidationError),
        ({"pay_url": ""}, ValidationError),
        ({"payment_code": CODE[:-1] + str((int(CODE[-1]) + 1) % 10)}, PaymentCodeError),
    ],
)
def test_refuses_wrong_notices(changes: dict, error: type[Exception]) -> None:
    with pytest.raises(error):
        render_notice_pdf(sample(**changes))


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_pdftotext_reads_the_text(rendered: bytes, tmp_path: Path) -> None:
    pdf = tmp_path / "notice.pdf"
    pdf.write_bytes(rendered)
    text = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(pdf), "-"], capture_output=True, check=True, text=True
    ).stdout
    assert "缴款通知书" in text
    assert "张*三" in text
    assert format_code(CODE) in text  # grouped in fours, spaces and all
    assert LATE_FEE_NOTE in text


# --------------------------------------------------------------------------- line breaking


def test_wrap_breaks_between_han_characters_but_not_inside_words() -> None:
    pdf = FPDF()
    pdf.add_font("cjk", fname=str(cjk_font_path()))
    pdf.set_font("cjk", size=10)
    text = LATE_FEE_NOTE + "。Overdue: 3% of the fine is added per day, up to the fine itself."
    english = set(text.split("。")[1].split())
    for width in (40, 60, 90, 120):
        lines = documents._wrap(pdf, text, width)
        assert len(lines) > 1
        assert "".join(lines).replace(" ", "") == text.replace(" ", "")
        assert all(pdf.get_string_width(line) <= width + 0.01 for line in lines)
        assert not any(line.startswith(("，", "。", ",", ".", "%")) for line in lines)
        # Every English token on a line is a whole word of the text (the first one may carry
        # the Chinese before it: "…本数。Overdue:").
        for line in lines:
            for word in line.split():
                assert word in english or word.endswith("Overdue:") or not word.isascii()


def test_wrap_splits_an_overlong_url() -> None:
    pdf = FPDF()
    pdf.add_font("cjk", fname=str(cjk_font_path()))
    pdf.set_font("cjk", size=8)
    lines = documents._wrap(pdf, PAY_URL, 30)
    assert len(lines) > 1 and "".join(lines) == PAY_URL


# --------------------------------------------------------------------------- font lookup


def test_font_comes_from_the_packaged_noto_sans_sc() -> None:
    path = cjk_font_path()
    assert path.is_file()
    assert path.name == "NotoSansSC-Regular.otf"


def test_font_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    font = tmp_path / "my.otf"
    font.write_bytes(cjk_font_path().read_bytes())
    monkeypatch.setenv(documents.FONT_ENV, str(font))
    assert cjk_font_path() == font
    [text] = page_texts(render_notice_pdf(sample()))
    assert "缴款通知书" in text


def test_font_env_pointing_nowhere_is_a_configuration_error(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(documents.FONT_ENV, str(tmp_path / "missing.ttf"))
    with pytest.raises(ConfigurationError, match="FEISHUI_CJK_FONT"):
        cjk_font_path()


def test_falls_back_to_system_fonts_then_fails_clearly(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(documents, "_packaged_font", lambda: None)
    system = tmp_path / "wqy-microhei.ttc"
    system.write_bytes(b"not checked here")
    monkeypatch.setattr(documents, "SYSTEM_FONT_PATHS", (tmp_path / "absent.ttc", system))
    assert cjk_font_path() == system

    monkeypatch.setattr(documents, "SYSTEM_FONT_PATHS", ())
    with pytest.raises(ConfigurationError, match="pylopdf-fonts-zh-cn"):
        cjk_font_path()
    with pytest.raises(ConfigurationError):
        render_notice_pdf(sample())


# --------------------------------------------------------------------------- QR code


def png_size(png: bytes) -> tuple[int, int]:
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert png[12:16] == b"IHDR"
    return struct.unpack(">II", png[16:24])


def expected_version(data: str) -> int:
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M)
    code.add_data(data)
    code.make(fit=True)
    return code.version


@pytest.mark.parametrize("data", [PAY_URL, PAY_URL + "?channel=print&lang=zh-CN" * 4, "1"])
@pytest.mark.parametrize("box_size", [1, 6])
def test_qr_png_is_the_smallest_version_that_fits(data: str, box_size: int) -> None:
    version = expected_version(data)
    assert 1 <= version <= 40
    modules = 17 + 4 * version + 2 * 4  # the symbol plus a 4-module quiet zone each side
    assert png_size(qr_png(data, box_size=box_size)) == (modules * box_size,) * 2


def test_longer_urls_need_bigger_codes() -> None:
    short, long = qr_png(PAY_URL, box_size=1), qr_png(PAY_URL + "x" * 200, box_size=1)
    assert png_size(long)[0] > png_size(short)[0]


@pytest.mark.parametrize("box_size", [0, -1, True])
def test_qr_png_refuses_bad_input(box_size: int) -> None:
    with pytest.raises(ValidationError):
        qr_png(PAY_URL, box_size=box_size)
    with pytest.raises(ValidationError):
        qr_png("")


def test_qr_image_is_embedded(rendered: bytes) -> None:
    page = pypdf.PdfReader(io.BytesIO(rendered)).pages[0]
    images = list(page.images)
    assert len(images) == 1
    assert images[0].image.size[0] == images[0].image.size[1]
