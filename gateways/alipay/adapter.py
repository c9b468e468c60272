"""Our side of the Alipay-style gateway: page pay, notify, query, refund, daily bill."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import date, datetime
from typing import Any

import httpx

from clearing.config import Settings
from clearing.money import MoneyError, format_fen, parse_fen
from gateways import keys, options, signing
from gateways.alipay import wire
from gateways.formdata import decode_form
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
    VerificationError,
)
from gateways.transport import send

STATUSES = {
    wire.TRADE_SUCCESS: GatewayStatus.SUCCEEDED,
    wire.TRADE_FINISHED: GatewayStatus.SUCCEEDED,
    wire.WAIT_BUYER_PAY: GatewayStatus.PENDING,
    wire.TRADE_CLOSED: GatewayStatus.CLOSED,
    wire.TRADE_FAILED: GatewayStatus.FAILED,
}


class AlipayGateway:
    """Alipay open platform (RSA2): page pay, query, refund and bills at ``<base>/gateway.do``."""

    name = "alipay"
    channel = Channel.WALLET

    def __init__(
        self,
        *,
        base_url: str,
        app_id: str,
        merchant_key: signing.PrivateKey,
        gateway_public_key: signing.PublicKey,
        http: httpx.Client,
        clock: Callable[[], datetime] = options.utc_now,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.app_id = app_id
        self._key = merchant_key
        self._gateway_key = gateway_public_key
        self._http = http
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: Settings, *, http: httpx.Client, clock: Callable[[], datetime] | None = None
    ) -> AlipayGateway:
        return cls(
            base_url=options.base_url(settings, cls.name),
            app_id=options.option(settings, cls.name, "merchant_id"),
            merchant_key=keys.private_key(settings, cls.name, "merchant"),
            gateway_public_key=keys.public_key(settings, cls.name, "gateway"),
            http=http,
            clock=clock or options.utc_now,
        )

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/gateway.do"

    def start(self, request: PaymentRequest) -> Redirect:
        biz = {
            "out_trade_no": request.order_id,
            "total_amount": format_fen(request.amount_fen),
            "subject": request.subject,
            "product_code": "FAST_INSTANT_TRADE_PAY",
            "time_expire": wire.timestamp(request.expires_at),
        }
        params = self._common(wire.PAGE_PAY, biz)
        params |= {"notify_url": request.notify_url, "return_url": request.return_url}
        return Redirect("POST", self.endpoint, wire.sign_params(params, self._key))

    def parse_notify(self, raw: RawRequest) -> PaymentResult:
        params = self._verified_form(raw.body)
        try:
            amount = parse_fen(params["total_amount"], field="total_amount")
            paid_at = (
                wire.parse_timestamp(params["gmt_payment"]) if params.get("gmt_payment") else None
            )
            return PaymentResult(
                gateway=self.name,
                order_id=params["out_trade_no"],
                status=STATUSES[params["trade_status"]],
                amount_fen=amount,
                gateway_txn_id=params["trade_no"],
                paid_at=paid_at,
                event_id=params["notify_id"],
            )
        except (KeyError, ValueError, MoneyError) as exc:
            raise VerificationError(f"malformed alipay notify: {exc}") from exc

    def ack(self, accepted: bool) -> NotifyAck:
        return NotifyAck(200, b"success" if accepted else b"fail", "text/plain")

    def query(self, order_id: str) -> PaymentResult:
        answer = self._call(wire.QUERY, {"out_trade_no": order_id})
        if answer.get("sub_code") == wire.TRADE_NOT_EXIST:
            return PaymentResult(self.name, order_id, GatewayStatus.NOT_FOUND)
        self._expect_success(answer)
        try:
            return self._query_result(order_id, answer)
        except (KeyError, ValueError, MoneyError) as exc:
            raise VerificationError(f"malformed alipay query answer: {exc}") from exc

    def _query_result(self, order_id: str, answer: Mapping[str, Any]) -> PaymentResult:
        status = STATUSES[answer["trade_status"]]
        if status is GatewayStatus.CLOSED and answer.get("send_pay_date"):
            status = GatewayStatus.SUCCEEDED  # paid, then refunded in full: Alipay closes it
        paid = answer.get("send_pay_date")
        return PaymentResult(
            gateway=self.name,
            order_id=order_id,
            status=status,
            amount_fen=parse_fen(answer["total_amount"], field="total_amount"),
            gateway_txn_id=answer.get("trade_no"),
            paid_at=wire.parse_timestamp(paid) if paid else None,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        biz = {
            "out_trade_no": request.order_id,
            "out_request_no": request.refund_id,
            "refund_amount": format_fen(request.amount_fen),
            "refund_reason": request.reason,
        }
        answer = self._call(wire.REFUND, biz)
        if answer.get("code") == wire.BUSINESS_FAILED:
            return RefundResult(request.refund_id, RefundStatus.FAILED, request.amount_fen)
        self._expect_success(answer)
        amount = answer.get("send_back_fee") or format_fen(request.amount_fen)
        return RefundResult(
            request.refund_id,
            RefundStatus.SUCCEEDED,
            parse_fen(amount, field="send_back_fee"),
            answer.get("trade_no"),
        )

    def fetch_bill(self, business_date: date) -> BillFile:
        biz = {"bill_type": "trade", "bill_date": business_date.isoformat()}
        answer = self._call(wire.BILL_URL, biz)
        self._expect_success(answer)
        response = send(self._http, "GET", answer["bill_download_url"])
        if response.status_code != 200:
            raise GatewayUnavailable(f"alipay bill download answered {response.status_code}")
        filename = f"alipay_{self.app_id}_{business_date:%Y%m%d}.csv"
        return BillFile(self.name, business_date, filename, response.content)

    # -- helpers ---------------------------------------------------------------------------

    def _common(self, method: str, biz: Mapping[str, Any]) -> dict[str, str]:
        return {
            "app_id": self.app_id,
            "method": method,
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": wire.timestamp(self._clock()),
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }

    def _verified_form(self, body: bytes) -> dict[str, str]:
        try:
            params = decode_form(body)
        except ValueError as exc:
            raise VerificationError(f"malformed alipay notify: {exc}") from exc
        if not wire.verify_params(params, self._gateway_key):
            raise VerificationError("alipay notify signature is missing or invalid")
        if params.get("app_id") != self.app_id:
            raise VerificationError("alipay notify is for another app_id")
        return params

    def _call(self, method: str, biz: Mapping[str, Any]) -> dict[str, Any]:
        """Call an API method; return the verified response object."""
        params = wire.sign_params(self._common(method, biz), self._key)
        response = send(self._http, "POST", self.endpoint, data=params)
        body = response.content.decode("utf-8", errors="replace")
        text = wire.response_object_text(body, method)
        if text is None:
            raise GatewayUnavailable(
                f"alipay {method} answered {response.status_code}: no response"
            )
        try:
            sign = json.loads(body).get("sign")
        except ValueError as exc:
            raise VerificationError(f"alipay {method} answer is not JSON") from exc
        if not signing.verify(self._gateway_key, text.encode("utf-8"), sign):
            raise VerificationError(f"alipay {method} answer signature is missing or invalid")
        return json.loads(text)

    def _expect_success(self, answer: Mapping[str, Any]) -> None:
        if answer.get("code") != wire.SUCCESS_CODE:
            raise GatewayUnavailable(
                f"alipay answered {answer.get('code')} {answer.get('sub_code', '')}: "
                f"{answer.get('sub_msg') or answer.get('msg')}"
            )
