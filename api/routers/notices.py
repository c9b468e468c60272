"""The department API for payment notices (``/v1/notices``)."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse, Response

from api.deps import Reader, ReadSession, Unit, View, Write, make_view
from clearing import metrics
from clearing.gc_pause import gc_paused
from notices import idempotency, service, views
from notices.documents import qr_png, render_notice_pdf
from notices.schemas import (
    AmountDueOut,
    BatchCreate,
    BatchOut,
    IsoDate,
    NoticeCreate,
    NoticeKind,
    NoticeOut,
    NoticePage,
    NoticeStatus,
    parse_batch,
)

router = APIRouter(prefix="/v1/notices", tags=["notices"])
NoticeId = Annotated[int, Path(ge=1, le=2**63 - 1)]
PROBLEM = {"content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, **PROBLEM}
    for code, text in (
        (401, "Missing, invalid or revoked API key"),
        (403, "The API key lacks the scope"),
        (404, "No such notice"),
        (409, "Conflict with the notice's state or an in-flight request"),
        (422, "Invalid request; `errors` names the fields"),
    )
}


def respond(unit: Write, status: int, body: dict[str, Any]) -> JSONResponse:
    """Send ``body``, storing it first for replays when the request carried an Idempotency-Key."""
    if unit.claim is not None:
        idempotency.complete(unit.session, unit.claim, status, body)
    return JSONResponse(body, status_code=status)


# The POSTs are ``async`` and do their work in ``unit.run``: the transaction, the work and the
# commit take one trip to the thread pool instead of three.


@router.post("", status_code=201, response_model=NoticeOut, responses=ERRORS)
async def create_notice(body: NoticeCreate, unit: Unit, request: Request) -> JSONResponse:
    """Issue a payment notice."""
    view = make_view(request)

    def work(write: Write) -> JSONResponse:
        issued = service.issue_notice(write.session, write.who, body, view.vault, today=view.today)
        return respond(write, 201, views.issued_body(issued, view))

    response = await unit.run(work)
    _created(body.kind).inc()
    return response


@lru_cache(maxsize=8)
def _created(kind: str) -> Any:
    """The ``notices_created`` counter of ``kind`` (``labels`` costs a lock and a lookup)."""
    return metrics.notices_created.labels(kind=kind)


@router.post("/batch", response_model=BatchOut, responses=ERRORS)
async def create_batch(body: BatchCreate, unit: Unit, request: Request) -> JSONResponse:
    """Issue up to 10,000 notices: valid ones are created together, invalid ones reported."""
    view = make_view(request)

    def work(write: Write) -> JSONResponse:
        # A batch keeps up to 10,000 notices' objects alive: collecting meanwhile only
        # re-scans them (see clearing/gc_pause.py).
        with gc_paused():
            requests = parse_batch(body.notices)
            outcomes = service.create_batch(
                write.session, write.who, requests, view.vault, today=view.today
            )
            return respond(write, 200, views.batch_body(outcomes))

    return await unit.run(work)


@router.get("", response_model=NoticePage, responses=ERRORS)
def list_notices(
    who: Reader,
    session: ReadSession,
    view: View,
    status: NoticeStatus | None = None,
    kind: NoticeKind | None = None,
    reference: Annotated[str | None, Query(max_length=64)] = None,
    created_from: IsoDate | None = None,
    created_to: IsoDate | None = None,
    due_from: IsoDate | None = None,
    due_to: IsoDate | None = None,
    limit: Annotated[int, Query(ge=1, le=service.PAGE_LIMIT)] = 20,
    cursor: Annotated[str | None, Query(max_length=100)] = None,
) -> NoticePage:
    """The department's notices, newest first; follow ``next_cursor`` for more."""
    filters = service.NoticeFilter(
        status, kind, reference, created_from, created_to, due_from, due_to
    )
    page = service.list_notices(session, who.department_id, filters, limit=limit, cursor=cursor)
    return views.page_out(page, view)


@router.get("/{notice_id}", response_model=NoticeOut, responses=ERRORS)
def get_notice(notice_id: NoticeId, who: Reader, session: ReadSession, view: View) -> NoticeOut:
    """One of the department's notices."""
    return views.notice_out(service.get_notice(session, who.department_id, notice_id), view)


@router.get("/{notice_id}/amount-due", response_model=AmountDueOut, responses=ERRORS)
def amount_due(
    notice_id: NoticeId, who: Reader, session: ReadSession, view: View, on: IsoDate | None = None
) -> AmountDueOut:
    """Principal, late fee and total if paid on ``on`` (default today, Asia/Shanghai)."""
    notice = service.get_notice(session, who.department_id, notice_id)
    return views.amount_due_out(notice, on or view.today)


@router.post("/{notice_id}/cancel", response_model=NoticeOut, responses=ERRORS)
async def cancel_notice(notice_id: NoticeId, unit: Unit, request: Request) -> JSONResponse:
    """Cancel an unpaid notice (409 for any other status)."""
    view = make_view(request)

    def work(write: Write) -> JSONResponse:
        notice = service.cancel_notice(write.session, write.who.department_id, notice_id)
        return respond(write, 200, views.notice_out(notice, view).model_dump(mode="json"))

    return await unit.run(work)


@router.get(
    "/{notice_id}/document.pdf",
    responses={
        200: {"content": {"application/pdf": {}}, "description": "The printable notice"},
        **ERRORS,
    },
)
def notice_pdf(notice_id: NoticeId, who: Reader, session: ReadSession, view: View) -> Response:
    """The printable notice, with the payment code and a QR code of the pay link."""
    notice = service.get_notice(session, who.department_id, notice_id)
    pdf = render_notice_pdf(service.notice_document(notice, view.public_base_url))
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="notice-{notice.payment_code}.pdf"'},
    )


@router.get(
    "/{notice_id}/qr.png",
    responses={
        200: {"content": {"image/png": {}}, "description": "QR code of the pay link"},
        **ERRORS,
    },
)
def notice_qr(notice_id: NoticeId, who: Reader, session: ReadSession, view: View) -> Response:
    """A QR code (PNG) of the notice's pay link."""
    notice = service.get_notice(session, who.department_id, notice_id)
    return Response(qr_png(service.pay_url(view.public_base_url, notice)), media_type="image/png")
