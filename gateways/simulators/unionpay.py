"""The UnionPay-style bank's side: front transactions, query, refunds, signed form notifies
with retries, and the pipe-delimited daily file."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from clearing.config import Settings
from gateways import options
from gateways.simulators import common
from gateways.simulators.base import Simulator
from gateways.simulators.common import PAID, WAITING, Order, Refund, RefundRefused
from gateways.unionpay import wire

ORIG_CODES = {
    WAITING: "05",
    PAID: wire.SUCCESS,
    common.FAILED: wire.DECLINED,
    common.CLOSED: wire.CLOSED,
}
REFUSALS = {
    "not_found": ("25", "原交易不存在"),
    "not_paid": ("36", "原交易状态不正确"),
    "exceeds": ("61", "退货金额超限"),
    "mismatch": ("12", "重复交易"),
}


class UnionPaySimulator(Simulator):
    name = "unionpay"
    title = "银联在线支付 (simulated)"
    default_retry_delays = (1, 2, 4, 8, 16, 32)
    bill_media_type = "text/plain; charset=us-ascii"

    def __init__(self, settings: Settings, **kwargs: Any) -> None:
        super().__init__(settings, **kwargs)
        self.cert_id = options.option(settings, self.name, "gateway_cert_id") or None
        self.merchant_cert_id = options.option(settings, self.name, "merchant_cert_id") or None

    def add_routes(self, app: FastAPI) -> None:
        @app.post(wire.FRONT_PATH)
        async def front(request: Request) -> Response:
            fields = await common.read_form(request)
            if not self._genuine(fields):
                return common.error_page("验证签名失败 (respCode 11: invalid signature)")
            return self._front(request, fields)

        @app.post(wire.QUERY_PATH)
        async def query(request: Request) -> Response:
            fields = await common.read_form(request)
            if not self._genuine(fields):
                return self._answer(fields, {"respCode": "11", "respMsg": "验证签名失败"})
            return self._answer(fields, self._query(fields.get("orderId", "")))

        @app.post(wire.BACK_PATH)
        async def back(request: Request) -> Response:
            fields = await common.read_form(request)
            if not self._genuine(fields):
                return self._answer(fields, {"respCode": "11", "respMsg": "验证签名失败"})
            return self._answer(fields, self._refund(fields))

    def _genuine(self, fields: dict[str, str]) -> bool:
        return fields.get("merId") == self.merchant_id and wire.verify_fields(
            fields, self.merchant_public_key, self.merchant_cert_id
        )

    def _answer(self, asked: dict[str, str], fields: dict[str, str]) -> Response:
        echo = {
            k: asked.get(k, "")
            for k in (
                "version",
                "encoding",
                "signMethod",
                "txnType",
                "txnSubType",
                "bizType",
                "accessType",
                "merId",
                "orderId",
                "txnTime",
            )
        }
        answer = {**echo, "merId": self.merchant_id, **fields}
        signed = wire.sign_fields(answer, self.key, self.cert_id)
        return Response(urlencode(signed), media_type="text/plain; charset=utf-8")

    # -- front transaction -------------------------------------------------------------------

    def _front(self, request: Request, fields: dict[str, str]) -> Response:
        try:
            order = Order(
                fields["orderId"],
                wire.fen(fields["txnAmt"]),
                f"订单 {fields['orderId']}",
                fields.get("backUrl", ""),
                fields.get("frontUrl", ""),
                self.clock(),
                extra={"txnTime": fields["txnTime"], "payTimeout": fields.get("payTimeout", "")},
            )
        except (KeyError, ValueError) as exc:
            return common.error_page(f"报文格式错误 (respCode 30): {exc}")
        if fields.get("txnType") != wire.TXN_PAYMENT or order.amount_fen <= 0:
            return common.error_page("交易类型或金额错误 (respCode 30)")
        stored = self.book.create(order)
        if stored.status != WAITING or stored.amount_fen != order.amount_fen:
            return common.error_page("重复交易 (respCode 12)", 409)
        return self.checkout(request, stored)

    def after_checkout(self, request: Request, order: Order, action: str) -> Response:
        if not order.return_url:
            return common.page("支付结果", f"<p>{order.status}</p>")
        if order.status != PAID:
            return RedirectResponse(order.return_url, 303)
        glue = "&" if "?" in order.return_url else "?"
        params = urlencode(self._notify_fields(order))
        return RedirectResponse(order.return_url + glue + params, 303)

    # -- notify ------------------------------------------------------------------------------

    def new_trade_no(self, now: datetime) -> str:
        return f"7711{wire.txn_time(now)}{common.digits(6)}"

    def _notify_fields(self, order: Order) -> dict[str, str]:
        assert order.trade_no is not None and order.paid_at is not None
        paid = order.paid_at.astimezone(common.SHANGHAI)
        return wire.sign_fields(
            {
                "version": wire.VERSION,
                "encoding": "UTF-8",
                "signMethod": "01",
                "txnType": wire.TXN_PAYMENT,
                "txnSubType": "01",
                "bizType": "000201",
                "accessType": "0",
                "merId": self.merchant_id,
                "orderId": order.order_id,
                "queryId": order.trade_no,
                "txnTime": order.extra.get("txnTime", ""),
                "txnAmt": str(order.amount_fen),
                "currencyCode": wire.CURRENCY_CNY,
                "settleAmt": str(order.amount_fen),
                "settleCurrencyCode": wire.CURRENCY_CNY,
                "settleDate": f"{paid:%m%d}",
                "traceNo": order.trade_no[-6:],
                "traceTime": f"{paid:%m%d%H%M%S}",
                "respCode": wire.SUCCESS,
                "respMsg": "成功[0000000]",
            },
            self.key,
            self.cert_id,
        )

    def build_notify(self, order: Order) -> tuple[str, dict[str, str], bytes]:
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        return order.notify_url, headers, urlencode(self._notify_fields(order)).encode("ascii")

    def notify_accepted(self, response: httpx.Response) -> bool:
        return response.status_code == 200

    # -- query and refund --------------------------------------------------------------------

    def _query(self, order_id: str) -> dict[str, str]:
        order = self.book.get(order_id)
        if order is None:
            return {"respCode": wire.NOT_FOUND, "respMsg": "查无此交易"}
        answer = {
            "respCode": wire.SUCCESS,
            "respMsg": "成功[0000000]",
            "origRespCode": ORIG_CODES[order.status],
            "txnAmt": str(order.amount_fen),
            "queryId": order.trade_no or "",
            "currencyCode": wire.CURRENCY_CNY,
        }
        if order.paid_at is not None:
            answer |= {
                "txnTime": wire.txn_time(order.paid_at),
                "settleDate": f"{order.paid_at.astimezone(common.SHANGHAI):%m%d}",
            }
        return answer

    def _refund(self, fields: dict[str, str]) -> dict[str, str]:
        original = self.book.by_trade_no(fields.get("origQryId", ""))
        now = self.clock()
        try:
            asked = Refund(
                fields["orderId"],
                original.order_id if original else "",
                wire.fen(fields["txnAmt"]),
                self.new_trade_no(now),
                now,
            )
        except (KeyError, ValueError):
            return {"respCode": "30", "respMsg": "报文格式错误"}
        if fields.get("txnType") != wire.TXN_REFUND or asked.amount_fen <= 0:
            return {"respCode": "30", "respMsg": "报文格式错误"}
        try:
            refund, _ = self.book.refund(asked)
        except RefundRefused as refused:
            code, message = REFUSALS[refused.reason]
            return {"respCode": code, "respMsg": message}
        return {
            "respCode": wire.SUCCESS,
            "respMsg": "成功[0000000]",
            "queryId": refund.gateway_refund_id,
            "origQryId": fields["origQryId"],
            "txnAmt": str(refund.amount_fen),
        }

    # -- the daily file ----------------------------------------------------------------------

    def bill_filename(self, day: date) -> str:
        return f"unionpay_{self.merchant_id}_{day:%Y%m%d}.txt"

    def bill(self, day: date) -> bytes:
        """``H|merId|date|count``, one ``D`` record per payment or refund, ``T`` with sums."""
        details: list[tuple[int, int, str]] = []
        for order in self.book.paid_orders():
            details.extend(self._details(order, day))
        count = len(details)
        amount = sum(d[0] for d in details)
        fee = sum(d[1] for d in details)
        lines = [
            f"H|{self.merchant_id}|{day:%Y%m%d}|{count}",
            *(d[2] for d in details),
            f"T|{count}|{amount}|{fee}|{amount - fee}",
        ]
        return ("\n".join(lines) + "\n").encode("ascii")

    def _details(self, order: Order, day: date) -> list[tuple[int, int, str]]:
        assert order.paid_at is not None
        rows: list[tuple[int, int, str]] = []
        if common.business_day(order.paid_at) == day:
            fee = common.fee_fen(order.amount_fen, self.fee_rate)
            rows.append(
                _detail(
                    order.order_id,
                    order.trade_no or "",
                    order.paid_at,
                    wire.TXN_PAYMENT,
                    order.amount_fen,
                    fee,
                )
            )
        refunds = self.book.refunds_for(order.order_id)
        returned = common.returned_fees(order, self.fee_rate, refunds)
        for refund in refunds:
            if common.business_day(refund.created_at) == day:
                rows.append(
                    _detail(
                        order.order_id,
                        refund.gateway_refund_id,
                        refund.created_at,
                        wire.TXN_REFUND,
                        -refund.amount_fen,
                        -returned[refund.refund_id],
                        refund.refund_id,
                    )
                )
        return rows


def _detail(
    order_id: str,
    query_id: str,
    when: datetime,
    txn_type: str,
    amount: int,
    fee: int,
    refund_id: str | None = None,
) -> tuple[int, int, str]:
    cells = [
        "D",
        order_id,
        query_id,
        wire.txn_time(when),
        txn_type,
        str(amount),
        str(fee),
        str(amount - fee),
        wire.SUCCESS,
    ]
    if refund_id is not None:
        cells.append(refund_id)
    return amount, fee, "|".join(cells)


def create_simulator(settings: Settings, **kwargs: Any) -> FastAPI:
    return UnionPaySimulator(settings, **kwargs).create_app()


def app() -> FastAPI:
    """``uvicorn --factory gateways.simulators.unionpay:app`` (settings from the environment)."""
    from clearing.config import get_settings

    return create_simulator(get_settings())
