"""Statement parsers: golden files to exact lines, broken files to StatementError, detection,
fuzzing (never a traceback) and the OFX path's linearity."""

from __future__ import annotations

import gc
import math
import re
import time
from datetime import date
from decimal import Decimal
from pathlib import Path
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clearing.errors import ValidationError
from reconciliation.lines import LineKind, StatementLine
from reconciliation.parsers import FORMATS, StatementError, camt053, detect_format, ofx, parse
from reconciliation.parsers._common import round_fen

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "statements"
PAYMENT, REFUND = LineKind.PAYMENT, LineKind.REFUND
SETTLEMENT, OTHER = LineKind.SETTLEMENT, LineKind.OTHER


def L(
    source,
    line_no,
    external_id,
    order_id,
    amount,
    fee,
    booked_on,
    kind,
    reference,
    *,
    currency="CNY",
    value_on=None,
    fee_exact=None,
    refund_id=None,
    reversal=False,
):
    return StatementLine(
        source=source,
        line_no=line_no,
        external_id=external_id,
        order_id=order_id,
        amount_fen=amount,
        fee_fen=fee,
        currency=currency,
        booked_on=booked_on,
        value_on=value_on,
        kind=kind,
        reference=reference,
        fee_exact=fee_exact,
        refund_id=refund_id,
        reversal=reversal,
    )


