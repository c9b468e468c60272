"""Per-gateway configuration read from ``Settings.gateway_options`` with development defaults.

The defaults are the simulators' merchant ids, so a fresh clone works with no configuration.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from clearing.config import Settings

SHANGHAI = ZoneInfo("Asia/Shanghai")
"""Gateways' business time zone: bill dates, wire timestamps."""

GATEWAY_NAMES = ("alipay", "wechatpay", "unionpay")

DEFAULTS: dict[str, dict[str, str]] = {
    "alipay": {"merchant_id": "2021000000000001", "pid": "2088102177846880", "fee_rate": "0.006"},
    "wechatpay": {"merchant_id": "1900000109", "appid": "wx2421b1c4370ec43b", "fee_rate": "0.006"},
    "unionpay": {"merchant_id": "898510148990001", "fee_rate": "0.003"},
}


def option(settings: Settings, gateway: str, key: str) -> str:
    """``settings.gateway_options[gateway][key]``, else the development default, else ``""``."""
    configured = settings.gateway_options.get(gateway, {})
    return configured.get(key) or DEFAULTS.get(gateway, {}).get(key, "")


def base_url(settings: Settings, gateway: str) -> str:
    """The gateway's base URL, without a trailing slash (default: the mounted simulator)."""
    url = option(settings, gateway, "base_url") or f"{settings.public_base_url}/sim/{gateway}"
    return url.rstrip("/")


def fee_rate(settings: Settings, gateway: str) -> Decimal:
    """The simulator's fee rate as an exact decimal fraction (``"0.006"`` is 0.6%)."""
    return Decimal(option(settings, gateway, "fee_rate") or "0")


def utc_now() -> datetime:
    """The default clock: an aware UTC now."""
    return datetime.now(UTC)
