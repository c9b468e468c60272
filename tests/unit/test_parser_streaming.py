"""The bill parsers stream: chunked decoding reads lines exactly as whole-file decoding did, the
bulk path (``parse_rows``) gives the same lines as ``parse``, and memory does not grow with the
file."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciliation.lines import StatementLine, line_row
from reconciliation.parsers import StatementError, _common, detect_format, parse, parse_rows
from reconciliation.parsers._common import bill_lines, strict_lines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "statements"
BILLS = sorted(
    p.name
    for p in FIXTURES.iterdir()
    if p.name.startswith(("alipay", "wechatpay", "unionpay", "broken_alipay", "broken_wechat"))
    or p.name.startswith("broken_unionpay")
)


def whole_file_lines(text: str) -> list[str]:
    """What the parsers read before they streamed: the whole text split at ``\\n``."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


PIECES = st.sampled_from(["a", "|", "\n", "\r", "\r\n", "中", "文,", " ", "\t", "€"])


@given(st.lists(PIECES, max_size=60), st.integers(1, 9))
def test_chunked_lines_equal_whole_file_lines(pieces, chunk):
    text = "".join(pieces)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_common, "CHUNK", chunk)
        for encoding in ("utf-8", "gb18030"):
            data = text.encode(encoding)
            got = list(strict_lines(data, encoding, "x", encoding))
            assert got == whole_file_lines(text)


@given(st.lists(PIECES, max_size=40), st.integers(1, 9), st.integers(0, 200))
def test_a_bad_byte_is_reported_on_its_line_whatever_the_chunks(pieces, chunk, at):
    text = "".join(pieces)
    data = text.encode("utf-8")
    at = min(at, len(data))
    data = data[:at] + b"\xff" + data[at:]
    expected_line = data.count(b"\n", 0, at) + 1
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(_common, "CHUNK", chunk)
        with pytest.raises(StatementError) as info:
            list(strict_lines(data, "utf-8", "x", "UTF-8"))
    assert info.value.line == expected_line
    assert "for the UTF-8 encoding" in info.value.problem


def test_a_gbk_bill_is_read_as_gb18030_and_a_utf8_bill_as_utf8():
    gbk = "#支付宝\n交易号,金额\n1,2.00\n".encode("gbk")
    assert list(bill_lines(gbk, "x")) == ["#支付宝", "交易号,金额", "1,2.00"]
    assert list(bill_lines(gbk.decode("gbk").encode("utf-8"), "x")) == list(bill_lines(gbk, "x"))


@pytest.mark.parametrize("name", BILLS)
def test_parse_rows_gives_the_lines_of_parse(name):
    data = (FIXTURES / name).read_bytes()
    fmt = detect_format(data, name)
    try:
        want = [line_row(line) for line in parse(data, filename=name)]
    except StatementError as exc:
        with pytest.raises(StatementError) as info:
            list(parse_rows(data, format=fmt, filename=name))
        assert info.value.detail == exc.detail
        return
    rows = list(parse_rows(data, format=fmt, filename=name))
    assert rows == want
    assert [StatementLine(*row) for row in rows] == list(parse(data, filename=name))


def unionpay_bill(n: int) -> bytes:
    details = "".join(f"D|PK{i:010d}|Q{i:012d}|20261127100000|01|1000|3|997|00\n" for i in range(n))
    return (
        f"H|898510148990001|20261127|{n}\n{details}T|{n}|{n * 1000}|{n * 3}|{n * 997}\n"
    ).encode()


def test_parsing_a_large_bill_does_not_hold_it_as_text():
    data = unionpay_bill(200_000)  # about 10 MB
    tracemalloc.start()
    try:
        count = sum(1 for _ in parse_rows(data, format="unionpay"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count == 200_000
    assert peak < len(data) // 2, peak  # a decoded copy or a list of lines would exceed it