def read(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def lines_of(name: str, **kwargs) -> list[StatementLine]:
    return list(parse(read(name), filename=name, **kwargs))


GOLDEN = {
    "alipay_2088102177846880_20261127.csv": [
        L(
            "alipay",
            6,
            "2026112722001456781234567890",
            "PA20261127000001",
            26000,
            156,
            date(2026, 11, 27),
            PAYMENT,
            "交通罚款",
        ),
        L(
            "alipay",
            7,
            "2026112722001456781234567891",
            "PA20261127000002",
            8000,
            48,
            date(2026, 11, 27),
            PAYMENT,
            "不动产登记费",
        ),
        L(
            "alipay",
            8,
            "2026112722001456781234567890",
            "PA20261127000001",
            -26000,
            -156,
            date(2026, 11, 27),
            REFUND,
            "交通罚款",
            refund_id="RF20261127000001",
        ),
        L(
            "alipay",
            9,
            "2026112722001456781234567892",
            "PA20261127000003",
            12050,
            72,
            date(2026, 11, 28),
            PAYMENT,
            "护照签发（普通）",
        ),
    ],
    "alipay_bom_20261127.csv": [
        L(
            "alipay",
            6,
            "2026112722001456781234567893",
            "PA20261127000004",
            2000,
            12,
            date(2026, 11, 27),
            PAYMENT,
            "出入境证件工本费",
        ),
    ],
    "wechatpay_1900000109_20261127.csv": [
        L(
            "wechatpay",
            2,
            "4200002026112700000001",
            "PW20261127000002",
            12000,
            72,
            date(2026, 11, 27),
            PAYMENT,
            "护照签发",
            fee_exact=Decimal("0.72000"),
        ),
        L(
            "wechatpay",
            3,
            "4200002026112700000002",
            "PW20261127000003",
            3333,
            20,
            date(2026, 11, 27),
            PAYMENT,
            "排污费",
            fee_exact=Decimal("0.19998"),
        ),
        L(
            "wechatpay",
            4,
            "4200002026112700000003",
            "PW20261127000004",
            250,
            2,
            date(2026, 11, 27),
            PAYMENT,
            "考试报名费",
            fee_exact=Decimal("0.01500"),
        ),
        L(
            "wechatpay",
            5,
            "4200002026112700000001",
            "PW20261127000002",
            -12000,
            -72,
            date(2026, 11, 27),
            REFUND,
            "护照签发",
            fee_exact=Decimal("-0.72000"),
            refund_id="RW20261127000001",
        ),
    ],
    "unionpay_898510148990001_20261127.txt": [
        L(
            "unionpay",
            2,
            "771120261127100500000001",
            "PU20261127000003",
            460000,
            1380,
            date(2026, 11, 27),
            PAYMENT,
            "",
            value_on=date(2026, 11, 27),
        ),
        L(
            "unionpay",
            3,
            "771120261127113000000002",
            "PU20261127000005",
            5050,
            15,
            date(2026, 11, 27),
            PAYMENT,
            "",
            value_on=date(2026, 11, 27),
        ),
        L(
            "unionpay",
            4,
            "771120261127170000000003",
            "PU20261127000003",
            -460000,
            -1380,
            date(2026, 11, 27),
            REFUND,
            "",
            refund_id="RU20261127000001",
            value_on=date(2026, 11, 27),
        ),
    ],
    "ofx1_gbk_20261127.ofx": [
        L(
            "ofx",
            39,
            "B20261127000101",
            None,
            458720,
            0,
            date(2026, 11, 27),
            SETTLEMENT,
            "支付宝（中国）网络技术有限公司 SETTLE ALIPAY 20261126 结算款",
        ),
        L(
            "ofx",
            47,
            "B20261127000102",
            None,
            119640,
            0,
            date(2026, 11, 27),
            SETTLEMENT,
            "财付通支付科技有限公司 SETTLE WECHATPAY 20261126",
        ),
        L(
            "ofx",
            55,
            "B20261127000103",
            None,
            -1250,
            0,
            date(2026, 11, 27),
            OTHER,
            "账户管理费 & 手续费 2026年11月",
        ),
        L(
            "ofx",
            63,
            "B20261127000104",
            None,
            30000,
            0,
            date(2026, 11, 27),
            OTHER,
            "市财政局 退回多缴款",
        ),
    ],
    "ofx2_utf8_20261127.ofx": [
        L(
            "ofx",
            25,
            "B20261127000201",
            None,
            45862000,
            0,
            date(2026, 11, 27),
            SETTLEMENT,
            "中国银联股份有限公司 SETTLE UNIONPAY 20261126 银联清算",
        ),
        L("ofx", 33, "B20261127000202", None, -1, 0, date(2026, 11, 27), OTHER, "短信服务费"),
    ],
    "camt053_v02_20261127.xml": [
        L(
            "camt053",
            22,
            "C20261127000301",
            None,
            458720,
            0,
            date(2026, 11, 27),
            SETTLEMENT,
            "SETTLE ALIPAY 20261126",
            value_on=date(2026, 11, 27),
        ),
        L(
            "camt053",
            54,
            "C20261127000303-1",
            None,
            20000,
            0,
            date(2026, 11, 27),
            OTHER,
            "非税缴款 交通罚款",
            value_on=date(2026, 11, 28),
        ),
        L(
            "camt053",
            59,
            "C20261127000303-2",
            None,
            10000,
            0,
            date(2026, 11, 27),
            OTHER,
            "非税缴款 不动产登记费",
            value_on=date(2026, 11, 28),
        ),
        L(
            "camt053",
            64,
            "FS20261127C",
            None,
            5000,
            0,
            date(2026, 11, 27),
            OTHER,
            "非税缴款 考试报名费",
            value_on=date(2026, 11, 28),
        ),
        L(
            "camt053",
            71,
            "C20261127000304",
            None,
            -458720,
            0,
            date(2026, 11, 27),
            OTHER,
            "冲正 C20261127000301",
            reversal=True,
            value_on=date(2026, 11, 27),
        ),
        L(
            "camt053",
            81,
            "C20261127000305",
            None,
            -1250,
            0,
            date(2026, 11, 27),
            OTHER,
            "账户管理费",
        ),
    ],
    "camt053_v08_20261127.xml": [
        L(
            "camt053",
            15,
            "D20261127000401",
            None,
            119640,
            0,
            date(2026, 11, 27),
            SETTLEMENT,
            "SETTLE WECHATPAY 20261126 财付通结算",
            value_on=date(2026, 11, 27),
        ),
        L(
            "camt053",
            51,
            "T-REF-1",
            None,
            -6000,
            0,
            date(2026, 11, 27),
            OTHER,
            "退费 RF20261127000009",
            value_on=date(2026, 11, 27),
        ),
        L(
            "camt053",
            57,
            "T-REF-2",
            None,
            500,
            0,
            date(2026, 11, 27),
            OTHER,
            "手续费返还",
            value_on=date(2026, 11, 27),
        ),
        L(
            "camt053",
            65,
            "D20261127000404",
            None,
            1250,
            0,
            date(2026, 11, 27),
            OTHER,
            "冲正 账户管理费 C20261127000305",
            reversal=True,
        ),
    ],
}


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_file_gives_exact_lines(name: str) -> None:
    assert lines_of(name) == GOLDEN[name]


def test_golden_wechat_fees_are_exact_and_rounded_half_up() -> None:
    fees = [
        (line.fee_exact, line.fee_fen) for line in lines_of("wechatpay_1900000109_20261127.csv")
    ]
    assert fees == [
        (Decimal("0.72000"), 72),
        (Decimal("0.19998"), 20),
        (Decimal("0.01500"), 2),
        (Decimal("-0.72000"), -72),
    ]


def test_round_fen_half_up_away_from_zero() -> None:
    assert round_fen(Decimal("0.00500")) == 1
    assert round_fen(Decimal("-0.00500")) == -1
    assert round_fen(Decimal("0.00499")) == 0
    assert round_fen(Decimal("1.23456")) == 123


def test_ofx_dates_are_business_dates_as_written() -> None:
    """ofxparse shifts ``[+8:CST]`` times to UTC (00:30 would become the day before)."""
    first = lines_of("ofx1_gbk_20261127.ofx")[0]
    assert first.booked_on == date(2026, 11, 27)


@pytest.mark.parametrize("name", sorted(n for n in GOLDEN if n.startswith("ofx")))
def test_ofx_soup_strategy_gives_the_same_lines(name: str) -> None:
    assert list(ofx.parse(read(name), name, strategy="soup")) == GOLDEN[name]


BROKEN = [
    ("broken_alipay_amount_20261127.csv", 7, "column 商家实收（元） is not an amount: '8o.00'"),
    ("broken_alipay_totals_20261127.csv", 11, "footer #交易合计 says 3 rows totalling 470.50"),
    ("broken_alipay_truncated_20261127.csv", 7, "footer #交易合计 is missing"),
    ("broken_alipay_encoding_20261127.csv", 7, "for the GBK/GB18030 encoding"),
    ("broken_wechatpay_truncated_20261127.csv", 5, "summary row is missing"),
    (
        "broken_wechatpay_fees_20261127.csv",
        7,
        "summary 手续费总金额 is 0.21499 but the rows give 0.21498",
    ),
    ("broken_unionpay_truncated_20261127.txt", 4, "trailer record T is missing"),
    (
        "broken_unionpay_trailer_20261127.txt",
        5,
        "trailer sum txnAmt is 50.60 but the details give 50.50",
    ),
    ("broken_ofx_truncated_20261127.ofx", 59, "truncated: <STMTTRN> opened on line 55"),
    ("broken_ofx_amount_20261127.ofx", 50, "Invalid Transaction Amount: '1196.4O'"),
    ("broken_ofx_encoding_20261127.ofx", 69, "for the declared CHARSET:936 (gbk) encoding"),
    ("broken_camt053_amount_20261127.xml", 61, "Amt is not a positive amount: '1OO.00'"),
    ("broken_camt053_truncated_20261127.xml", 78, "not well-formed XML"),
    ("broken_camt053_batch_20261127.xml", 45, "batch transactions add up to 34000 fen"),
    ("broken_camt053_xxe_20261127.xml", 1, "DOCTYPE/DTD is not allowed"),
]


@pytest.mark.parametrize(("name", "line", "problem"), BROKEN)
def test_broken_file_raises_statement_error(name: str, line: int, problem: str) -> None:
    with pytest.raises(StatementError) as info:
        lines_of(name)
    err = info.value
    assert isinstance(err, ValidationError)
    assert err.status == 422
    assert err.filename == name
    assert err.line == line
    assert problem in err.problem
    assert err.detail.startswith(f"{name} line {line}")


def test_error_detail_reads_like_the_example() -> None:
    with pytest.raises(StatementError) as info:
        lines_of("broken_alipay_amount_20261127.csv")
    assert info.value.detail == (
        "broken_alipay_amount_20261127.csv line 7: column 商家实收（元） is not an amount: '8o.00'"
    )


def test_camt_error_names_the_element_path() -> None:
    with pytest.raises(StatementError) as info:
        lines_of("broken_camt053_amount_20261127.xml")
    assert info.value.path == "Stmt[1]/Ntry[3]/NtryDtls/TxDtls[2]/Amt"


def test_lines_stream_before_the_footer_check() -> None:
    name = "broken_alipay_totals_20261127.csv"
    seen = []
    with pytest.raises(StatementError):
        for line in parse(read(name), filename=name):
            seen.append(line.line_no)
    assert seen == [6, 7, 8, 9]


def test_xxe_entity_is_never_resolved() -> None:
    data = read("broken_camt053_xxe_20261127.xml")
    with pytest.raises(StatementError) as info:
        list(parse(data, filename="x.xml"))
    assert "root:" not in info.value.detail
    # and the hardened parser itself leaves the entity unexpanded
    from lxml import etree

    root = etree.fromstring(data, camt053._parser())
    assert "root:" not in etree.tostring(root, encoding="unicode")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        (name, name.split("_")[0].replace("ofx1", "ofx").replace("ofx2", "ofx"))
        for name in sorted(GOLDEN)
    ],
)
def test_detect_format(name: str, expected: str) -> None:
    assert detect_format(read(name), name) == expected


