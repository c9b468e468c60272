"""The HTTP application. Each audience has its own router (``api/routers``); add new ones in
:data:`ROUTERS` or with ``app.include_router`` on the result of :func:`create_app`."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI

from api.errors import install as install_error_handlers
from api.observability import install_observability
from api.ratelimit import install_rate_limit
from api.routers import (
    callbacks,
    catalogue,
    finance,
    finance_pages,
    health,
    notices,
    portal,
    receipts,
    refunds,
)
from api.runtime import Runtime, get_runtime
from api.security_headers import install_security_headers
from api.shared_ratelimit import make_limiter
from clearing import metrics
from clearing.payments.service import PaymentContext
from clearing.payments.wiring import build_payment_context
from gateways.options import GATEWAY_NAMES
from gateways.simulators import create_simulator
from notices.privacy import PayerVault

#: In matching order: FastAPI tries each router's routes in turn (twice per request), so the
#: busiest paths come first. A gateway's notify is matched first: it is the most frequent request
#: and the one a gateway waits on (11 routes ahead of it cost 30 us a request).
ROUTERS: tuple[APIRouter, ...] = (
    callbacks.router,
    notices.router,
    refunds.router,
    catalogue.router,
    portal.router,
    receipts.router,
    finance.router,
    finance_pages.router,
    health.router,
)
#: Payment-code look-ups per client: 20 a minute (against enumeration of codes).
LOOKUPS_PER_MINUTE = 20


def create_app(
    runtime: Runtime | None = None,
    *,
    payments: PaymentContext | None = None,
    simulators: bool | None = None,
    simulator_client: httpx.Client | None = None,
) -> FastAPI:
    """Build the app on ``runtime`` (default: the process runtime from the environment).

    ``payments`` is the gateways/router context (default: built from the settings).
    ``simulators`` mounts the gateway simulators under ``/sim/<name>`` (default: everywhere but
    production); ``simulator_client`` is how they send notifies (default: real HTTP).
    """
    runtime = runtime or get_runtime()
    app = FastAPI(
        title="feishui",
        summary="Payment clearing for government non-tax revenue",
        version="0.1.0",
        docs_url="/docs",
        openapi_url="/openapi.json",
    )
    app.state.runtime = runtime
    app.state.vault = PayerVault.from_settings(runtime.settings)
    app.state.payments = payments or build_payment_context(runtime)
    app.state.lookup_limiter = make_limiter(
        LOOKUPS_PER_MINUTE, 60, "lookup", runtime.settings.redis_url
    )
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    install_security_headers(app)
    install_rate_limit(app)
    install_observability(app)  # after the routes: it adds /metrics and times every route
    metrics.set_circuit_breaker_source(lambda: app.state.payments.router.health())
    if simulators if simulators is not None else runtime.settings.env != "production":
        for name in GATEWAY_NAMES:
            app.mount(
                f"/sim/{name}",
                create_simulator(name, runtime.settings, notify_client=simulator_client),
            )
    return app
