"""The Alipay-style gateway's side: ``/gateway.do`` (page pay, query, refund, bill URL),
signed form notifies with retries, the signed return redirect and the GBK daily bill."""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from clearing.config import Settings
from clearing.money import MoneyError, format_fen, parse_fen
from gateways import options
from gateways.alipay import wire
from gateways.simulators import common
from gateways.simulators.base import Simulator
from gateways.simulators.common import PAID, WAITING, Order, Refund, RefundRefused

BILL_COLUMNS = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,"
    "对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注"
)
LIST_START = "#" + "-" * 41 + "业务明细列表" + "-" * 40
LIST_END = "#" + "-" * 41 + "业务明细列表结束" + "-" * 36
BUYER = "r***@example.com"
REFUSALS = {
    "not_found": wire.TRADE_NOT_EXIST,
    "not_paid": wire.TRADE_STATUS_ERROR,
    "exceeds": wire.REFUND_AMOUNT_EXCEEDED,
    "mismatch": wire.TRADE_STATUS_ERROR,
}


class AlipaySimulator(Simulator):
    name = "alipay"
    title = "支付宝 (simulated)"
    # Real Alipay: 4m, 10m, 10m, 1h, 2h, 6h, 15h; here seconds in the same proportions.
    default_retry_delays = (4, 10, 10, 60, 120, 360, 900)
    bill_media_type = "text/csv; charset=GBK"

    def add_routes(self, app: FastAPI) -> None:
        @app.post("/gateway.do")
        async def gateway(request: Request) -> Response:
            params = await common.read_form(request)
            method = params.get("method", "")
            if method == wire.PAGE_PAY:
                return self._page_pay(request, params)
            handler = {
                wire.QUERY: self._query,
                wire.REFUND: self._refund,
                wire.BILL_URL: self._bill_url,
            }.get(method)
            if handler is None:
                return self._answer(method or "error", _fail("40002", "isv.invalid-method"))
            if not self._genuine(params):
                return self._answer(method, _fail("40002", "isv.invalid-signature"))
            try:
                biz = json.loads(params.get("biz_content", ""))
                return self._answer(method, handler(request, biz))
            except (ValueError, KeyError, MoneyError) as exc:
                return self._answer(method, _fail("40002", "isv.invalid-parameter", str(exc)))

    def _genuine(self, params: dict[str, str]) -> bool:
        return params.get("app_id") == self.merchant_id and wire.verify_params(
            params, self.merchant_public_key
        )

    def _answer(self, method: str, payload: dict[str, Any]) -> Response:
        body = wire.signed_response(method, payload, self.key)
        return Response(body, media_type="application/json; charset=utf-8")

    # -- page pay ----------------------------------------------------------------------------

    def _page_pay(self, request: Request, params: dict[str, str]) -> Response:
        if not self._genuine(params):
            return common.error_page("验签出错 (invalid-signature): 请确认签名与公钥")
        try:
            biz = json.loads(params["biz_content"])
            order = Order(
                order_id=biz["out_trade_no"],
                amount_fen=parse_fen(biz["total_amount"], field="total_amount"),
                subject=biz["subject"],
                notify_url=params.get("notify_url", ""),
                return_url=params.get("return_url", ""),
                created_at=self.clock(),
                extra={"time_expire": biz.get("time_expire", "")},
            )
        except (KeyError, ValueError, MoneyError) as exc:
            return common.error_page(f"参数错误 (invalid-parameter): {exc}")
        stored = self.book.create(order)
        if stored.amount_fen != order.amount_fen or stored.status != WAITING:
            return common.error_page("交易信息被篡改或交易已结束 (ACQ.TRADE_HAS_CHANGE)", 409)
        return self.checkout(request, stored)

    def after_checkout(self, request: Request, order: Order, action: str) -> Response:
        if not order.return_url:
            return common.page("支付结果", f"<p>{order.status}</p>")
        if order.status != PAID:
            return RedirectResponse(order.return_url, 303)
        params = wire.sign_params(
            {
                "charset": "utf-8",
                "out_trade_no": order.order_id,
                "method": wire.PAGE_PAY_RETURN,
                "total_amount": format_fen(order.amount_fen),
                "trade_no": order.trade_no or "",
                "auth_app_id": self.merchant_id,
                "version": "1.0",
                "app_id": self.merchant_id,
                "sign_type": "RSA2",
                "seller_id": options.option(self.settings, self.name, "pid"),
                "timestamp": wire.timestamp(self.clock()),
            },
            self.key,
        )
        glue = "&" if "?" in order.return_url else "?"
        return RedirectResponse(order.return_url + glue + urlencode(params), 303)

    # -- notify ------------------------------------------------------------------------------

    def new_trade_no(self, now: datetime) -> str:
        return f"{common.business_day(now):%Y%m%d}22001{common.digits(15)}"

    def build_notify(self, order: Order) -> tuple[str, dict[str, str], bytes]:
        assert order.trade_no is not None and order.paid_at is not None
        amount = format_fen(order.amount_fen)
        params = wire.sign_params(
            {
                "notify_time": wire.timestamp(self.clock()),
                "notify_type": "trade_status_sync",
                "notify_id": hashlib.sha256(order.trade_no.encode()).hexdigest()[:34],
                "app_id": self.merchant_id,
                "charset": "utf-8",
                "version": "1.0",
                "sign_type": "RSA2",
                "trade_no": order.trade_no,
                "out_trade_no": order.order_id,
                "total_amount": amount,
                "receipt_amount": amount,
                "buyer_pay_amount": amount,
                "subject": order.subject,
                "trade_status": wire.TRADE_SUCCESS,
                "gmt_create": wire.timestamp(order.created_at),
                "gmt_payment": wire.timestamp(order.paid_at),
                "seller_id": options.option(self.settings, self.name, "pid"),
            },
            self.key,
        )
        headers = {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"}
        return order.notify_url, headers, urlencode(params).encode("ascii")

    def notify_accepted(self, response: httpx.Response) -> bool:
        return response.status_code == 200 and response.text.strip() == "success"

    # -- API methods -------------------------------------------------------------------------

    def _query(self, request: Request, biz: dict[str, Any]) -> dict[str, Any]:
        order = self.book.get(biz["out_trade_no"])
        if order is None:
            return _fail(wire.BUSINESS_FAILED, wire.TRADE_NOT_EXIST, "交易不存在")
        answer = _ok(
            out_trade_no=order.order_id,
            trade_status=self._trade_status(order),
            total_amount=format_fen(order.amount_fen),
            buyer_logon_id=BUYER,
        )
        if order.trade_no:
            answer["trade_no"] = order.trade_no
        if order.paid_at:
            answer["send_pay_date"] = wire.timestamp(order.paid_at)
            answer["receipt_amount"] = format_fen(order.amount_fen)
        return answer

    def _trade_status(self, order: Order) -> str:
        if order.status == PAID:
            refunded = self.book.refunded_fen(order.order_id) == order.amount_fen
            return wire.TRADE_CLOSED if refunded else wire.TRADE_SUCCESS
        return {
            WAITING: wire.WAIT_BUYER_PAY,
            common.CLOSED: wire.TRADE_CLOSED,
            common.FAILED: wire.TRADE_FAILED,
        }[order.status]

    def _refund(self, request: Request, biz: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        asked = Refund(
            biz["out_request_no"],
            biz["out_trade_no"],
            parse_fen(biz["refund_amount"], field="refund_amount"),
            "",
            now,
        )
        if not asked.refund_id or asked.amount_fen <= 0:
            return _fail("40002", "isv.invalid-parameter", "out_request_no / refund_amount")
        try:
            refund, created = self.book.refund(asked)
        except RefundRefused as refused:
            return _fail(wire.BUSINESS_FAILED, REFUSALS[refused.reason], refused.reason)
        order = self.book.get(refund.order_id)
        assert order is not None
        return _ok(
            trade_no=order.trade_no,
            out_trade_no=order.order_id,
            buyer_logon_id=BUYER,
            fund_change="Y" if created else "N",
            refund_fee=format_fen(self.book.refunded_fen(order.order_id)),
            send_back_fee=format_fen(refund.amount_fen),
            gmt_refund_pay=wire.timestamp(refund.created_at),
        )

    def _bill_url(self, request: Request, biz: dict[str, Any]) -> dict[str, Any]:
        day = date.fromisoformat(biz["bill_date"])
        return _ok(bill_download_url=common.mount_url(request, f"/_bill/{day:%Y%m%d}"))

    # -- the daily bill ----------------------------------------------------------------------

    def bill_filename(self, day: date) -> str:
        return f"alipay_{self.merchant_id}_{day:%Y%m%d}.csv"

    def bill(self, day: date) -> bytes:
        """The business-detail bill (业务明细) for ``day``, GBK, as real Alipay writes it."""
        payments, refunds = self._bill_rows(day)
        pid = options.option(self.settings, self.name, "pid")
        start, end = _cn_day(day), _cn_day(day + timedelta(1))
        lines = [
            "#支付宝业务明细查询",
            f"#账号：[{pid}]",
            f"#起始日期：[{start} 00:00:00]   终止日期：[{end} 00:00:00]",
            LIST_START,
            BILL_COLUMNS,
            *(_row(cells) for cells in [*payments, *refunds]),
            LIST_END,
            f"#交易合计：{len(payments)}笔，商家实收共：{_sum(payments)}元，商家优惠共：0.00元",
            f"#退款合计：{len(refunds)}笔，商家实收退款共：{_sum(refunds)}元，商家优惠退款共：0.00元",
            f"#导出时间：[{_cn_time(self.clock())}]",
        ]
        return ("\n".join(lines) + "\n").encode("gbk")

    def _bill_rows(self, day: date) -> tuple[list[list[str]], list[list[str]]]:
        payments: list[list[str]] = []
        refunds: list[list[str]] = []
        for order in self.book.paid_orders():
            assert order.paid_at is not None and order.trade_no is not None
            fee = common.fee_fen(order.amount_fen, self.fee_rate)
            if common.business_day(order.paid_at) == day:
                payments.append(
                    _cells(
                        order, "交易", order.created_at, order.paid_at, order.amount_fen, "", -fee
                    )
                )
            order_refunds = self.book.refunds_for(order.order_id)
            returned = common.returned_fees(order, self.fee_rate, order_refunds)
            for refund in order_refunds:
                if common.business_day(refund.created_at) == day:
                    refunds.append(
                        _cells(
                            order,
                            "退款",
                            refund.created_at,
                            refund.created_at,
                            -refund.amount_fen,
                            refund.refund_id,
                            returned[refund.refund_id],
                        )
                    )
        return payments, refunds


def _cells(
    order: Order,
    kind: str,
    created: datetime,
    finished: datetime,
    amount: int,
    refund_id: str,
    fee: int,
) -> list[str]:
    money = format_fen(amount)
    return [
        order.trade_no or "",
        order.order_id,
        kind,
        order.subject,
        wire.timestamp(created),
        wire.timestamp(finished),
        "",
        "",
        "",
        "",
        BUYER,
        money,
        money,
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "",
        "0.00",
        "0.00",
        refund_id,
        format_fen(fee),
        "0.00",
        "",
    ]


def _row(cells: list[str]) -> str:
    """Every cell but the last is padded with a tab, as in real Alipay bills."""
    return ",".join(cell + "\t" for cell in cells[:-1]) + "," + cells[-1]


def _sum(rows: list[list[str]]) -> str:
    return format_fen(sum(parse_fen(cells[12], allow_negative=True) for cells in rows))


def _cn_day(day: date) -> str:
    return f"{day.year}年{day.month:02d}月{day.day:02d}日"


def _cn_time(moment: datetime) -> str:
    local = moment.astimezone(options.SHANGHAI)
    return f"{_cn_day(local.date())} {local:%H:%M:%S}"


def _ok(**fields: Any) -> dict[str, Any]:
    return {"code": wire.SUCCESS_CODE, "msg": "Success", **fields}


def _fail(code: str, sub_code: str, sub_msg: str = "") -> dict[str, Any]:
    msg = "Business Failed" if code == wire.BUSINESS_FAILED else "Invalid Arguments"
    return {"code": code, "msg": msg, "sub_code": sub_code, "sub_msg": sub_msg or sub_code}


def create_simulator(settings: Settings, **kwargs: Any) -> FastAPI:
    return AlipaySimulator(settings, **kwargs).create_app()


def app() -> FastAPI:
    """``uvicorn --factory gateways.simulators.alipay:app`` (settings from the environment)."""
    from clearing.config import get_settings

    return create_simulator(get_settings())
