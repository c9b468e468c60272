"""Build the payment context of a process from its runtime: gateways, router, base URL."""

from __future__ import annotations

from functools import lru_cache

import httpx

from clearing.payments.nonces import DbNonceStore
from clearing.payments.service import PaymentContext
from clearing.routing import DEFAULT_RULES, Router
from clearing.runtime import Runtime, get_runtime
from gateways.registry import build_gateways
from notices.receipts import ESeal


def build_payment_context(runtime: Runtime, *, http: httpx.Client | None = None) -> PaymentContext:
    """Adapters for every enabled gateway, the default routing rules, the public base URL."""
    gateways = build_gateways(
        runtime.settings, http=http, nonce_store=DbNonceStore(runtime.sessions)
    )
    rules = [r for r in DEFAULT_RULES if r.gateway in gateways]
    return PaymentContext(
        gateways,
        Router(rules),
        runtime.settings.public_base_url,
        ESeal.from_settings(runtime.settings),
    )


@lru_cache(maxsize=1)
def get_payment_context() -> PaymentContext:
    """The process's payment context (jobs use it; the web app keeps its own on app.state)."""
    return build_payment_context(get_runtime())
