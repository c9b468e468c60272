"""Each simulator's daily bill, fetched by its adapter, reads cleanly with the reconciliation
parser for its format: amounts, fees, refund ids and the footer/trailer checks all agree."""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pytest

from gateways.protocol import RefundRequest
from reconciliation.lines import LineKind
from reconciliation.parsers import parse
from tests.e2e.gateway_harness import make_harness


@pytest.mark.parametrize("name", ["alipay", "wechatpay", "unionpay"])
def test_bill_reads_back_with_the_parser(
    name: str, tmp_path: Path, gateway_pems: dict[str, dict[str, bytes]]
) -> None:
    h = make_harness(name, tmp_path, gateway_pems)
    h.pay("P1", 26000)
    h.pay("P2", 8888)
    h.clock.advance(3600)
    h.adapter.refund(RefundRequest("R1", "P1", 26000, 26000, "退费"))
    h.adapter.refund(RefundRequest("R2", "P2", 1000, 8888, "部分退费"))
    bill = h.adapter.fetch_bill(date(2026, 11, 27))

    lines = list(parse(bill.content, filename=bill.filename))

    seen = {(line.kind, line.order_id, line.amount_fen, line.refund_id) for line in lines}
    assert seen == {
        (LineKind.PAYMENT, "P1", 26000, None),
        (LineKind.PAYMENT, "P2", 8888, None),
        (LineKind.REFUND, "P1", -26000, "R1"),
        (LineKind.REFUND, "P2", -1000, "R2"),
    }
    fees = {(line.order_id, line.kind): line.fee_fen for line in lines}
    assert fees[("P1", LineKind.PAYMENT)] == -fees[("P1", LineKind.REFUND)] > 0
    assert {line.booked_on for line in lines} == {date(2026, 11, 27)}
    assert {line.external_id for line in lines if line.kind is LineKind.PAYMENT} == {
        h.sim.book.get("P1").trade_no,
        h.sim.book.get("P2").trade_no,
    }
