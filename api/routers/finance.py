"""The finance API (``/v1/finance``): settlement uploads, reconciliation runs and their
exceptions (four eyes), the ledger, remittances to the treasury, and reports.

Every endpoint needs a finance user (API token or session, :mod:`api.finance_auth`); auditors
may read but not write (403). Amounts in JSON are yuan strings ("12.30") from integer fen.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Path, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from api.deps import db_session, get_runtime
from api.finance_auth import FinanceReader, FinanceWriter
from clearing.ledger.service import LedgerService
from clearing.money import format_fen
from notices.schemas import IsoDate
from reconciliation import exceptions, queries, remittance, uploads
from reconciliation.models import (
    REMITTANCE_STATES,
    RUN_STATES,
    ReconciliationItem,
    ReconciliationRun,
    Remittance,
)
from reconciliation.reports import MEDIA_TYPES, builders, render

router = APIRouter(prefix="/v1/finance", tags=["finance"])
Id = Annotated[int, Path(ge=1, le=2**63 - 1)]
Db = Annotated[Session, Depends(db_session, scope="function")]
"""One request, one transaction, committed before the response (reads and writes alike)."""
Format = Literal["csv", "xlsx", "pdf"]
PROBLEM = {"content": {"application/problem+json": {}}}
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"description": text, **PROBLEM}
    for code, text in (
        (401, "No finance user token or session"),
        (403, "A department key, a read-only role, a missing CSRF token or four eyes"),
        (404, "Not found"),
        (409, "Conflict with the current state"),
        (422, "Invalid request; `errors` names the fields"),
    )
}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PostingIn(Strict):
    account: str = Field(max_length=128, examples=["suspense"])
    direction: Literal["debit", "credit"]
    amount: str = Field(max_length=24, examples=["12.30"], description="yuan, 2 decimals")


class ProposeIn(Strict):
    reason: str = Field(min_length=1, max_length=400)
    postings: list[PostingIn] = Field(
        default_factory=list, max_length=20, description="empty: resolve by explanation, no entry"
    )
    business_date: IsoDate | None = Field(None, description="of the entry (default: the run's)")


class NoteIn(Strict):
    note: str | None = Field(None, max_length=400)


class RemittanceIn(Strict):
    business_date: IsoDate
    fiscal_account: str | None = Field(
        None,
        max_length=128,
        description="fiscal_bank:<account>; default: the one the day's "
        "settlements were credited to",
    )


# ------------------------------------------------------------------------------ views


def _yuan(value: Any) -> Any:
    """Fen as yuan text; anything else (a count, an exact decimal string) as stored."""
    return format_fen(value) if isinstance(value, int) and not isinstance(value, bool) else value


def run_out(run: ReconciliationRun, open_exceptions: int | None = None) -> dict[str, Any]:
    body = {
        "id": run.id,
        "source": run.source,
        "kind": run.kind,
        "business_date": run.business_date.isoformat(),
        "state": run.state,
        "file_name": run.file_name,
        "file_sha256": run.file_sha256,
        "file_format": run.file_format,
        "started_by": run.started_by,
        "started_at": run.started_at.isoformat(),
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "line_count": run.line_count,
        "counts": run.counts,
        "totals": {k: _yuan(v) for k, v in (run.totals or {}).items()},
        "error": run.error,
        "superseded_by_id": run.superseded_by_id,
    }
    if open_exceptions is not None:
        body["open_exceptions"] = open_exceptions
    return body


def item_out(item: ReconciliationItem) -> dict[str, Any]:
    def opt(fen: int | None) -> str | None:
        return format_fen(fen) if fen is not None else None

    return {
        "id": item.id,
        "run_id": item.run_id,
        "line_no": item.line_no,
        "outcome": item.outcome,
        "kind": item.kind,
        "order_id": item.order_id,
        "external_id": item.external_id,
        "amount": format_fen(item.amount),
        "expected_amount": opt(item.expected_amount),
        "fee": format_fen(item.fee),
        "expected_fee": opt(item.expected_fee),
        "detail": item.detail,
        "exception_state": item.exception_state,
        "proposed_by": item.proposed_by,
        "proposal": exceptions.describe_proposal(item.proposal),
        "resolved_by": item.resolved_by,
        "resolution_note": item.resolution_note,
        "resolved_at": item.resolved_at.isoformat() if item.resolved_at else None,
        "journal_entry_id": item.journal_entry_id,
    }


def remittance_out(row: Remittance) -> dict[str, Any]:
    return {
        "id": row.id,
        "treasury": row.treasury,
        "business_date": row.business_date.isoformat(),
        "sequence": row.sequence,
        "amount": format_fen(row.amount),
        "state": row.state,
        "journal_entry_id": row.journal_entry_id,
        "prepared_by": row.prepared_by,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "voucher": [{**line, "amount": format_fen(line["amount"])} for line in row.voucher],
        "links": {"voucher": f"/v1/finance/remittances/{row.id}/voucher.csv"},
    }


def _download(data: bytes, fmt: str, stem: str) -> Response:
    return Response(
        data,
        media_type=MEDIA_TYPES[fmt],
        headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'},
    )


# ------------------------------------------------------------------------------ uploads


@router.post("/settlement-files", status_code=202, responses=ERRORS)
async def upload_settlement_file(
    request: Request,
    who: FinanceWriter,
    file: Annotated[UploadFile, File(description="a gateway bill or a bank statement")],
    source: Annotated[str | None, Form(max_length=32)] = None,
    business_date: Annotated[IsoDate | None, Form()] = None,
) -> JSONResponse:
    """Store a settlement file and reconcile it in the background; 202 with the run id (or the
    existing run's id for the same file; null while a worker has not picked the job up)."""
    data = await file.read(uploads.MAX_BYTES + 1)
    runtime = get_runtime(request)
    result = await run_in_threadpool(
        uploads.submit,
        runtime.settings,
        runtime.sessions,
        data=data,
        filename=(file.filename or "upload")[:255],
        started_by=who.username,
        source=source or None,
        business_date=business_date,
    )
    return JSONResponse(
        {
            "run_id": result.run_id,
            "file_sha256": result.file_sha256,
            "existing": result.existing,
            "job_id": result.job_id,
            "error": result.error,
        },
        status_code=202,
    )


# ------------------------------------------------------------------------------ runs


@router.get("/reconciliation/runs", responses=ERRORS)
def list_runs(
    who: FinanceReader,
    session: Db,
    source: Annotated[str | None, Query(max_length=32)] = None,
    date: Annotated[IsoDate | None, Query(description="business date")] = None,
    state: Literal[RUN_STATES] | None = None,  # type: ignore[valid-type]
    file_sha256: Annotated[str | None, Query(max_length=64)] = None,
    limit: Annotated[int, Query(ge=1, le=queries.PAGE_LIMIT)] = 50,
    cursor: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    """Runs, newest first; follow ``next_cursor`` for more."""
    runs, next_cursor = queries.list_runs(
        session, queries.RunFilter(source, date, state, file_sha256), limit=limit, before_id=cursor
    )
    counts = queries.open_counts(session, [r.id for r in runs])
    return {"runs": [run_out(r, counts.get(r.id, 0)) for r in runs], "next_cursor": next_cursor}


@router.get("/reconciliation/runs/{run_id}", responses=ERRORS)
def get_run(run_id: Id, who: FinanceReader, session: Db) -> dict[str, Any]:
    """A run: what was read, by whom, totals per outcome, and every exception."""
    summary = queries.run_summary(session, run_id)
    return {
        **run_out(summary.run, summary.open_exceptions),
        "outcomes": [
            {
                "outcome": o.outcome,
                "count": o.count,
                "amount": format_fen(o.amount),
                "fee": format_fen(o.fee),
            }
            for o in summary.outcomes
        ],
        "exceptions": [item_out(i) for i in summary.exceptions],
        "links": {f: f"/v1/finance/reports/reconciliation/{run_id}.{f}" for f in MEDIA_TYPES},
    }


# ------------------------------------------------------------------------------ exceptions


@router.post("/reconciliation/items/{item_id}/propose", responses=ERRORS)
def propose(item_id: Id, body: ProposeIn, who: FinanceWriter, session: Db) -> dict[str, Any]:
    """Propose an adjusting entry (balanced postings) or, with no postings, an explanation."""
    legs = [exceptions.ProposedPosting(p.account, p.direction, p.amount) for p in body.postings]
    item = exceptions.propose(
        session,
        item_id,
        who.username,
        reason=body.reason,
        postings=legs,
        business_date=body.business_date,
    )
    return item_out(item)


@router.post("/reconciliation/items/{item_id}/approve", responses=ERRORS)
def approve(
    item_id: Id, who: FinanceWriter, session: Db, body: NoteIn | None = None
) -> dict[str, Any]:
    """Approve another officer's proposal: post its entry (``adjust:<item id>``), resolve."""
    return item_out(exceptions.approve(session, item_id, who.username, body.note if body else None))


@router.post("/reconciliation/items/{item_id}/reject", responses=ERRORS)
def reject(
    item_id: Id, who: FinanceWriter, session: Db, body: NoteIn | None = None
) -> dict[str, Any]:
    """Reject a proposal; the item is open again."""
    return item_out(exceptions.reject(session, item_id, who.username, body.note if body else None))


# ------------------------------------------------------------------------------ ledger


@router.get("/ledger/trial-balance", responses=ERRORS)
def trial_balance(who: FinanceReader, session: Db, as_of: IsoDate | None = None) -> dict[str, Any]:
    """Debit and credit balances per account up to a business date; balanced or not."""
    tb = LedgerService(session).trial_balance(as_of=as_of)
    rows = [
        {
            "account": r.code,
            "type": r.type.value,
            "currency": r.currency,
            "debit": format_fen(max(r.debits - r.credits, 0)),
            "credit": format_fen(max(r.credits - r.debits, 0)),
        }
        for r in tb.rows
    ]
    totals = {
        cur: {"debit": format_fen(d), "credit": format_fen(c)}
        for cur, (d, c) in tb.totals().items()
    }
    return {
        "as_of": as_of.isoformat() if as_of else None,
        "rows": rows,
        "totals": totals,
        "balanced": tb.balanced,
    }


@router.get("/ledger/balances", responses=ERRORS)
def balances(who: FinanceReader, session: Db, as_of: IsoDate | None = None) -> dict[str, Any]:
    """Every account's debits, credits and balance (in its normal direction)."""
    rows = LedgerService(session).balances(as_of=as_of)
    return {
        "as_of": as_of.isoformat() if as_of else None,
        "accounts": [
            {
                "account": r.code,
                "type": r.type.value,
                "currency": r.currency,
                "debits": format_fen(r.debits),
                "credits": format_fen(r.credits),
                "balance": format_fen(r.balance),
            }
            for r in rows
        ],
    }


# ------------------------------------------------------------------------------ remittances


@router.post("/remittances", responses={201: {"description": "Remittances prepared"}, **ERRORS})
def prepare_remittances(body: RemittanceIn, who: FinanceWriter, session: Db) -> JSONResponse:
    """Prepare the day's remittance per treasury (idempotent per treasury and day): 201 when
    any was created, 200 when all existed."""
    prepared = remittance.prepare(
        session, body.business_date, who.username, fiscal_account=body.fiscal_account
    )
    created = any(p.created for p in prepared)
    unsettled = remittance.unsettled_gateways(
        session, body.business_date, set(remittance.settlement_entries(session, body.business_date))
    )
    return JSONResponse(
        {
            "business_date": body.business_date.isoformat(),
            "unsettled_gateways": unsettled,
            "remittances": [
                {**remittance_out(p.remittance), "created": p.created} for p in prepared
            ],
        },
        status_code=201 if created else 200,
    )


@router.get("/remittances", responses=ERRORS)
def list_remittances(
    who: FinanceReader,
    session: Db,
    business_date: IsoDate | None = None,
    state: Literal[REMITTANCE_STATES] | None = None,  # type: ignore[valid-type]
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> dict[str, Any]:
    rows = remittance.list_remittances(
        session, business_date=business_date, state=state, limit=limit
    )
    return {"remittances": [remittance_out(r) for r in rows]}


@router.get("/remittances/{remittance_id}", responses=ERRORS)
def get_remittance(remittance_id: Id, who: FinanceReader, session: Db) -> dict[str, Any]:
    return remittance_out(remittance.get(session, remittance_id))


@router.get(
    "/remittances/{remittance_id}/voucher.csv",
    responses={200: {"content": {"text/csv": {}}}, **ERRORS},
)
def voucher(remittance_id: Id, who: FinanceReader, session: Db) -> Response:
    """The remittance voucher: lines by revenue code and budget level, then the total."""
    row = remittance.get(session, remittance_id)
    stem = f"remittance-{row.treasury}-{row.business_date.isoformat()}"
    return _download(remittance.voucher_csv(row).encode("utf-8"), "csv", stem)


@router.post("/remittances/{remittance_id}/mark-sent", responses=ERRORS)
def mark_sent(remittance_id: Id, who: FinanceWriter, session: Db) -> dict[str, Any]:
    """prepared -> sent (409 from any other state; repeating is harmless)."""
    return remittance_out(remittance.advance(session, remittance_id, "sent"))


@router.post("/remittances/{remittance_id}/confirm", responses=ERRORS)
def confirm(remittance_id: Id, who: FinanceWriter, session: Db) -> dict[str, Any]:
    """sent -> confirmed (409 from any other state; repeating is harmless)."""
    return remittance_out(remittance.advance(session, remittance_id, "confirmed"))


# ------------------------------------------------------------------------------ reports


REPORT_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"content": {t: {} for t in MEDIA_TYPES.values()}},
    **ERRORS,
}


@router.get("/reports/reconciliation/{run_id}.{fmt}", responses=REPORT_RESPONSES)
def run_report(run_id: Id, fmt: Format, who: FinanceReader, session: Db) -> Response:
    """A run's reconciliation report: the summary and every exception."""
    report = builders.run_report(session, run_id)
    return _download(render(report, fmt), fmt, report.filename)


@router.get("/reports/collections/{day}.{fmt}", responses=REPORT_RESPONSES)
def collections_report(day: IsoDate, fmt: Format, who: FinanceReader, session: Db) -> Response:
    """A business day's collections by department, item, channel and treasury."""
    report = builders.collections_report(session, day)
    return _download(render(report, fmt), fmt, report.filename)


@router.get("/reports/trial-balance.{fmt}", responses=REPORT_RESPONSES)
def trial_balance_report(
    fmt: Format, who: FinanceReader, session: Db, as_of: IsoDate | None = None
) -> Response:
    """The trial balance up to ``as_of`` (default: everything)."""
    report = builders.trial_balance_report(session, as_of)
    return _download(render(report, fmt), fmt, report.filename)
