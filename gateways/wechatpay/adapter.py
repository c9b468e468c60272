"""Our side of the WeChat Pay API v3-style gateway: native pay, notify, query, refund, bill."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import date, datetime
from typing import Any
from urllib.parse import quote

import httpx
from cryptography.exceptions import InvalidTag

from clearing.config import Settings
from gateways import keys, options, signing
from gateways.protocol import (
    BillFile,
    Channel,
    GatewayStatus,
    GatewayUnavailable,
    NonceStore,
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
from gateways.wechatpay import wire

TOLERANCE_SECONDS = 300
"""A notify whose timestamp is further than this from our clock is refused (replay window)."""

STATUSES = {
    wire.SUCCESS: GatewayStatus.SUCCEEDED,
    wire.REFUND: GatewayStatus.SUCCEEDED,  # paid, then (partly) refunded
    wire.NOTPAY: GatewayStatus.PENDING,
    wire.USERPAYING: GatewayStatus.PENDING,
    wire.CLOSED: GatewayStatus.CLOSED,
    wire.REVOKED: GatewayStatus.CLOSED,
    wire.PAYERROR: GatewayStatus.FAILED,
}
REFUND_STATUSES = {
    "SUCCESS": RefundStatus.SUCCEEDED,
    "PROCESSING": RefundStatus.PENDING,
    "ABNORMAL": RefundStatus.FAILED,
    "CLOSED": RefundStatus.FAILED,
}


class WechatPayGateway:
    """WeChat Pay API v3: JSON over HTTPS, requests and answers signed with RSA keys."""

    name = "wechatpay"
    channel = Channel.WALLET

    def __init__(
        self,
        *,
        base_url: str,
        mchid: str,
        appid: str,
        merchant_key: signing.PrivateKey,
        gateway_public_key: signing.PublicKey,
        api_v3_key: bytes,
        http: httpx.Client,
        nonce_store: NonceStore,
        clock: Callable[[], datetime] = options.utc_now,
        merchant_serial: str = "",
        gateway_serial: str = "",
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.mchid = mchid
        self.appid = appid
        self._key = merchant_key
        self._serial = merchant_serial or signing.key_serial(merchant_key.public_key())
        self._gateway_key = gateway_public_key
        self._gateway_serial = gateway_serial or signing.key_serial(gateway_public_key)
        self._api_v3_key = api_v3_key
        self._http = http
        self._nonces = nonce_store
        self._clock = clock

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        http: httpx.Client,
        nonce_store: NonceStore,
        clock: Callable[[], datetime] | None = None,
    ) -> WechatPayGateway:
        return cls(
            base_url=options.base_url(settings, cls.name),
            mchid=options.option(settings, cls.name, "merchant_id"),
            appid=options.option(settings, cls.name, "appid"),
            merchant_key=keys.private_key(settings, cls.name, "merchant"),
            gateway_public_key=keys.public_key(settings, cls.name, "gateway"),
            api_v3_key=keys.api_v3_key(settings),
            http=http,
            nonce_store=nonce_store,
            clock=clock or options.utc_now,
            merchant_serial=options.option(settings, cls.name, "merchant_serial"),
            gateway_serial=options.option(settings, cls.name, "gateway_serial"),
        )

    def start(self, request: PaymentRequest) -> Redirect:
        """Create a native order; send the browser to ``code_url`` (with ``redirect_url``).

        A real gateway's ``code_url`` is ``weixin://...``, to be shown as a QR code; the
        simulator's is its checkout page.
        """
        body = {
            "appid": self.appid,
            "mchid": self.mchid,
            "description": request.subject,
            "out_trade_no": request.order_id,
            "time_expire": wire.rfc3339(request.expires_at),
            "notify_url": request.notify_url,
            "amount": {"total": request.amount_fen, "currency": request.currency},
        }
        status, answer = self._call("POST", wire.NATIVE_PATH, body)
        if status != 200:
            raise GatewayUnavailable(f"wechatpay native order answered {status}: {answer}")
        code_url = answer["code_url"]
        if code_url.startswith("http"):
            code_url += (
                ("&" if "?" in code_url else "?")
                + "redirect_url="
                + quote(request.return_url, safe="")
            )
        return Redirect("GET", code_url)

    def parse_notify(self, raw: RawRequest) -> PaymentResult:
        headers = {k.lower(): v for k, v in raw.headers.items()}
        self._check_fresh(headers)
        if headers.get(wire.SERIAL) != self._gateway_serial:
            raise VerificationError("wechatpay notify is signed with an unknown key serial")
        if not wire.verify_headers(self._gateway_key, headers, raw.body):
            raise VerificationError("wechatpay notify signature is missing or invalid")
        if self._nonces.seen_before(self.name, headers[wire.NONCE]):
            raise VerificationError("wechatpay notify nonce was seen before (replay)")
        return self._notify_result(raw.body)

    def _check_fresh(self, headers: dict[str, str]) -> None:
        try:
            sent = int(headers.get(wire.TIMESTAMP, ""))
        except ValueError as exc:
            raise VerificationError("wechatpay notify has no valid timestamp") from exc
        if abs(self._clock().timestamp() - sent) > TOLERANCE_SECONDS:
            raise VerificationError("wechatpay notify timestamp is more than 5 minutes off")
        if not headers.get(wire.NONCE):
            raise VerificationError("wechatpay notify has no nonce")

    def _notify_result(self, body: bytes) -> PaymentResult:
        try:
            event = json.loads(body)
            transaction = json.loads(wire.decrypt(self._api_v3_key, event["resource"]))
        except InvalidTag as exc:
            raise VerificationError("wechatpay notify resource does not decrypt") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationError(f"malformed wechatpay notify: {exc}") from exc
        if transaction.get("mchid") != self.mchid:
            raise VerificationError("wechatpay notify is for another mchid")
        try:
            return self._result(transaction, event_id=event["id"])
        except (ValueError, KeyError, TypeError) as exc:
            raise VerificationError(f"malformed wechatpay transaction: {exc}") from exc

    def _result(self, transaction: dict[str, Any], event_id: str | None = None) -> PaymentResult:
        total = transaction["amount"]["total"]
        if not isinstance(total, int) or isinstance(total, bool):
            raise ValueError("amount.total must be an integer of fen")
        paid = transaction.get("success_time")
        return PaymentResult(
            gateway=self.name,
            order_id=transaction["out_trade_no"],
            status=STATUSES[transaction["trade_state"]],
            amount_fen=total,
            gateway_txn_id=transaction.get("transaction_id"),
            paid_at=datetime.fromisoformat(paid) if paid else None,
            event_id=event_id,
        )

    def ack(self, accepted: bool) -> NotifyAck:
        if accepted:
            return NotifyAck(204, b"", "application/json")
        body = json.dumps({"code": "FAIL", "message": "not accepted"}).encode()
        return NotifyAck(500, body, "application/json")

    def query(self, order_id: str) -> PaymentResult:
        path = wire.QUERY_PATH.format(out_trade_no=quote(order_id, safe=""))
        status, answer = self._call("GET", f"{path}?mchid={self.mchid}")
        if status == 404 and answer.get("code") == "ORDER_NOT_EXIST":
            return PaymentResult(self.name, order_id, GatewayStatus.NOT_FOUND)
        if status != 200:
            raise GatewayUnavailable(f"wechatpay query answered {status}: {answer}")
        try:
            return self._result(answer)
        except (KeyError, ValueError, TypeError) as exc:
            raise VerificationError(f"malformed wechatpay query answer: {exc}") from exc

    def refund(self, request: RefundRequest) -> RefundResult:
        body = {
            "out_trade_no": request.order_id,
            "out_refund_no": request.refund_id,
            "reason": request.reason,
            "amount": {
                "refund": request.amount_fen,
                "total": request.order_amount_fen,
                "currency": "CNY",
            },
        }
        if request.gateway_txn_id:
            body["transaction_id"] = request.gateway_txn_id
        status, answer = self._call("POST", wire.REFUND_PATH, body)
        if 400 <= status < 500:
            return RefundResult(request.refund_id, RefundStatus.FAILED, request.amount_fen)
        return RefundResult(
            request.refund_id,
            REFUND_STATUSES.get(answer.get("status", ""), RefundStatus.PENDING),
            int(answer["amount"]["refund"]),
            answer.get("refund_id"),
        )

    def fetch_bill(self, business_date: date) -> BillFile:
        status, answer = self._call("GET", f"{wire.BILL_PATH}?bill_date={business_date}")
        if status != 200:
            raise GatewayUnavailable(f"wechatpay bill answered {status}: {answer}")
        download = self._signed_get(answer["download_url"])
        if hashlib.sha1(download.content).hexdigest() != answer.get("hash_value"):  # noqa: S324
            raise VerificationError("wechatpay bill does not match its SHA1 hash_value")
        filename = f"wechatpay_{self.mchid}_{business_date:%Y%m%d}.csv"
        return BillFile(self.name, business_date, filename, download.content)

    # -- helpers ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, Any]]:
        """A signed request; the answer's signature is checked before its JSON is read."""
        text = "" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":"))
        url = httpx.URL(self.base_url + path)
        signed_path = url.raw_path.decode("ascii")  # the full path: base URLs may have one
        response = send(
            self._http,
            method,
            url,
            content=text.encode(),
            headers=self._headers(method, signed_path, text),
        )
        self._verify_answer(response)
        return response.status_code, (response.json() if response.content else {})

    def _signed_get(self, url: str) -> httpx.Response:
        path = httpx.URL(url).raw_path.decode("ascii")
        response = send(self._http, "GET", url, headers=self._headers("GET", path, ""))
        if response.status_code != 200:
            raise GatewayUnavailable(f"wechatpay bill download answered {response.status_code}")
        return response

    def _headers(self, method: str, path: str, body: str) -> dict[str, str]:
        timestamp = str(int(self._clock().timestamp()))
        auth = wire.authorization(
            self.mchid, self._serial, self._key, method, path, body, timestamp
        )
        return {
            "Authorization": auth,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }

    def _verify_answer(self, response: httpx.Response) -> None:
        headers = {k.lower(): v for k, v in response.headers.items()}
        if headers.get(wire.SERIAL) != self._gateway_serial or not wire.verify_headers(
            self._gateway_key, headers, response.content
        ):
            raise VerificationError(
                f"wechatpay answer ({response.status_code}) is not signed by the gateway"
            )
