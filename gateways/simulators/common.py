"""What every simulator shares: the order book (SQLite), notify delivery with retries, the
checkout page and fee arithmetic.

A simulator is the gateway's side: it signs with the gateway's key, keeps its own records in
``<var_dir>/sim/<name>.db`` and knows the merchant only by its public key.
"""

from __future__ import annotations

import html
import json
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request
from fastapi.responses import HTMLResponse

from clearing.money import format_fen
from gateways.formdata import decode_form
from gateways.options import SHANGHAI

WAITING = "WAIT"
PAID = "PAID"
FAILED = "FAILED"
CLOSED = "CLOSED"

ACTIONS = {
    "pay": "支付 (pay)",
    "pay_lose_notify": "支付但不通知 (pay, lose the notify)",
    "decline": "拒绝 (decline)",
    "abandon": "放弃 (abandon)",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, trade_no TEXT, amount_fen INTEGER NOT NULL, subject TEXT NOT NULL,
    status TEXT NOT NULL, notify_url TEXT NOT NULL, return_url TEXT NOT NULL,
    created_at TEXT NOT NULL, paid_at TEXT, extra TEXT NOT NULL DEFAULT '{}');
CREATE TABLE IF NOT EXISTS refunds (
    refund_id TEXT PRIMARY KEY, order_id TEXT NOT NULL REFERENCES orders(order_id),
    amount_fen INTEGER NOT NULL CHECK (amount_fen > 0), gateway_refund_id TEXT NOT NULL,
    created_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY AUTOINCREMENT, order_id TEXT NOT NULL, status_code INTEGER NOT NULL,
    at TEXT NOT NULL);
