"""The conformance suite every adapter passes against its simulator.

A gateway's test module subclasses :class:`GatewayConformance`, names the gateway and says how to
forge, tamper with and strip the signature of one of its notifies.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gateways.protocol import (
    GatewayStatus,
    PaymentGateway,
    RawRequest,
    RefundRequest,
    RefundStatus,
    VerificationError,
)
from tests.e2e.gateway_harness import Harness, make_harness


class GatewayConformance:
    name = ""
    success_codes: tuple[int, ...] = (200,)

    # -- per gateway -----------------------------------------------------------------------

    def forge(self, h: Harness, raw: RawRequest) -> RawRequest:
        """The notify signed with a key that is not the gateway's."""
        raise NotImplementedError

    def tamper_amount(self, h: Harness, raw: RawRequest) -> RawRequest:
        """The notify with its amount changed after signing."""
        raise NotImplementedError

    def strip_signature(self, h: Harness, raw: RawRequest) -> RawRequest:
        raise NotImplementedError

    def tamper_start(self, h: Harness) -> int:
        """Send a start request whose amount was changed after signing; the HTTP status."""
        raise NotImplementedError

    # -- fixtures --------------------------------------------------------------------------

    @pytest.fixture
    def h(self, tmp_path: Path, gateway_pems: dict[str, dict[str, bytes]]) -> Harness:
        return make_harness(self.name, tmp_path, gateway_pems)

    def paid_notify(self, h: Harness, order_id: str = "P0001") -> RawRequest:
        h.pay(order_id)
        assert len(h.receiver.raw) == 1
        return h.receiver.raw[0]

    # -- the tests -------------------------------------------------------------------------

    def test_adapter_fulfils_the_protocol(self, h: Harness) -> None:
        assert isinstance(h.adapter, PaymentGateway)
        assert h.adapter.name == self.name

    def test_simulator_accepts_the_signed_start_and_shows_checkout(self, h: Harness) -> None:
        page = h.checkout("P0001", 8888)
        assert "P0001" in page and "88.88" in page
        for action in ("pay", "pay_lose_notify", "decline", "abandon"):
            assert f'name="action" value="{action}"' in page
        assert h.adapter.query("P0001").status is GatewayStatus.PENDING

    def test_simulator_rejects_a_tampered_start(self, h: Harness) -> None:
        assert self.tamper_start(h) in (400, 401)
        assert h.sim.book.get("P0001") is None

    def test_pay_sends_a_notify_the_adapter_verifies(self, h: Harness) -> None:
        h.pay("P0001", 8888)
        assert len(h.receiver.raw) == 1
        [result] = h.receiver.results
        assert result.gateway == self.name
        assert result.order_id == "P0001"
        assert result.status is GatewayStatus.SUCCEEDED
        assert result.amount_fen == 8888
        assert result.gateway_txn_id == h.sim.book.get("P0001").trade_no
        assert result.paid_at == h.clock()
        assert result.event_id
        assert h.sim.book.deliveries("P0001") == [self.success_codes[0]]

    def test_query_agrees_with_the_notify(self, h: Harness) -> None:
        h.pay("P0001")
        queried = h.adapter.query("P0001")
        [notified] = h.receiver.results
        assert queried.status is GatewayStatus.SUCCEEDED
        assert (queried.amount_fen, queried.gateway_txn_id) == (8888, notified.gateway_txn_id)

    def test_lost_notify_is_found_by_query(self, h: Harness) -> None:
        h.pay("P0001", action="pay_lose_notify")
        assert h.receiver.raw == []
        result = h.adapter.query("P0001")
        assert result.status is GatewayStatus.SUCCEEDED
        assert result.amount_fen == 8888

    def test_decline_is_failed(self, h: Harness) -> None:
        h.pay("P0001", action="decline")
        assert h.receiver.raw == []
        assert h.adapter.query("P0001").status is GatewayStatus.FAILED

    def test_abandon_is_closed(self, h: Harness) -> None:
        h.pay("P0001", action="abandon")
        assert h.receiver.raw == []
        assert h.adapter.query("P0001").status is GatewayStatus.CLOSED

    def test_unknown_order_is_not_found(self, h: Harness) -> None:
        assert h.adapter.query("NEVER-SEEN").status is GatewayStatus.NOT_FOUND

    def test_a_finished_order_cannot_be_paid_again(self, h: Harness) -> None:
        h.pay("P0001")
        assert h.act("P0001", "pay").status_code == 409
        assert len(h.receiver.raw) == 1

    def test_forged_signature_is_refused(self, h: Harness) -> None:
        raw = self.paid_notify(h)
        with pytest.raises(VerificationError):
            h.adapter.parse_notify(self.forge(h, raw))

    def test_tampered_amount_is_refused(self, h: Harness) -> None:
        raw = self.paid_notify(h)
        with pytest.raises(VerificationError):
            h.adapter.parse_notify(self.tamper_amount(h, raw))

    def test_missing_signature_is_refused(self, h: Harness) -> None:
        raw = self.paid_notify(h)
        with pytest.raises(VerificationError):
            h.adapter.parse_notify(self.strip_signature(h, raw))

    def test_garbage_is_refused(self, h: Harness) -> None:
        with pytest.raises(VerificationError):
            h.adapter.parse_notify(RawRequest("POST", {}, b"\xff\xfe not a notify"))

    def test_failed_acks_are_retried_until_accepted(
        self, tmp_path: Path, gateway_pems: dict[str, dict[str, bytes]]
    ) -> None:
        h = make_harness(self.name, tmp_path, gateway_pems, fail_first=2)
        h.pay("P0001")
        assert len(h.receiver.raw) == 3
        codes = h.sim.book.deliveries("P0001")
        assert len(codes) == 3 and codes[2] in self.success_codes
        [result] = h.receiver.results
        assert result.status is GatewayStatus.SUCCEEDED

    def test_retries_run_in_the_background(
        self, tmp_path: Path, gateway_pems: dict[str, dict[str, bytes]]
    ) -> None:
        h = make_harness(
            self.name,
            tmp_path,
            gateway_pems,
            inline=False,
            retry_delays=(0.01, 0.02, 0.05),
            fail_first=2,
        )
        h.pay("P0001")
        assert h.sim.notifier.wait_idle(timeout=10)
        assert len(h.receiver.raw) == 3
        assert len(h.receiver.results) == 1

    def test_retries_stop_after_the_schedule(
        self, tmp_path: Path, gateway_pems: dict[str, dict[str, bytes]]
    ) -> None:
        h = make_harness(self.name, tmp_path, gateway_pems, retry_delays=(0, 0), fail_first=99)
        h.pay("P0001")
        assert len(h.receiver.raw) == 3  # the first attempt and two retries

    def test_renotify_on_demand(self, h: Harness) -> None:
        h.pay("P0001")
        response = h.client.post(f"{h.base}/_sim/renotify/P0001")
        assert response.status_code == 202
        assert len(h.receiver.raw) == 2
        assert h.client.post(f"{h.base}/_sim/renotify/NEVER").status_code == 409

    def test_refund_is_idempotent_by_refund_id(self, h: Harness) -> None:
        h.pay("P0001", 8888)
        txn = h.sim.book.get("P0001").trade_no
        request = RefundRequest("R0001", "P0001", 1000, 8888, "多缴", gateway_txn_id=txn)
        first = h.adapter.refund(request)
        again = h.adapter.refund(request)
        assert first.status is RefundStatus.SUCCEEDED and first.amount_fen == 1000
        assert again == first
        assert h.sim.book.refunded_fen("P0001") == 1000

    def test_refunds_are_capped_at_the_order_amount(self, h: Harness) -> None:
        h.pay("P0001", 8888)
        txn = h.sim.book.get("P0001").trade_no
        ok = h.adapter.refund(RefundRequest("R0001", "P0001", 8000, 8888, "r", txn))
        over = h.adapter.refund(RefundRequest("R0002", "P0001", 889, 8888, "r", txn))
        rest = h.adapter.refund(RefundRequest("R0003", "P0001", 888, 8888, "r", txn))
        assert ok.status is RefundStatus.SUCCEEDED
        assert over.status is RefundStatus.FAILED
        assert rest.status is RefundStatus.SUCCEEDED
        assert h.sim.book.refunded_fen("P0001") == 8888
        assert h.adapter.query("P0001").status is GatewayStatus.SUCCEEDED

    def test_refund_of_an_unpaid_order_fails(self, h: Harness) -> None:
        h.checkout("P0001")
        result = h.adapter.refund(RefundRequest("R0001", "P0001", 100, 8888, "r", "NOPE"))
        assert result.status is RefundStatus.FAILED

    def test_bill_of_a_quiet_day_is_well_formed(self, h: Harness) -> None:
        bill = h.adapter.fetch_bill(h.clock().date())
        assert bill.gateway == self.name
        assert bill.filename.startswith(f"{self.name}_") and "20261127" in bill.filename
        assert bill.content
