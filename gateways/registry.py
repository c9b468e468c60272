"""Build the configured gateways: our adapters, pointed at the real gateways or the simulators.

Which address each adapter talks to, and with which merchant ids, comes from
``Settings.gateway_options`` (see docs/gateways.md); keys come from ``<var_dir>/keys/<name>/``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import httpx

from clearing.config import Settings
from gateways.alipay.adapter import AlipayGateway
from gateways.options import GATEWAY_NAMES
from gateways.protocol import NonceStore, PaymentGateway
from gateways.unionpay.adapter import UnionPayGateway
from gateways.wechatpay.adapter import WechatPayGateway

DEFAULT_TIMEOUT = httpx.Timeout(10.0, connect=5.0)


def build_gateways(
    settings: Settings,
    *,
    http: httpx.Client | None = None,
    nonce_store: NonceStore,
    clock: Callable[[], datetime] | None = None,
) -> dict[str, PaymentGateway]:
    """One adapter per enabled gateway, keyed by name (alipay, wechatpay, unionpay).

    A gateway is disabled with ``gateway_options[name]["enabled"] = "false"``. ``http`` is shared
    by all adapters (default: a new client with a 10 s timeout); ``nonce_store`` refuses replayed
    notifies; ``clock`` is for tests.
    """
    client = http or httpx.Client(timeout=DEFAULT_TIMEOUT)
    builders: dict[str, Callable[[], PaymentGateway]] = {
        "alipay": lambda: AlipayGateway.from_settings(settings, http=client, clock=clock),
        "wechatpay": lambda: WechatPayGateway.from_settings(
            settings, http=client, nonce_store=nonce_store, clock=clock
        ),
        "unionpay": lambda: UnionPayGateway.from_settings(settings, http=client, clock=clock),
    }
    return {name: builders[name]() for name in GATEWAY_NAMES if _enabled(settings, name)}


def _enabled(settings: Settings, name: str) -> bool:
    flag = settings.gateway_options.get(name, {}).get("enabled", "true")
    return flag.strip().lower() not in ("false", "0", "no", "off")
