"""Plain keyword-default factories for tests."""

from __future__ import annotations

from datetime import date
from typing import Any

from clearing.ledger.core import Entry, Posting


def payment_entry(key: str = "pay-1", amount: int = 20_000, *, gateway: str = "alipay",
                  treasury: str = "510100-city", on: date = date(2026, 11, 11),
                  **kw: Any) -> Entry:
    """A captured payment: Dr gateway clearing / Cr treasury payable."""
    return Entry(idempotency_key=key, business_date=on, description=kw.pop("description",
                 f"payment {key}"),
                 postings=(Posting.debit(f"gateway_clearing:{gateway}", amount),
                           Posting.credit(f"treasury_payable:{treasury}", amount)), **kw)
