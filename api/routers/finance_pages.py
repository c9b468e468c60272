"""The finance pages: log in and out, the dashboard (recent runs, 14 days of collections as a
server-drawn SVG chart) and a run's exceptions with the four-eyes forms. Server-rendered, no
JavaScript; every form carries the CSRF token (double submit with the ``fs_csrf`` cookie).

The session cookie ``fs_session`` holds a random token whose hash is stored (8 hours):
HttpOnly, SameSite=Strict, Secure over https.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session

from api.deps import db_session, get_runtime
from api.finance_auth import SESSION_COOKIE, TooManyAttempts, login_guard
from api.security import CSRF_COOKIE, SECURITY_HEADERS, csrf_ok, new_csrf_token
from clearing.db import run_in_transaction, transaction
from clearing.errors import FeishuiError, NotFound, Unauthorized
from clearing.money import format_fen
from notices.service import today_in_shanghai
from reconciliation import exceptions, queries, users
from reconciliation.collected import daily_totals
from reconciliation.reports.chart import bar_chart_svg
from reconciliation.users import SESSION_HOURS, FinanceUser

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=str(Path(__file__).parent.parent / "templates"))
templates.env.globals["yuan"] = format_fen
Db = Annotated[Session, Depends(db_session, scope="function")]
CHART_DAYS = 14


def _secret(request: Request) -> str:
    return get_runtime(request).settings.secret("secret_key")


def _csrf(request: Request) -> str:
    token = request.cookies.get(CSRF_COOKIE)
    secret = _secret(request)
    return token if token and csrf_ok(secret, token, token) else new_csrf_token(secret)


def _page(request: Request, name: str, status: int = 200, **context: Any) -> HTMLResponse:
    csrf = _csrf(request)
    response = templates.TemplateResponse(
        request, name, {"csrf": csrf, **context}, status_code=status
    )
    response.set_cookie(
        CSRF_COOKIE, csrf, httponly=True, samesite="strict", secure=request.url.scheme == "https"
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def _session_user(request: Request) -> FinanceUser | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    try:
        return run_in_transaction(
            get_runtime(request).sessions, lambda s: users.authenticate(s, cookie, kind="session")
        )
    except Unauthorized:
        return None


def _to_login() -> RedirectResponse:
    response = RedirectResponse("/finance/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _csrf_ok(request: Request, token: str) -> bool:
    return csrf_ok(_secret(request), request.cookies.get(CSRF_COOKIE), token)


# ------------------------------------------------------------------------------ login


@router.get("/finance/login")
def login_form(request: Request) -> HTMLResponse:
    return _page(request, "finance_login.html", user=None)


@router.post("/finance/login")
def login(
    request: Request,
    username: Annotated[str, Form(max_length=64)] = "",
    password: Annotated[str, Form(max_length=256)] = "",
    csrf_token: Annotated[str, Form()] = "",
) -> Response:
    if not _csrf_ok(request, csrf_token):
        return _page(
            request,
            "finance_login.html",
            403,
            user=None,
            username=username,
            error="表单已过期，请重试 The form expired; try again",
        )
    guard = login_guard(request)
    keys = (f"user:{username.lower()}", f"ip:{request.client.host if request.client else '-'}")
    try:
        guard.check(*keys)
        with transaction(get_runtime(request).sessions) as s:
            _user, token = users.login(s, username, password)
    except TooManyAttempts as exc:
        return _page(
            request,
            "finance_login.html",
            429,
            user=None,
            username=username,
            error=f"登录失败次数过多 {exc.detail}",
        )
    except Unauthorized:
        guard.failed(*keys)
        return _page(
            request,
            "finance_login.html",
            401,
            user=None,
            username=username,
            error="用户名或密码错误 Wrong user name or password",
        )
    response = RedirectResponse("/finance", status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token.full,
        max_age=SESSION_HOURS * 3600,
        path="/",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/finance/logout")
def logout(request: Request, csrf_token: Annotated[str, Form()] = "") -> Response:
    if not _csrf_ok(request, csrf_token):
        return _page(
            request,
            "finance_login.html",
            403,
            user=None,
            error="表单已过期，请重试 The form expired; try again",
        )
    with transaction(get_runtime(request).sessions) as s:
        users.logout(s, request.cookies.get(SESSION_COOKIE))
    return _to_login()


# ------------------------------------------------------------------------------ dashboard


@router.get("/finance")
def dashboard(request: Request, db: Db) -> Response:
    user = _session_user(request)
    if user is None:
        return _to_login()
    last = today_in_shanghai()
    days = daily_totals(db, last - timedelta(days=CHART_DAYS - 1), last)
    chart = bar_chart_svg(
        [(d.strftime("%m-%d"), fen) for d, (_, fen) in days.items()],
        title=f"近{CHART_DAYS}日收缴 Collections of the last {CHART_DAYS} days",
    )
    runs, _ = queries.list_runs(db, queries.RunFilter(), limit=20)
    return _page(
        request,
        "finance_home.html",
        user=user,
        chart=chart,
        runs=runs,
        open=queries.open_counts(db, [r.id for r in runs]),
        days=[(d.isoformat(), v) for d, v in days.items()],
        total_fen=sum(fen for _, fen in days.values()),
        total_payments=sum(n for n, _ in days.values()),
    )


@router.get("/finance/runs/{run_id}")
def run_page(
    request: Request, run_id: int, db: Db, message: str | None = None, failed: str = ""
) -> Response:
    user = _session_user(request)
    if user is None:
        return _to_login()
    try:
        summary = queries.run_summary(db, run_id)
    except FeishuiError:
        return _page(request, "finance_login.html", 404, user=user, error="没有该批次 No such run")
    return _page(
        request,
        "finance_run.html",
        user=user,
        run=summary.run,
        outcomes=summary.outcomes,
        items=summary.exceptions,
        can_write=user.can_write,
        message=message,
        failed=bool(failed),
    )


@router.post("/finance/runs/{run_id}/items/{item_id}/{action}")
async def item_action(request: Request, run_id: int, item_id: int, action: str) -> Response:
    """Propose, approve or reject from the run page; back to it with a message (PRG)."""
    user = await run_in_threadpool(_session_user, request)
    if user is None:
        return _to_login()
    form = await request.form()
    if not _csrf_ok(request, str(form.get("csrf_token") or "")):
        return _page(
            request,
            "finance_login.html",
            403,
            user=user,
            error="表单已过期，请重试 The form expired; try again",
        )
    try:
        user.require_write()
        work = _action(action, item_id, user, form)
        await run_in_threadpool(run_in_transaction, get_runtime(request).sessions, work)
        message, failed = f"{action}: ok", False
    except FeishuiError as exc:
        message, failed = f"{action}: {exc.detail}", True
    query = {"message": message, "failed": "1" if failed else ""}
    url = request.url_for("run_page", run_id=run_id).include_query_params(**query)
    return RedirectResponse(url.path + "?" + url.query, status_code=303)


def _action(action: str, item_id: int, user: FinanceUser, form: Any):  # type: ignore[no-untyped-def]
    note = str(form.get("note") or "") or None
    if action == "approve":
        return lambda s: exceptions.approve(s, item_id, user.username, note)
    if action == "reject":
        return lambda s: exceptions.reject(s, item_id, user.username, note)
    if action == "propose":
        legs = [
            exceptions.ProposedPosting(a.strip(), d, m.strip())
            for d, a, m in zip(
                form.getlist("direction"),
                form.getlist("account"),
                form.getlist("amount"),
                strict=False,
            )
            if str(a).strip() or str(m).strip()
        ]
        return lambda s: exceptions.propose(
            s, item_id, user.username, reason=str(form.get("reason") or ""), postings=legs
        )
    raise NotFound(f"unknown action {action!r}")
