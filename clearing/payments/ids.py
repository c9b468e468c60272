"""Public ids for attempts and refunds: dated, random, <= 32 characters, safe at every gateway."""

from __future__ import annotations

import secrets
from datetime import datetime

from notices.fees import business_date


def _make(prefix: str, now: datetime) -> str:
    return f"{prefix}{business_date(now):%Y%m%d}{secrets.token_hex(6).upper()}"


def new_order_id(now: datetime) -> str:
    """e.g. ``FS20261127A1B2C3D4E5F6`` (22 characters)."""
    return _make("FS", now)


def new_refund_id(now: datetime) -> str:
    """e.g. ``RF20261127A1B2C3D4E5F6``."""
    return _make("RF", now)
