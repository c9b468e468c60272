"""The one contract every payment gateway adapter fulfils, and our own types for it.

Adapters translate between these types and a gateway's wire format; they never return the wire's
types. Amounts are integer fen. Times are aware datetimes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from clearing.errors import FeishuiError


class Channel(StrEnum):
    WALLET = "wallet"
    BANK = "bank"


class GatewayStatus(StrEnum):
    """What a gateway says about an order."""

    SUCCEEDED = "succeeded"  # money collected
    PENDING = "pending"  # the payer has not finished (or the gateway is still processing)
    FAILED = "failed"  # declined
    CLOSED = "closed"  # abandoned / expired at the gateway, nothing collected
    NOT_FOUND = "not_found"  # the gateway has never seen the order


class RefundStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    FAILED = "failed"


class VerificationError(FeishuiError):
    """A notify that is forged, tampered, replayed, stale or malformed. Nothing may change."""

    type = "notify-verification-failed"
    status = 400


class GatewayUnavailable(FeishuiError):
    """The gateway did not answer in time or answered with a server error."""

    type = "gateway-unavailable"
    status = 503


@dataclass(frozen=True, slots=True)
class PaymentRequest:
    order_id: str
    """Our id for the attempt (the gateway's out_trade_no / orderId); unique, <= 32 chars."""
    amount_fen: int
    subject: str
    notify_url: str
    return_url: str
    expires_at: datetime
    currency: str = "CNY"


@dataclass(frozen=True, slots=True)
class Redirect:
    """Where to send the browser: an auto-submitted form (POST) or a plain link (GET)."""

    method: str
    url: str
    fields: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RawRequest:
    """An incoming HTTP request exactly as received (signatures are over the raw bytes)."""

    method: str
    headers: Mapping[str, str]
    """Header names lower-cased."""
    body: bytes
    query: str = ""


@dataclass(frozen=True, slots=True)
class PaymentResult:
    """A verified statement from the gateway about one order (from a notify or a query)."""

    gateway: str
    order_id: str
    status: GatewayStatus
    amount_fen: int | None = None
    gateway_txn_id: str | None = None
    paid_at: datetime | None = None
    event_id: str | None = None
    """The notify's own id (notify_id, nonce, ...) for logging and replay detection."""


@dataclass(frozen=True, slots=True)
class NotifyAck:
    """The HTTP answer the gateway expects to a notify."""

    status_code: int
    body: bytes
    media_type: str


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_id: str
    """Our refund id; also the idempotency key at the gateway (out_request_no / out_refund_no)."""
    order_id: str
    amount_fen: int
    order_amount_fen: int
    reason: str
    gateway_txn_id: str | None = None


@dataclass(frozen=True, slots=True)
class RefundResult:
    refund_id: str
    status: RefundStatus
    amount_fen: int
    gateway_refund_id: str | None = None


@dataclass(frozen=True, slots=True)
class BillFile:
    """A gateway's daily settlement bill, as the raw bytes the gateway delivered."""

    gateway: str
    business_date: date
    filename: str
    content: bytes


class NonceStore(Protocol):
    """Remembers notify ids / nonces seen, to refuse replays."""

    def seen_before(self, gateway: str, nonce: str) -> bool:
        """Record ``nonce``; True if it had been recorded already."""
        ...


@runtime_checkable
class PaymentGateway(Protocol):
    """One payment gateway: a bank or a wallet. Implementations live in ``gateways/<name>/``."""

    name: str
    channel: Channel

    def start(self, request: PaymentRequest) -> Redirect:
        """Create the payment at the gateway (if its protocol needs it) and say where to go."""
        ...

    def parse_notify(self, raw: RawRequest) -> PaymentResult:
        """Verify and decode an async notify; raise VerificationError for anything not genuine."""
        ...

    def ack(self, accepted: bool) -> NotifyAck:
        """The answer the gateway expects: success stops its retries, failure makes it retry."""
        ...

    def query(self, order_id: str) -> PaymentResult:
        """Ask the gateway what happened to an order (used when a notify is late or lost)."""
        ...

    def refund(self, request: RefundRequest) -> RefundResult:
        """Refund (idempotent at the gateway by ``refund_id``)."""
        ...

    def fetch_bill(self, business_date: date) -> BillFile:
        """Download the daily bill for a business date (Asia/Shanghai)."""
        ...
