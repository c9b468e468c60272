"""An in-memory gateway for service-level tests of payments (no HTTP, no signatures).

The signed wire protocols are tested end to end against the simulators; this fake lets the
payment service's own rules (routing, capture, refunds) be tested quickly and deterministically.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from gateways.protocol import (
    BillFile,
    Channel,
    GatewayStatus,
    GatewayUnavailable,
    NotifyAck,
    PaymentRequest,
    PaymentResult,
    RawRequest,
    Redirect,
    RefundRequest,
    RefundResult,
    RefundStatus,
)


@dataclass
class FakeGateway:
    name: str = "alipay"
    channel: Channel = Channel.WALLET
    down: bool = False
    orders: dict[str, PaymentRequest] = field(default_factory=dict)
    paid: dict[str, datetime] = field(default_factory=dict)
    refunds: dict[str, RefundRequest] = field(default_factory=dict)
    refuse_refunds: bool = False

    def start(self, request: PaymentRequest) -> Redirect:
        if self.down:
            raise GatewayUnavailable(f"{self.name} is down")
        self.orders[request.order_id] = request
        return Redirect("GET", f"https://{self.name}.test/pay/{request.order_id}")

    def pay(self, order_id: str, at: datetime | None = None) -> PaymentResult:
        """The citizen pays; returns what a verified notify would say."""
        self.paid[order_id] = at or datetime.now(UTC)
        return self.query(order_id)

    def query(self, order_id: str) -> PaymentResult:
        request = self.orders.get(order_id)
        if request is None:
            return PaymentResult(self.name, order_id, GatewayStatus.NOT_FOUND)
        if order_id in self.paid:
            return PaymentResult(
                self.name,
                order_id,
                GatewayStatus.SUCCEEDED,
                request.amount_fen,
                f"T{order_id}",
                self.paid[order_id],
            )
        return PaymentResult(self.name, order_id, GatewayStatus.PENDING)

    def parse_notify(self, raw: RawRequest) -> PaymentResult:  # pragma: no cover - unused
        raise NotImplementedError

    def ack(self, accepted: bool) -> NotifyAck:
        return NotifyAck(
            200 if accepted else 400, b"success" if accepted else b"fail", "text/plain"
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        if self.refuse_refunds:
            return RefundResult(request.refund_id, RefundStatus.FAILED, request.amount_fen)
        self.refunds.setdefault(request.refund_id, request)
        return RefundResult(
            request.refund_id, RefundStatus.SUCCEEDED, request.amount_fen, f"G{request.refund_id}"
        )

    def fetch_bill(self, business_date: date) -> BillFile:  # pragma: no cover - unused
        raise NotImplementedError
