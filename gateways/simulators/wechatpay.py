"""The WeChat Pay API v3-style gateway's side: native orders, query, refunds, trade bills,
encrypted and signed notifies with retries, and the backtick CSV daily bill."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from clearing.config import Settings
from clearing.money import format_fen
from gateways import keys, options, signing
from gateways.simulators import common
from gateways.simulators.base import Simulator
from gateways.simulators.common import PAID, WAITING, Order, Refund, RefundRefused
from gateways.wechatpay import wire

BILL_COLUMNS = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注"
)
SUMMARY_COLUMNS = (
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
)
OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
REFUSALS = {
    "not_found": (404, "RESOURCE_NOT_EXISTS", "订单不存在"),
    "not_paid": (400, "INVALID_REQUEST", "订单未支付"),
    "exceeds": (400, "INVALID_REQUEST", "申请退款金额超过订单可退金额"),
    "mismatch": (400, "INVALID_REQUEST", "退款单号已用于其他订单"),
}


class WechatPaySimulator(Simulator):
    name = "wechatpay"
    title = "微信支付 (simulated)"
    # Real WeChat Pay: 15s/15s/30s/3m/10m/20m/30m/30m/30m/60m/3h/3h/3h/6h/6h.
    default_retry_delays = (15, 15, 30, 180, 600, 1200, 1800)
    bill_media_type = "text/csv; charset=utf-8"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.serial = options.option(settings, self.name, "gateway_serial") or signing.key_serial(
            self.key.public_key()
        )
        self.merchant_serial = options.option(
            settings, self.name, "merchant_serial"
        ) or signing.key_serial(self.merchant_public_key)
        self.api_v3_key = keys.api_v3_key(settings)
        self.appid = options.option(settings, self.name, "appid")

    def add_routes(self, app: FastAPI) -> None:
        @app.post(wire.NATIVE_PATH)
        async def native(request: Request) -> Response:
            body = await request.body()
            return self._authorized(request, body) or self._native(request, json.loads(body))

        @app.get(wire.QUERY_PATH)
        async def query(out_trade_no: str, request: Request) -> Response:
            return self._authorized(request, b"") or self._query(out_trade_no)

        @app.post(wire.REFUND_PATH)
        async def refund(request: Request) -> Response:
            body = await request.body()
            return self._authorized(request, body) or self._refund(json.loads(body))

        @app.get(wire.BILL_PATH)
        async def tradebill(request: Request, bill_date: str = "") -> Response:
            return self._authorized(request, b"") or self._tradebill(request, bill_date)

    # -- signatures --------------------------------------------------------------------------

    def _authorized(self, request: Request, body: bytes) -> Response | None:
        """None if the request is signed by the merchant; else the 401 answer."""
        params = wire.parse_authorization(request.headers.get("authorization", ""))
        if (
            params is None
            or params.get("mchid") != self.merchant_id
            or params.get("serial_no") != self.merchant_serial
        ):
            return self._answer(401, _error("SIGN_ERROR", "Authorization 头缺失或商户证书不符"))
        if not self._fresh(params.get("timestamp", "")):
            return self._answer(401, _error("SIGN_ERROR", "timestamp 与当前时间相差超过 5 分钟"))
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        message = wire.request_message(
            request.method,
            path,
            params.get("timestamp", ""),
            params.get("nonce_str", ""),
            body.decode("utf-8"),
        )
        if not signing.verify(self.merchant_public_key, message, params.get("signature")):
            return self._answer(401, _error("SIGN_ERROR", "签名错误"))
        return None

    def _fresh(self, timestamp: str) -> bool:
        return timestamp.isdigit() and abs(self.clock().timestamp() - int(timestamp)) <= 300

    def _answer(self, status: int, payload: dict[str, Any] | None) -> Response:
        body = b"" if payload is None else json.dumps(payload, ensure_ascii=False).encode()
        headers = wire.signed_headers(self.key, self.serial, body, self._timestamp())
        return Response(body, status, headers=headers, media_type="application/json")

    def _timestamp(self) -> str:
        return str(int(self.clock().timestamp()))

    # -- API ---------------------------------------------------------------------------------

    def _native(self, request: Request, body: dict[str, Any]) -> Response:
        total = body.get("amount", {}).get("total")
        if body.get("mchid") != self.merchant_id or not isinstance(total, int) or total <= 0:
            return self._answer(400, _error("PARAM_ERROR", "mchid 或 amount.total 不正确"))
        order = Order(
            body["out_trade_no"],
            total,
            body.get("description", ""),
            body.get("notify_url", ""),
            "",
            self.clock(),
            extra={"time_expire": body.get("time_expire", "")},
        )
        stored = self.book.create(order)
        if stored.status == PAID:
            return self._answer(400, _error("ORDERPAID", "该订单已支付"))
        if stored.status != WAITING or stored.amount_fen != total:
            return self._answer(400, _error("ORDER_CLOSED", "订单已关闭或金额不符"))
        url = common.mount_url(request, f"/checkout/{stored.order_id}")
        return self._answer(200, {"code_url": url})

    def _query(self, out_trade_no: str) -> Response:
        order = self.book.get(out_trade_no)
        if order is None:
            return self._answer(404, _error("ORDER_NOT_EXIST", "订单不存在"))
        return self._answer(200, self._transaction(order))

    def _transaction(self, order: Order) -> dict[str, Any]:
        state = {
            WAITING: wire.NOTPAY,
            PAID: wire.SUCCESS,
            common.FAILED: wire.PAYERROR,
            common.CLOSED: wire.CLOSED,
        }[order.status]
        if state == wire.SUCCESS and self.book.refunds_for(order.order_id):
            state = wire.REFUND
        transaction: dict[str, Any] = {
            "appid": self.appid,
            "mchid": self.merchant_id,
            "out_trade_no": order.order_id,
            "trade_type": "NATIVE",
            "trade_state": state,
            "trade_state_desc": state,
            "amount": {"total": order.amount_fen, "currency": "CNY"},
        }
        if order.paid_at is not None:
            transaction |= {
                "transaction_id": order.trade_no,
                "bank_type": "CMB_DEBIT",
                "success_time": wire.rfc3339(order.paid_at),
                "payer": {"openid": OPENID},
                "amount": {
                    "total": order.amount_fen,
                    "payer_total": order.amount_fen,
                    "currency": "CNY",
                    "payer_currency": "CNY",
                },
            }
        return transaction

    def _refund(self, body: dict[str, Any]) -> Response:
        amount = body.get("amount", {})
        refund_fen = amount.get("refund")
        if not isinstance(refund_fen, int) or refund_fen <= 0 or not body.get("out_refund_no"):
            return self._answer(400, _error("PARAM_ERROR", "amount.refund / out_refund_no"))
        order = self.book.get(body.get("out_trade_no", ""))
        if order is not None and amount.get("total") != order.amount_fen:
            return self._answer(400, _error("PARAM_ERROR", "amount.total 与订单金额不符"))
        now = self.clock()
        asked = Refund(
            body["out_refund_no"],
            body.get("out_trade_no", ""),
            refund_fen,
            f"5030{common.business_day(now):%Y%m%d}{common.digits(17)}",
            now,
        )
        try:
            refund, _ = self.book.refund(asked)
        except RefundRefused as refused:
            status, code, message = REFUSALS[refused.reason]
            return self._answer(status, _error(code, message))
        return self._answer(200, self._refund_answer(refund))

    def _refund_answer(self, refund: Refund) -> dict[str, Any]:
        order = self.book.get(refund.order_id)
        assert order is not None
        return {
            "refund_id": refund.gateway_refund_id,
            "out_refund_no": refund.refund_id,
            "transaction_id": order.trade_no,
            "out_trade_no": order.order_id,
            "channel": "ORIGINAL",
            "user_received_account": "招商银行信用卡0403",
            "success_time": wire.rfc3339(refund.created_at),
            "create_time": wire.rfc3339(refund.created_at),
            "status": "SUCCESS",
            "funds_account": "AVAILABLE",
            "amount": {
                "total": order.amount_fen,
                "refund": refund.amount_fen,
                "payer_total": order.amount_fen,
                "payer_refund": refund.amount_fen,
                "settlement_refund": refund.amount_fen,
                "settlement_total": order.amount_fen,
                "discount_refund": 0,
                "currency": "CNY",
            },
        }

    def _tradebill(self, request: Request, bill_date: str) -> Response:
        try:
            day = date.fromisoformat(bill_date)
        except ValueError:
            return self._answer(400, _error("PARAM_ERROR", "bill_date 格式为 YYYY-MM-DD"))
        content = self.bill(day)
        return self._answer(
            200,
            {
                "hash_type": "SHA1",
                "hash_value": hashlib.sha1(content).hexdigest(),  # noqa: S324 (WeChat's choice)
                "download_url": common.mount_url(request, f"/_bill/{day:%Y%m%d}"),
            },
        )

    # -- checkout and notify -----------------------------------------------------------------

    def after_checkout(self, request: Request, order: Order, action: str) -> Response:
        target = request.query_params.get("redirect_url")
        if target:
            return RedirectResponse(target, 303)
        return common.page("支付结果", f"<p>{order.status}</p>")

    def new_trade_no(self, now: datetime) -> str:
        return f"420000{common.business_day(now):%Y%m%d}{common.digits(14)}"

    def build_notify(self, order: Order) -> tuple[str, dict[str, str], bytes]:
        assert order.trade_no is not None
        transaction = json.dumps(self._transaction(order), ensure_ascii=False).encode()
        event = {
            "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"wechatpay:{order.trade_no}")),
            "create_time": wire.rfc3339(self.clock()),
            "resource_type": "encrypt-resource",
            "event_type": "TRANSACTION.SUCCESS",
            "summary": "支付成功",
            "resource": wire.encrypt(self.api_v3_key, transaction, "transaction"),
        }
        body = json.dumps(event, ensure_ascii=False).encode()
        headers = wire.signed_headers(self.key, self.serial, body, self._timestamp())
        return order.notify_url, {**headers, "Content-Type": "application/json"}, body

    def notify_accepted(self, response: httpx.Response) -> bool:
        return 200 <= response.status_code < 300

    # -- the daily bill ----------------------------------------------------------------------

    def bill_filename(self, day: date) -> str:
        return f"wechatpay_{self.merchant_id}_{day:%Y%m%d}.csv"

    def bill(self, day: date) -> bytes:
        """The trade bill (交易账单, type ALL) for ``day``: UTF-8, every cell after a backtick."""
        rows: list[list[str]] = []
        fees = Decimal(0)
        paid = refunded = 0
        for order in self.book.paid_orders():
            assert order.paid_at is not None
            if common.business_day(order.paid_at) == day:
                fee = self._fee(order.amount_fen)
                rows.append(self._payment_cells(order, fee))
                fees += fee
                paid += order.amount_fen
            for refund in self.book.refunds_for(order.order_id):
                if common.business_day(refund.created_at) == day:
                    fee = -self._fee(refund.amount_fen)
                    rows.append(self._refund_cells(order, refund, fee))
                    fees += fee
                    refunded += refund.amount_fen
        summary = [
            str(len(rows)),
            format_fen(paid),
            format_fen(refunded),
            "0.00",
            f"{fees:.5f}",
            format_fen(paid),
            format_fen(refunded),
        ]
        lines = [BILL_COLUMNS, *(_ticked(r) for r in rows), SUMMARY_COLUMNS, _ticked(summary)]
        return ("\n".join(lines) + "\n").encode("utf-8")

    def _fee(self, amount_fen: int) -> Decimal:
        """The fee in yuan, exact to five decimals (rounded half-up beyond that)."""
        return common.exact_fee_yuan(amount_fen, self.fee_rate)

    def _rate(self) -> str:
        return f"{(self.fee_rate * 100).quantize(Decimal('0.01'))}%"

    def _common_cells(self, order: Order, when: datetime) -> list[str]:
        return [
            when.astimezone(options.SHANGHAI).strftime(TIME_FORMAT),
            self.appid,
            self.merchant_id,
            "0",
            "",
            order.trade_no or "",
            order.order_id,
            OPENID,
            "NATIVE",
        ]

    def _payment_cells(self, order: Order, fee: Decimal) -> list[str]:
        assert order.paid_at is not None
        amount = format_fen(order.amount_fen)
        return [
            *self._common_cells(order, order.paid_at),
            "SUCCESS",
            "CMB_DEBIT",
            "CNY",
            amount,
            "0.00",
            "0",
            "0",
            "0.00",
            "0.00",
            "",
            "",
            order.subject,
            "",
            f"{fee:.5f}",
            self._rate(),
            amount,
            "0.00",
            "",
        ]

    def _refund_cells(self, order: Order, refund: Refund, fee: Decimal) -> list[str]:
        amount = format_fen(refund.amount_fen)
        return [
            *self._common_cells(order, refund.created_at),
            "REFUND",
            "CMB_DEBIT",
            "CNY",
            "0.00",
            "0.00",
            refund.gateway_refund_id,
            refund.refund_id,
            amount,
            "0.00",
            "ORIGINAL",
            "SUCCESS",
            order.subject,
            "",
            f"{fee:.5f}",
            self._rate(),
            "0.00",
            amount,
            "",
        ]


def _ticked(cells: list[str]) -> str:
    return ",".join("`" + cell for cell in cells)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"code": code, "message": message}


def create_simulator(settings: Settings, **kwargs: Any) -> FastAPI:
    return WechatPaySimulator(settings, **kwargs).create_app()


def app() -> FastAPI:
    """``uvicorn --factory gateways.simulators.wechatpay:app`` (settings from the environment)."""
    from clearing.config import get_settings

    return create_simulator(get_settings())