def test_detect_wechat_with_bom_and_alipay_in_utf8() -> None:
    wechat = read("wechatpay_1900000109_20261127.csv")
    assert detect_format(b"\xef\xbb\xbf" + wechat) == "wechatpay"
    assert list(parse(b"\xef\xbb\xbf" + wechat)) == GOLDEN["wechatpay_1900000109_20261127.csv"]
    gbk = read("alipay_2088102177846880_20261127.csv")
    utf8 = gbk.decode("gbk").encode("utf-8")
    assert detect_format(utf8) == "alipay"
    assert list(parse(utf8)) == GOLDEN["alipay_2088102177846880_20261127.csv"]


@pytest.mark.parametrize("data", [b"", b"hello,world\n", b"\x00\xff" * 10, b"<html></html>"])
def test_unknown_format(data: bytes) -> None:
    with pytest.raises(StatementError, match="unknown statement format"):
        parse(data, filename="mystery.bin")


def test_unknown_format_name() -> None:
    with pytest.raises(StatementError, match="unknown format 'mt940'"):
        parse(b"x", format="mt940")


def test_forced_format_on_the_wrong_file_is_a_statement_error() -> None:
    for name in GOLDEN:
        for fmt in FORMATS:
            if detect_format(read(name)) == fmt:
                continue
            with pytest.raises(StatementError):
                list(parse(read(name), format=fmt, filename=name))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            b"H|898510148990001|20261127|1\nD|A|Q1|20261127100500|01|100|1|98|00\nT|1|100|1|98\n",
            "settleAmt 98 is not txnAmt 100 minus fee 1",
        ),
        (
            b"H|898510148990001|20261127|1\nD|A|Q1|20261127100500|04|-100|-1|-99|00\nT|1|-100|-1|-99\n",
            "must be negative and carry refundOrderId",
        ),
        (
            b"H|898510148990001|20261127|2\nD|A|Q1|20261127100500|01|100|1|99|00\nT|1|100|1|99\n",
            "header recordCount is 2",
        ),
        (
            b"H|898510148990001|20261127|1\nD|A|Q1|20261127100500|01|1.00|1|99|00\nT|1|100|1|99\n",
            "txnAmt is not an amount in fen",
        ),
    ],
)
def test_unionpay_rules(data: bytes, problem: str) -> None:
    with pytest.raises(StatementError, match=re.escape(problem)):
        list(parse(data, filename="u.txt"))