"""


@dataclass(frozen=True, slots=True)
class Order:
    order_id: str
    amount_fen: int
    """Integer fen."""
    subject: str
    notify_url: str
    return_url: str
    created_at: datetime
    status: str = WAITING
    trade_no: str | None = None
    paid_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Refund:
    refund_id: str
    order_id: str
    amount_fen: int
    """Integer fen."""
    gateway_refund_id: str
    created_at: datetime


class RefundRefused(Exception):
    """The gateway refuses a refund: ``reason`` is not_found, not_paid, exceeds or mismatch."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class OrderBook:
    """The simulator's own records, in a SQLite file; safe to use from several threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.RLock()
        self._db.executescript(_SCHEMA)

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def create(self, order: Order) -> Order:
        """Record ``order`` unless its id is known; return the stored order either way."""
        with self._tx() as db:
            db.execute(
                "INSERT OR IGNORE INTO orders (order_id, amount_fen, subject, status, notify_url,"
                " return_url, created_at, extra) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    order.order_id,
                    order.amount_fen,
                    order.subject,
                    order.status,
                    order.notify_url,
                    order.return_url,
                    order.created_at.isoformat(),
                    json.dumps(order.extra),
                ),
            )
        stored = self.get(order.order_id)
        assert stored is not None
        return stored

    def get(self, order_id: str) -> Order | None:
        with self._lock:
            row = self._db.execute(
                "SELECT order_id, amount_fen, subject, notify_url, return_url, created_at, status,"
                " trade_no, paid_at, extra FROM orders WHERE order_id = ?",
                (order_id,),
            ).fetchone()
        return _order(row) if row else None

    def by_trade_no(self, trade_no: str) -> Order | None:
        with self._lock:
            row = self._db.execute(
                "SELECT order_id FROM orders WHERE trade_no = ?", (trade_no,)
            ).fetchone()
        return self.get(row[0]) if row else None

    def finish(
        self,
        order_id: str,
        status: str,
        *,
        trade_no: str | None = None,
        paid_at: datetime | None = None,
    ) -> Order | None:
        """Move a waiting order to ``status``; None when it is unknown or no longer waiting."""
        with self._tx() as db:
            changed = db.execute(
                "UPDATE orders SET status = ?, trade_no = ?, paid_at = ? "
                "WHERE order_id = ? AND status = ?",
                (status, trade_no, paid_at.isoformat() if paid_at else None, order_id, WAITING),
            ).rowcount
        return self.get(order_id) if changed else None

    def refund(self, refund: Refund) -> tuple[Refund, bool]:
        """Record ``refund`` once: (stored refund, True if new). Never refunds past the amount."""
        with self._tx() as db:
            existing = self._refund_row(db, refund.refund_id)
            if existing is not None:
                if existing.order_id != refund.order_id:
                    raise RefundRefused("mismatch")
                return existing, False
            order = self.get(refund.order_id)
            if order is None:
                raise RefundRefused("not_found")
            if order.status != PAID:
                raise RefundRefused("not_paid")
            if self.refunded_fen(order.order_id) + refund.amount_fen > order.amount_fen:
                raise RefundRefused("exceeds")
            db.execute(
                "INSERT INTO refunds VALUES (?, ?, ?, ?, ?)",
                (
                    refund.refund_id,
                    refund.order_id,
                    refund.amount_fen,
                    refund.gateway_refund_id,
                    refund.created_at.isoformat(),
                ),
            )
        return refund, True

    def refunds_for(self, order_id: str) -> list[Refund]:
        with self._lock:
            rows = self._db.execute(
                "SELECT refund_id, order_id, amount_fen, gateway_refund_id, created_at FROM refunds"
                " WHERE order_id = ? ORDER BY created_at, refund_id",
                (order_id,),
            ).fetchall()
        return [_refund(row) for row in rows]

    def refunded_fen(self, order_id: str) -> int:
        return sum(r.amount_fen for r in self.refunds_for(order_id))

    def paid_orders(self) -> list[Order]:
        with self._lock:
            ids = self._db.execute(
                "SELECT order_id FROM orders WHERE paid_at IS NOT NULL ORDER BY paid_at"
            ).fetchall()
        return [o for (order_id,) in ids if (o := self.get(order_id)) is not None]

    def _refund_row(self, db: sqlite3.Connection, refund_id: str) -> Refund | None:
        row = db.execute(
            "SELECT refund_id, order_id, amount_fen, gateway_refund_id, created_at FROM refunds"
            " WHERE refund_id = ?",
            (refund_id,),
        ).fetchone()
        return _refund(row) if row else None

    def record_delivery(self, order_id: str, status_code: int, at: datetime) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT INTO deliveries (order_id, status_code, at) VALUES (?, ?, ?)",
                (order_id, status_code, at.isoformat()),
            )

    def deliveries(self, order_id: str) -> list[int]:
        """HTTP status of each notify delivery attempt for ``order_id`` (0: no answer)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT status_code FROM deliveries WHERE order_id = ? ORDER BY id", (order_id,)
            ).fetchall()
        return [code for (code,) in rows]


def _order(row: tuple[Any, ...]) -> Order:
    order_id, amount, subject, notify_url, return_url, created, status, trade_no, paid, extra = row
    return Order(
        order_id,
        amount,
        subject,
        notify_url,
        return_url,
        datetime.fromisoformat(created),
        status,
        trade_no,
        datetime.fromisoformat(paid) if paid else None,
        json.loads(extra),
    )


def _refund(row: tuple[Any, ...]) -> Refund:
    refund_id, order_id, amount, gateway_refund_id, created = row
    return Refund(refund_id, order_id, amount, gateway_refund_id, datetime.fromisoformat(created))


