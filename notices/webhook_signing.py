"""Signing department webhooks, and checking a signature as a receiving department does.

Pure: no database, no network. Each delivery carries::

    Feishui-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, f"{t}." + raw body)>

The MAC covers the timestamp, so a receiver that refuses a ``t`` far from its own clock also
refuses a captured request replayed later. docs/api.md shows the check in a few lines.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

EVENT_HEADER = "Feishui-Event"
DELIVERY_HEADER = "Feishui-Delivery"
SIGNATURE_HEADER = "Feishui-Signature"
TOLERANCE_SECONDS = 300


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``Feishui-Signature`` header value for ``body`` sent at ``timestamp`` (unix seconds)."""
    return f"t={timestamp},v1={_mac(secret, body, timestamp)}"


def verify_signature(
    secret: str,
    header: str | None,
    body: bytes | str,
    now: datetime | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """Whether ``header`` is a valid ``Feishui-Signature`` of the raw ``body`` under ``secret``,
    made within ``tolerance`` seconds of ``now`` (default: the current time), either side.

    An empty secret verifies nothing. Several ``v1=`` values are accepted (any one may match).
    """
    if not secret or not header:
        return False
    timestamp, macs = _parse(header)
    if timestamp is None or not macs:
        return False
    moment = now or datetime.now(UTC)
    if abs(moment.timestamp() - timestamp) > tolerance:
        return False
    raw = body.encode("utf-8") if isinstance(body, str) else body
    expected = _mac(secret, raw, timestamp).encode("ascii")
    return any(hmac.compare_digest(expected, mac.encode("utf-8")) for mac in macs)


def _parse(header: str) -> tuple[int | None, list[str]]:
    timestamp, macs = None, []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isascii() and value.isdigit():
            timestamp = int(value)
        elif key == "v1":
            macs.append(value)
    return timestamp, macs


def _mac(secret: str, body: bytes, timestamp: int) -> str:
    message = f"{timestamp}.".encode("ascii") + body
    return hmac.new(secret.encode("utf-8"), message, hashlib.sha256).hexdigest()
