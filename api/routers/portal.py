"""The citizens' portal: enter a code, see what is due today, pay through a gateway, come back.

Server-rendered, Chinese by default with an English switch (``?lang=en``, kept in a cookie), and
the whole flow works without JavaScript: the gateway form auto-submits with JS and has a button
without it; the return page refreshes itself with a meta refresh.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import select
from sqlalchemy.orm import Session

from api.deps import db_session, get_runtime
from api.i18n import texts
from api.security import CSRF_COOKIE, csrf_ok, new_csrf_token
from clearing.errors import NotFound
from clearing.money import format_fen
from clearing.payments import service as payments
from clearing.payments.tasks import refresh_attempt
from clearing.routing import NoRoute
from notices.codes import PaymentCodeError, validate_code
from notices.public import find_public
from notices.receipt_models import Receipt
from notices.receipts import verify_url
from notices.service import today_in_shanghai

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))
templates.env.globals["yuan"] = format_fen
Db = Annotated[Session, Depends(db_session, scope="function")]


def _lang(request: Request) -> str:
    lang = request.query_params.get("lang") or request.cookies.get("lang") or "zh"
    return lang if lang in ("zh", "en") else "zh"


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    lang = _lang(request)
    response = templates.TemplateResponse(
        request, name, {"lang": lang, "t": texts(lang), **context}, status_code=status
    )
    if "lang" in request.query_params:
        response.set_cookie("lang", lang, max_age=365 * 86400, samesite="lax")
    return response


def _message(request: Request, key: str, status: int, **kw: Any) -> HTMLResponse:
    return _page(request, "message.html", status, message=texts(_lang(request))[key], **kw)


def _limited(request: Request) -> Response | None:
    wait = request.app.state.lookup_limiter.hit(request.client.host if request.client else "-")
    if not wait:
        return None
    response = _message(request, "too_many", 429)
    response.headers["Retry-After"] = str(int(wait) + 1)
    return response


@router.get("/pay")
def enter_code(request: Request) -> HTMLResponse:
    return _page(request, "enter_code.html")


@router.get("/pay/lookup")
def lookup(request: Request, code: str = "") -> Response:
    try:
        return RedirectResponse(f"/pay/{validate_code(code)}", status_code=303)
    except PaymentCodeError as exc:
        return _page(
            request,
            "enter_code.html",
            422,
            code=code,
            error=texts(_lang(request))["bad_code"] + exc.detail,
        )


@router.get("/pay/{code}")
def show_notice(request: Request, code: str, db: Db) -> Response:
    return _limited(request) or _notice_page(request, db, code)


def _notice_page(
    request: Request, db: Session, code: str, error: str | None = None, status: int = 200
) -> Response:
    t = texts(_lang(request))
    try:
        notice = find_public(db, code, today_in_shanghai())
    except PaymentCodeError as exc:
        return _page(request, "enter_code.html", 422, code=code, error=t["bad_code"] + exc.detail)
    except NotFound:
        return _page(request, "enter_code.html", 404, code=code, error=t["unknown_code"])
    secret = get_runtime(request).settings.secret("secret_key")
    token = request.cookies.get(CSRF_COOKIE) or new_csrf_token(secret)
    response = _page(
        request,
        "notice.html",
        status,
        n=notice,
        csrf=token,
        error=error,
        channels=request.app.state.payments.router.channels(),
        receipt_url=_receipt_url(request, db, notice_id=notice.notice_id),
    )
    response.set_cookie(
        CSRF_COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    return response


@router.post("/pay/{code}/checkout")
def checkout(
    request: Request,
    code: str,
    db: Db,
    channel: Annotated[str, Form()],
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    secret = get_runtime(request).settings.secret("secret_key")
    if not csrf_ok(secret, request.cookies.get(CSRF_COOKIE), csrf_token):
        return _message(request, "csrf", 403)
    t = texts(_lang(request))
    try:
        started = payments.start_attempt(db, request.app.state.payments, code, channel)
    except NoRoute:
        return _notice_page(request, db, code, t["no_gateway"], 503)
    except (payments.NoticeNotPayable, NotFound, PaymentCodeError):
        return _notice_page(request, db, code)
    if started.redirect.method.upper() == "GET" and not started.redirect.fields:
        return RedirectResponse(started.redirect.url, status_code=303)
    return _page(request, "redirect.html", redirect=started.redirect)


@router.get("/pay/return/{order_id}")
def payment_return(request: Request, order_id: str) -> Response:
    """The browser is back from the gateway. Proves nothing by itself: we ask the gateway."""
    runtime = get_runtime(request)
    try:
        refresh_attempt(runtime.sessions, request.app.state.payments, order_id)
    except NotFound:
        return _message(request, "unknown_code", 404)
    with runtime.sessions() as db:
        attempt = payments.get_attempt(db, order_id)
        notice_code = attempt.notice_id and _code_of(db, attempt.notice_id)
        return _page(
            request,
            "return.html",
            order_id=order_id,
            state=attempt.state,
            amount=attempt.amount,
            payment_code=notice_code,
            receipt_url=_receipt_url(request, db, attempt_id=attempt.id),
        )


def _code_of(db: Session, notice_id: int) -> str:
    from notices.models import Notice

    return db.scalar(select(Notice.payment_code).where(Notice.id == notice_id)) or ""


def _receipt_url(
    request: Request, db: Session, *, notice_id: int | None = None, attempt_id: int | None = None
) -> str | None:
    query = select(Receipt)
    query = (
        query.where(Receipt.notice_id == notice_id)
        if notice_id is not None
        else query.where(Receipt.attempt_id == attempt_id)
    )
    receipt = db.scalars(query).one_or_none()
    base = get_runtime(request).settings.public_base_url
    return verify_url(base, receipt) if receipt else None