class Notifier:
    """Delivers notifies: one attempt, then retries after each of ``delays`` (seconds) until the
    merchant accepts. In the background (a thread per notify) or, with ``inline``, right away in
    the calling thread (retries included), for deterministic tests."""

    def __init__(self, delays: Sequence[float], *, inline: bool = False) -> None:
        self.delays = tuple(delays)
        self.inline = inline
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()

    def dispatch(self, attempt: Callable[[], bool]) -> None:
        if self.inline:
            self._run(attempt)
            return
        thread = threading.Thread(target=self._run, args=(attempt,), daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()]
            self._threads.append(thread)
        thread.start()

    def _run(self, attempt: Callable[[], bool]) -> None:
        for delay in (0.0, *self.delays):
            if delay:
                time.sleep(delay)
            if attempt():
                return

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait for background deliveries to finish; False if some are still running."""
        deadline = time.monotonic() + timeout
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        return not any(t.is_alive() for t in threads)


def post_attempt(
    client: httpx.Client,
    book: OrderBook,
    order_id: str,
    build: Callable[[], tuple[str, dict[str, str], bytes]],
    accepted: Callable[[httpx.Response], bool],
    clock: Callable[[], datetime],
) -> Callable[[], bool]:
    """One delivery attempt: build a fresh request, POST it, record the answer."""

    def attempt() -> bool:
        url, headers, body = build()
        try:
            response = client.post(url, headers=headers, content=body)
        except httpx.HTTPError:
            book.record_delivery(order_id, 0, clock())
            return False
        book.record_delivery(order_id, response.status_code, clock())
        return accepted(response)

    return attempt


def mount_url(request: Request, path: str) -> str:
    """An absolute URL of ``path`` inside this simulator, wherever it is mounted.

    Not ``request.url_for``: with several simulators mounted in one app (``feishui serve``),
    route names are shared and ``url_for`` would answer with the first simulator's route.
    """
    root = request.scope.get("root_path", "")
    return f"{str(request.base_url).rstrip('/')}{root}{path}"


async def read_form(request: Request) -> dict[str, str]:
    """The request's form fields (UTF-8 urlencoded); empty when malformed."""
    try:
        return decode_form(await request.body())
    except ValueError:
        return {}


def page(title: str, body: str, status_code: int = 200) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title></head><body><h1>{html.escape(title)}</h1>"
        f"{body}</body></html>",
        status_code=status_code,
    )


def checkout_page(gateway_title: str, order: Order, action_url: str) -> HTMLResponse:
    """The payer's page: the order and one submit button per simulated outcome."""
    buttons = "".join(
        f'<button type="submit" name="action" value="{value}">{html.escape(label)}</button> '
        for value, label in ACTIONS.items()
    )
    body = (
        f"<p>订单号 <code>{html.escape(order.order_id)}</code></p>"
        f"<p>{html.escape(order.subject)}</p>"
        f'<p>金额 <strong class="amount">¥{format_fen(order.amount_fen)}</strong></p>'
        f'<form method="post" action="{html.escape(action_url)}">{buttons}</form>'
    )
    return page(f"{gateway_title} 收银台", body)


def error_page(message: str, status_code: int = 400) -> HTMLResponse:
    return page("错误", f'<p class="error">{html.escape(message)}</p>', status_code)


def fee_fen(amount_fen: int, rate: Decimal) -> int:
    """``amount_fen * rate`` rounded half-up to the fen."""
    return int((Decimal(amount_fen) * rate).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def returned_fees(order: Order, rate: Decimal, refunds: Sequence[Refund]) -> dict[str, int]:
    """Fee returned with each refund: proportional to the cumulative amount refunded, so that a
    full refund returns the whole fee and nothing is lost to rounding."""
    total_fee = fee_fen(order.amount_fen, rate)
    returned: dict[str, int] = {}
    cumulative = done = 0
    for refund in refunds:
        cumulative += refund.amount_fen
        share = Decimal(total_fee * cumulative) / Decimal(order.amount_fen)
        upto = int(share.quantize(Decimal(1), rounding=ROUND_HALF_UP))
        returned[refund.refund_id] = upto - done
        done = upto
    return returned


def business_day(moment: datetime) -> date:
    return moment.astimezone(SHANGHAI).date()


def digits(n: int) -> str:
    """``n`` random decimal digits."""
    return "".join(secrets.choice("0123456789") for _ in range(n))


def exact_fee_yuan(amount_fen: int, rate: Decimal) -> Decimal:
    """``amount_fen * rate`` in yuan, to five decimals (half-up beyond that), as WeChat bills."""
    return (Decimal(amount_fen) * rate / 100).quantize(Decimal("0.00001"), ROUND_HALF_UP)