def test_parsers_never_use_float() -> None:
    package = Path(ofx.__file__).parent
    for source in package.glob("*.py"):
        assert "float(" not in source.read_text(encoding="utf-8"), source.name


# ---- fuzz: truncation and byte flips of every golden file ----------------------------------

GOLDEN_BYTES = {name: read(name) for name in sorted(GOLDEN)}


@st.composite
def mutated(draw):
    name = draw(st.sampled_from(sorted(GOLDEN_BYTES)))
    data = bytearray(GOLDEN_BYTES[name])
    for _ in range(draw(st.integers(min_value=0, max_value=4))):
        at = draw(st.integers(min_value=0, max_value=len(data) - 1))
        data[at] = draw(st.integers(min_value=0, max_value=255))
    if draw(st.booleans()):
        data = data[: draw(st.integers(min_value=0, max_value=len(data)))]
    return name, bytes(data), draw(st.booleans())


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzzed_golden_files_raise_only_statement_error(case) -> None:
    name, data, force = case
    fmt = detect_format(GOLDEN_BYTES[name]) if force else None
    try:
        lines = list(parse(data, format=fmt, filename=name))
    except StatementError as exc:
        assert exc.detail.startswith(name)
        return
    assert all(isinstance(line, StatementLine) for line in lines)


# ---- OFX: linear, not quadratic ---------------------------------------------------------------


