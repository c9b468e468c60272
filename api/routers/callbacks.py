"""Gateways' asynchronous notifies: verify on the raw body, capture once, answer as expected.

Forged, tampered, stale or replayed notifies change nothing: they are logged and answered with
the gateway's "failure" answer. A genuine duplicate is acknowledged without a second capture.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from api.deps import get_runtime
from clearing import metrics
from clearing.db import transaction
from clearing.errors import NotFound
from clearing.payments.capture import capture
from clearing.payments.models import GatewayNotification
from clearing.payments.tasks import after_commit
from gateways.protocol import RawRequest, VerificationError

router = APIRouter(tags=["gateway callbacks"])
log = logging.getLogger("feishui.notify")


@router.post("/v1/gateways/{gateway}/notify", summary="A gateway's payment notification")
async def notify(request: Request, gateway: str) -> Response:
    adapter = request.app.state.payments.gateways.get(gateway)
    if adapter is None:
        raise NotFound(f"no gateway {gateway!r}")
    raw = RawRequest(
        request.method,
        {k.lower(): v for k, v in request.headers.items()},
        await request.body(),
        request.scope.get("query_string", b"").decode(),  # what request.url.query parses out
    )
    accepted = await run_in_threadpool(_handle, request, gateway, adapter, raw)
    ack = adapter.ack(accepted)
    return Response(ack.body, status_code=ack.status_code, media_type=ack.media_type)


def _handle(request: Request, gateway: str, adapter, raw: RawRequest) -> bool:  # type: ignore[no-untyped-def]
    sessions = get_runtime(request).sessions
    try:
        result = adapter.parse_notify(raw)
    except VerificationError as exc:
        metrics.notify_verification_failures.labels(gateway=gateway).inc()
        log.warning("refused a %s notify: %s", gateway, exc.detail)
        with transaction(sessions) as session:
            session.add(
                GatewayNotification(
                    gateway=gateway,
                    outcome="rejected",
                    detail=exc.detail[:2000],
                    received_at=datetime.now(UTC),
                )
            )
        return False
    eseal = request.app.state.payments.eseal
    outcome = capture(sessions, result, source="notify", eseal=eseal)
    after_commit(outcome, sessions, request.app.state.payments)
    metrics.captures.labels(gateway=gateway, outcome=outcome.outcome).inc()
    return outcome.acknowledged
