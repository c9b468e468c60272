"""``feishui statement show``: normalised lines as CSV on stdout; bad files exit 2, one line."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest

from api.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "statements"
HEADER = (
    "source,line_no,external_id,order_id,amount,fee,fee_exact,currency,booked_on,"
    "value_on,kind,refund_id,reversal,reference"
)


def show(capsys, *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main(["statement", "show", *argv])
    out, err = capsys.readouterr()
    return status, out, err


def test_show_alipay_gbk_bill(capsys) -> None:
    status, out, err = show(capsys, str(FIXTURES / "alipay_2088102177846880_20261127.csv"))
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        HEADER,
        "alipay,6,2026112722001456781234567890,PA20261127000001,260.00,1.56,,CNY,2026-11-27,,"
        "payment,,false,交通罚款",
        "alipay,7,2026112722001456781234567891,PA20261127000002,80.00,0.48,,CNY,2026-11-27,,"
        "payment,,false,不动产登记费",
        "alipay,8,2026112722001456781234567890,PA20261127000001,-260.00,-1.56,,CNY,2026-11-27,,"
        "refund,RF20261127000001,false,交通罚款",
        "alipay,9,2026112722001456781234567892,PA20261127000003,120.50,0.72,,CNY,2026-11-28,,"
        "payment,,false,护照签发（普通）",
    ]


def test_show_wechat_fee_exact_column(capsys) -> None:
    status, out, _ = show(capsys, str(FIXTURES / "wechatpay_1900000109_20261127.csv"))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0
    assert [(r["fee"], r["fee_exact"]) for r in rows] == [
        ("0.72", "0.72000"),
        ("0.20", "0.19998"),
        ("0.02", "0.01500"),
        ("-0.72", "-0.72000"),
    ]


def test_show_camt_reversal_and_batch(capsys) -> None:
    status, out, _ = show(capsys, str(FIXTURES / "camt053_v02_20261127.xml"), "--format", "camt053")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0
    assert [(r["external_id"], r["amount"], r["kind"], r["reversal"]) for r in rows] == [
        ("C20261127000301", "4587.20", "settlement", "false"),
        ("C20261127000303-1", "200.00", "other", "false"),
        ("C20261127000303-2", "100.00", "other", "false"),
        ("FS20261127C", "50.00", "other", "false"),
        ("C20261127000304", "-4587.20", "other", "true"),
        ("C20261127000305", "-12.50", "other", "false"),
    ]
    assert rows[0]["value_on"] == "2026-11-27"


def test_show_ofx_with_reference_containing_spaces_and_ampersand(capsys) -> None:
    status, out, _ = show(capsys, str(FIXTURES / "ofx1_gbk_20261127.ofx"))
    rows = list(csv.DictReader(io.StringIO(out)))
    assert status == 0
    assert rows[2]["reference"] == "账户管理费 & 手续费 2026年11月"
    assert rows[2]["amount"] == "-12.50"


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        (
            "broken_alipay_amount_20261127.csv",
            "broken_alipay_amount_20261127.csv line 7: "
            "column 商家实收（元） is not an amount: '8o.00'",
        ),
        (
            "broken_unionpay_truncated_20261127.txt",
            "broken_unionpay_truncated_20261127.txt line 4: trailer record T is missing "
            "(truncated file?)",
        ),
        (
            "broken_camt053_xxe_20261127.xml",
            "broken_camt053_xxe_20261127.xml line 1: a DOCTYPE/DTD is not allowed in camt.053 "
            "(entities are refused)",
        ),
    ],
)
def test_broken_file_is_one_line_and_exit_2(capsys, name: str, detail: str) -> None:
    status, out, err = show(capsys, str(FIXTURES / name))
    assert status == 2
    assert out == ""  # nothing printed before the whole file was checked
    assert err == f"feishui: {detail}\n"


def test_unknown_format_and_missing_file(capsys, tmp_path: Path) -> None:
    mystery = tmp_path / "mystery.dat"
    mystery.write_bytes(b"just,some,csv\n1,2,3\n")
    status, out, err = show(capsys, str(mystery))
    assert (status, out) == (2, "")
    assert err.startswith("feishui: mystery.dat: unknown statement format")
    status, _, err = show(capsys, str(tmp_path / "absent.csv"))
    assert status == 2
    assert err == "feishui: absent.csv: cannot read the file: No such file or directory\n"


def test_forced_wrong_format(capsys) -> None:
    status, _, err = show(
        capsys, str(FIXTURES / "unionpay_898510148990001_20261127.txt"), "--format", "alipay"
    )
    assert status == 2
    assert err.startswith("feishui: unionpay_898510148990001_20261127.txt line ")
    assert "header lacks column 支付宝交易号" in err