def ofx_sgml(n: int) -> bytes:
    head = (
        "OFXHEADER:100\r\nDATA:OFXSGML\r\nVERSION:102\r\nSECURITY:NONE\r\nENCODING:USASCII\r\n"
        "CHARSET:1252\r\nCOMPRESSION:NONE\r\nOLDFILEUID:NONE\r\nNEWFILEUID:NONE\r\n\r\n"
        "<OFX><SIGNONMSGSRSV1><SONRS><STATUS><CODE>0<SEVERITY>INFO</STATUS>"
        "<DTSERVER>20261128090000<LANGUAGE>CHI</SONRS></SIGNONMSGSRSV1><BANKMSGSRSV1><STMTTRNRS>"
        "<TRNUID>1<STATUS><CODE>0<SEVERITY>INFO</STATUS><STMTRS><CURDEF>CNY<BANKACCTFROM>"
        "<BANKID>102100099996<ACCTID>6222020200012345678<ACCTTYPE>CHECKING</BANKACCTFROM>"
        "<BANKTRANLIST><DTSTART>20261127<DTEND>20261128\r\n"
    )
    txns = "".join(
        f"<STMTTRN>\r\n<TRNTYPE>CREDIT\r\n<DTPOSTED>20261127100000[+8:CST]\r\n"
        f"<TRNAMT>{i}.{i % 100:02d}\r\n<FITID>F{i:09d}\r\n<NAME>Payer {i}\r\n"
        f"<MEMO>non-tax payment {i}\r\n</STMTTRN>\r\n"
        for i in range(n)
    )
    tail = (
        "</BANKTRANLIST><LEDGERBAL><BALAMT>0.00<DTASOF>20261128</LEDGERBAL></STMTRS>"
        "</STMTTRNRS></BANKMSGSRSV1></OFX>\r\n"
    )
    return (head + txns + tail).encode("ascii")


def test_ofx_generated_statement_parses_exactly() -> None:
    lines = list(parse(ofx_sgml(150)))
    assert len(lines) == 150
    assert lines[123].amount_fen == 12323
    assert lines[123].external_id == "F000000123"
    assert lines == list(ofx.parse(ofx_sgml(150), None, strategy="soup"))


def _cpu_seconds(data: bytes) -> float:
    gc.collect()
    start = time.process_time()
    count = sum(1 for _ in parse(data, format="ofx"))
    assert count > 0
    return time.process_time() - start


@pytest.mark.slow
def test_ofx_parsing_is_linear() -> None:
    """4x the transactions: linear is about 4x, ofxparse alone about 16x (quadratic).

    CPU time, best of 5 runs interleaved: the machine is shared and wall time is noisy.
    """
    small, large = ofx_sgml(2_000), ofx_sgml(8_000)
    t_small = t_large = math.inf
    for _ in range(5):
        t_small = min(t_small, _cpu_seconds(small))
        t_large = min(t_large, _cpu_seconds(large))
    assert t_large / t_small < 6, (t_small, t_large)
    assert t_large < 5


OFX_SEEDS = [GOLDEN_BYTES[n] for n in GOLDEN_BYTES if n.startswith("ofx")] + [ofx_sgml(5)]
SNIPPETS = [
    b"</NAME>",
    b"<MEMO>",
    b"<MEMO/>",
    b"  ",
    b"<!-- c -->",
    b"</STMTTRN>",
    b"<STMTTRN>",
    b"<PAYEE>",
    b"<STMTRS>",
    b"&amp;",
    b"\r\n",
]


def _ofx_outcome(data: bytes):
    try:
        return list(ofx.parse(data, "f.ofx"))
    except StatementError as exc:
        return exc.line


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_ofx_flat_transaction_reader_agrees_with_the_general_tokenizer(data) -> None:
    """The shortcut for leaf-only STMTTRN must accept and refuse exactly what the stack does."""
    raw = bytearray(data.draw(st.sampled_from(OFX_SEEDS)))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        at = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        if data.draw(st.booleans()):
            raw[at:at] = data.draw(st.sampled_from(SNIPPETS))
        else:
            raw[at] = data.draw(st.sampled_from(list(b"<>/ \n\rABTX019.&")))
    with_shortcut = _ofx_outcome(bytes(raw))
    with mock.patch.object(ofx, "_flat_transaction", lambda *args: None):
        without = _ofx_outcome(bytes(raw))
    assert with_shortcut == without
