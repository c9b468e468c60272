"""Our side of the UnionPay-style bank gateway: front transaction, notify, query, refund, bill."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import httpx

from clearing.config import Settings
from gateways import keys, options, signing
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
from gateways.unionpay import wire


def _status(orig_resp_code: str) -> GatewayStatus:
    if orig_resp_code == wire.SUCCESS:
        return GatewayStatus.SUCCEEDED
    if orig_resp_code in wire.PROCESSING:
        return GatewayStatus.PENDING
    if orig_resp_code == wire.CLOSED:
        return GatewayStatus.CLOSED
    return GatewayStatus.FAILED


class UnionPayGateway:
    """UnionPay online banking payment (网关支付, bizType 000201, channelType 07)."""

    name = "unionpay"
    channel = Channel.BANK

    def __init__(
        self,
        *,
        base_url: str,
        mer_id: str,
        merchant_key: signing.PrivateKey,
        gateway_public_key: signing.PublicKey,
        http: httpx.Client,
        clock: Callable[[], datetime] = options.utc_now,
        merchant_cert_id: str = "",
        gateway_cert_id: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.mer_id = mer_id
        self._cert_id = merchant_cert_id or wire.cert_id(merchant_key.public_key())
        self._gateway_cert_id = gateway_cert_id or wire.cert_id(gateway_public_key)
        self._key = merchant_key
        self._gateway_key = gateway_public_key
        self._http = http
        self._clock = clock

    @classmethod
    def from_settings(
        cls, settings: Settings, *, http: httpx.Client, clock: Callable[[], datetime] | None = None
    ) -> UnionPayGateway:
        return cls(
            base_url=options.base_url(settings, cls.name),
            mer_id=options.option(settings, cls.name, "merchant_id"),
            merchant_key=keys.private_key(settings, cls.name, "merchant"),
            gateway_public_key=keys.public_key(settings, cls.name, "gateway"),
            http=http,
            clock=clock or options.utc_now,
            merchant_cert_id=options.option(settings, cls.name, "merchant_cert_id"),
            gateway_cert_id=options.option(settings, cls.name, "gateway_cert_id"),
        )

    def start(self, request: PaymentRequest) -> Redirect:
        fields = self._common(wire.TXN_PAYMENT, "01", "000201") | {
            "orderId": request.order_id,
            "txnAmt": str(request.amount_fen),
            "currencyCode": wire.CURRENCY_CNY,
            "backUrl": request.notify_url,
            "frontUrl": request.return_url,
            "payTimeout": wire.txn_time(request.expires_at),
        }
        signed = wire.sign_fields(fields, self._key, self._cert_id)
        return Redirect("POST", self.base_url + wire.FRONT_PATH, signed)

    def parse_notify(self, raw: RawRequest) -> PaymentResult:
        fields = self._verified(raw.body, "notify")
        try:
            return PaymentResult(
                gateway=self.name,
                order_id=fields["orderId"],
                status=_status(fields["respCode"]),
                amount_fen=wire.fen(fields["txnAmt"]),
                gateway_txn_id=fields["queryId"],
                paid_at=wire.parse_txn_time(fields["txnTime"]),
                event_id=fields["queryId"],
            )
        except (KeyError, ValueError) as exc:
            raise VerificationError(f"malformed unionpay notify: {exc}") from exc

    def ack(self, accepted: bool) -> NotifyAck:
        if accepted:
            return NotifyAck(200, b"ok", "text/plain")
        return NotifyAck(500, b"fail", "text/plain")

    def query(self, order_id: str) -> PaymentResult:
        fields = self._common(wire.TXN_QUERY, "00", "000000") | {"orderId": order_id}
        answer = self._post(wire.QUERY_PATH, fields)
        if answer.get("respCode") == wire.NOT_FOUND:
            return PaymentResult(self.name, order_id, GatewayStatus.NOT_FOUND)
        if answer.get("respCode") != wire.SUCCESS:
            raise GatewayUnavailable(
                f"unionpay query answered {answer.get('respCode')}: {answer.get('respMsg')}"
            )
        try:
            return self._query_result(order_id, answer)
        except (KeyError, ValueError) as exc:
            raise VerificationError(f"malformed unionpay query answer: {exc}") from exc

    def _query_result(self, order_id: str, answer: dict[str, str]) -> PaymentResult:
        status = _status(answer.get("origRespCode", ""))
        paid = answer.get("txnTime") if status is GatewayStatus.SUCCEEDED else None
        return PaymentResult(
            gateway=self.name,
            order_id=order_id,
            status=status,
            amount_fen=wire.fen(answer["txnAmt"]),
            gateway_txn_id=answer.get("queryId") or None,
            paid_at=wire.parse_txn_time(paid) if paid else None,
        )

    def refund(self, request: RefundRequest) -> RefundResult:
        original = request.gateway_txn_id or self.query(request.order_id).gateway_txn_id
        if not original:
            return RefundResult(request.refund_id, RefundStatus.FAILED, request.amount_fen)
        fields = self._common(wire.TXN_REFUND, "00", "000201") | {
            "orderId": request.refund_id,
            "origQryId": original,
            "txnAmt": str(request.amount_fen),
            "currencyCode": wire.CURRENCY_CNY,
        }
        answer = self._post(wire.BACK_PATH, fields)
        if answer.get("respCode") != wire.SUCCESS:
            return RefundResult(request.refund_id, RefundStatus.FAILED, request.amount_fen)
        return RefundResult(
            request.refund_id,
            RefundStatus.SUCCEEDED,
            wire.fen(answer["txnAmt"]),
            answer.get("queryId"),
        )

    def fetch_bill(self, business_date: date) -> BillFile:
        day = f"{business_date:%Y%m%d}"
        url = self.base_url + wire.BILL_PATH.format(day=day)
        response = send(self._http, "GET", url, params={"merId": self.mer_id})
        if response.status_code != 200:
            raise GatewayUnavailable(f"unionpay bill answered {response.status_code}")
        filename = f"unionpay_{self.mer_id}_{day}.txt"
        return BillFile(self.name, business_date, filename, response.content)

    # -- helpers ---------------------------------------------------------------------------

    def _common(self, txn_type: str, sub_type: str, biz_type: str) -> dict[str, str]:
        return {
            "version": wire.VERSION,
            "encoding": "UTF-8",
            "signMethod": "01",
            "txnType": txn_type,
            "txnSubType": sub_type,
            "bizType": biz_type,
            "channelType": "07",
            "accessType": "0",
            "merId": self.mer_id,
            "txnTime": wire.txn_time(self._clock()),
        }

    def _post(self, path: str, fields: dict[str, str]) -> dict[str, str]:
        signed = wire.sign_fields(fields, self._key, self._cert_id)
        response = send(self._http, "POST", self.base_url + path, data=signed)
        return self._verified(response.content, "answer")

    def _verified(self, body: bytes, what: str) -> dict[str, str]:
        try:
            fields = decode_form(body)
        except ValueError as exc:
            raise VerificationError(f"malformed unionpay {what}: {exc}") from exc
        if not wire.verify_fields(fields, self._gateway_key, self._gateway_cert_id):
            raise VerificationError(f"unionpay {what} signature or certId is missing or invalid")
        if fields.get("merId") != self.mer_id:
            raise VerificationError(f"unionpay {what} is for another merId")
        return fields
