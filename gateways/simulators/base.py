"""The skeleton every simulator shares: keys, order book, notifier, checkout and common routes.

Common routes (relative to the simulator's base URL):

- ``GET /checkout/{order_id}``: the payer's page; ``POST`` it with ``action`` = ``pay``,
  ``pay_lose_notify``, ``decline`` or ``abandon``.
- ``POST /_sim/renotify/{order_id}``: send a paid order's notify again (tests, demos).
- ``GET /_bill/{YYYYMMDD}``: the daily bill for a business date (Asia/Shanghai).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import date, datetime
from decimal import Decimal

import httpx
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from clearing.config import Settings
from gateways import keys, options
from gateways.simulators import common
from gateways.simulators.common import CLOSED, FAILED, PAID, WAITING, Order


class Simulator:
    """A gateway's side. Subclasses supply the wire: routes, notify, trade numbers, the bill."""

    name = ""
    title = ""
    default_retry_delays: tuple[float, ...] = (1, 2, 4, 8)
    bill_media_type = "text/plain; charset=utf-8"

    def __init__(
        self,
        settings: Settings,
        *,
        notify_client: httpx.Client | None = None,
        deliver_notifies_inline: bool = False,
        retry_delays: Sequence[float] | None = None,
        clock: Callable[[], datetime] | None = None,
        fee_rate: Decimal | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or options.utc_now
        self.book = common.OrderBook(settings.var_dir / "sim" / f"{self.name}.db")
        delays = self.default_retry_delays if retry_delays is None else retry_delays
        self.notifier = common.Notifier(delays, inline=deliver_notifies_inline)
        self.client = notify_client or httpx.Client(timeout=10)
        self.fee_rate = options.fee_rate(settings, self.name) if fee_rate is None else fee_rate
        self.merchant_id = options.option(settings, self.name, "merchant_id")
        self.key = keys.private_key(settings, self.name, "gateway")
        self.merchant_public_key = keys.public_key(settings, self.name, "merchant")

    # -- to implement ------------------------------------------------------------------------

    def add_routes(self, app: FastAPI) -> None:
        raise NotImplementedError

    def new_trade_no(self, now: datetime) -> str:
        raise NotImplementedError

    def build_notify(self, order: Order) -> tuple[str, dict[str, str], bytes]:
        """(url, headers, body) of one delivery of ``order``'s notify, freshly signed."""
        raise NotImplementedError

    def notify_accepted(self, response: httpx.Response) -> bool:
        raise NotImplementedError

    def after_checkout(self, request: Request, order: Order, action: str) -> Response:
        raise NotImplementedError

    def bill(self, day: date) -> bytes:
        raise NotImplementedError

    def bill_filename(self, day: date) -> str:
        raise NotImplementedError

    # -- shared behaviour --------------------------------------------------------------------

    def act(self, order_id: str, action: str) -> Order | None:
        """Apply the payer's choice to a waiting order; None if unknown or already finished."""
        now = self.clock()
        if action in ("pay", "pay_lose_notify"):
            order = self.book.finish(order_id, PAID, trade_no=self.new_trade_no(now), paid_at=now)
            if order is not None and action == "pay":
                self.notify(order)
            return order
        status = {"decline": FAILED, "abandon": CLOSED}[action]
        return self.book.finish(order_id, status)

    def notify(self, order: Order) -> None:
        """Deliver ``order``'s notify (with retries) as configured: inline or in the background."""
        attempt = common.post_attempt(
            self.client,
            self.book,
            order.order_id,
            lambda: self.build_notify(order),
            self.notify_accepted,
            self.clock,
        )
        self.notifier.dispatch(attempt)

    def create_app(self) -> FastAPI:
        app = FastAPI(title=f"{self.title} simulator", docs_url=None, redoc_url=None)
        app.state.simulator = self
        self.add_routes(app)
        self._add_common_routes(app)
        return app

    def checkout(self, request: Request, order: Order) -> Response:
        action = common.mount_url(request, f"/checkout/{order.order_id}")
        if request.url.query:
            action += "?" + request.url.query
        return common.checkout_page(self.title, order, action)

    def _add_common_routes(self, app: FastAPI) -> None:
        @app.get("/checkout/{order_id}", name="checkout_page")
        def checkout_page(order_id: str, request: Request) -> Response:
            order = self.book.get(order_id)
            if order is None:
                return common.error_page("订单不存在 (unknown order)", 404)
            if order.status != WAITING:
                return common.error_page(f"订单已结束 (order is {order.status})", 409)
            return self.checkout(request, order)

        @app.post("/checkout/{order_id}", name="checkout_action")
        async def checkout_action(order_id: str, request: Request) -> Response:
            action = (await common.read_form(request)).get("action", "")
            if action not in common.ACTIONS:
                return common.error_page(f"unknown action {action!r}")
            order = await _in_thread(self.act, order_id, action)
            if order is None:
                return common.error_page("订单不存在或已结束 (unknown or finished order)", 409)
            return self.after_checkout(request, order, action)

        @app.post("/_sim/renotify/{order_id}")
        def renotify(order_id: str) -> Response:
            order = self.book.get(order_id)
            if order is None or order.status != PAID:
                return JSONResponse({"detail": "no paid order with that id"}, 409)
            self.notify(order)
            return JSONResponse({"order_id": order_id, "queued": True}, 202)

        @app.get("/_bill/{day}", name="bill")
        def bill(day: str) -> Response:
            try:
                business_date = datetime.strptime(day, "%Y%m%d").date()
            except ValueError:
                return JSONResponse({"detail": "date must be YYYYMMDD"}, 400)
            disposition = f'attachment; filename="{self.bill_filename(business_date)}"'
            return Response(
                self.bill(business_date),
                media_type=self.bill_media_type,
                headers={"Content-Disposition": disposition},
            )


async def _in_thread(func: Callable[..., Order | None], *args: str) -> Order | None:
    """Run blocking work (inline notify delivery) off the event loop."""
    return await run_in_threadpool(func, *args)
