"""The gateways' side: one small FastAPI app per gateway, with its own keys and records.

``create_simulator(name, settings, **options)`` builds one; ``feishui serve`` mounts each under
``/sim/<name>``, and each also runs alone: ``uvicorn --factory gateways.simulators.alipay:app``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from importlib import import_module

import httpx
from fastapi import FastAPI

from clearing.config import Settings


def create_simulator(
    name: str,
    settings: Settings,
    *,
    notify_client: httpx.Client | None = None,
    deliver_notifies_inline: bool = False,
    retry_delays: Sequence[float] | None = None,
    clock: Callable[[], datetime] | None = None,
    fee_rate: Decimal | None = None,
) -> FastAPI:
    """The simulator app for gateway ``name`` (alipay, wechatpay, unionpay).

    ``notify_client`` sends the notifies (default: a new ``httpx.Client``; tests pass a
    ``TestClient`` of the receiving app). ``deliver_notifies_inline`` delivers a notify, retries
    included, before the checkout answers. ``retry_delays`` are the seconds between retries.
    ``app.state.simulator`` is the simulator object (its order book, notifier, ...).
    """
    if name not in ("alipay", "wechatpay", "unionpay"):
        raise ValueError(f"no simulator for gateway {name!r}")
    module = import_module(f"gateways.simulators.{name}")
    factory: Callable[..., FastAPI] = module.create_simulator
    return factory(
        settings,
        notify_client=notify_client,
        deliver_notifies_inline=deliver_notifies_inline,
        retry_delays=retry_delays,
        clock=clock,
        fee_rate=fee_rate,
    )
