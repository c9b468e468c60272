"""Reconciliation runs: the imperative shell around :mod:`reconciliation.matching`.

A run is keyed by (source, business date, file SHA-256).

- **Idempotent**: the same file again returns the existing succeeded run and changes nothing.
- **Atomic**: all postings and items of a run are one transaction (``_post``). A broken file
  (a :class:`StatementError` anywhere, including the footer checked after the last line) posts
  nothing; the failed run and its error are recorded in a separate transaction.
- **Supersede**: a corrected file for the same source and day supersedes the earlier succeeded
  run in the same transaction as the new postings: the entries the earlier run posted are
  reversed, and for a bill, a settlement posted from the earlier bill's totals is reversed and
  posted again from the corrected totals.
- **Crash-safe**: the run row is claimed (``running``) in its own short transaction. A worker
  killed mid-run leaves that row and nothing else; a re-run reclaims it. Liveness is not judged
  by age: concurrent runs of one source and day are serialised inside the posting transaction
  (a PostgreSQL advisory transaction lock; SQLite's ``BEGIN IMMEDIATE``), and the run row is
  re-read after the lock, so a second worker finds the first one's result and stops.
- Gateway queries for lines missing on our side happen before the posting transaction opens.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlalchemy import Connection, Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from clearing import metrics
from clearing.config import get_settings
from clearing.errors import FeishuiError, NotFound, ValidationError
from clearing.ledger.core import Entry, Posting
from clearing.ledger.models import JournalEntry
from clearing.ledger.service import LedgerService
from clearing.payments.capture import CaptureOutcome, apply_result
from clearing.payments.service import PaymentContext
from gateways import options
from gateways.protocol import GatewayStatus, GatewayUnavailable, PaymentResult
from reconciliation import matching
from reconciliation import repository as repo
from reconciliation.filestore import sha256_of
from reconciliation.lines import StatementLine
from reconciliation.matching import BillSummary, Outcome
from reconciliation.models import ReconciliationItem, ReconciliationRun
from reconciliation.parsers import StatementError, detect_format, parse, parse_rows

log = logging.getLogger(__name__)

BILL_FORMATS = ("alipay", "wechatpay", "unionpay")
STATEMENT_FORMATS = ("ofx", "camt053")
DEFAULT_ACCOUNT = "fiscal_bank:icbc-510100"
RUN_REF = "reconciliation_run"
SET_BASED = True
"""PostgreSQL: classify with one INSERT ... SELECT over the staged lines (the rules of
:func:`matching.classify`, checked equal by tests); False streams both sorted sides through the
pure classifier instead (bounded memory too, about 3x slower)."""
_FILE_DATE = re.compile(r"(20[0-9]{2})([01][0-9])([0-3][0-9])")


class RunFailed(ValidationError):
    """The run failed (a broken file, or an error while posting); nothing was posted."""

    type = "reconciliation-failed"

    def __init__(self, run_id: int, error: str) -> None:
        super().__init__(f"reconciliation run {run_id} failed: {error}")
        self.run_id = run_id


def utcnow() -> datetime:
    return datetime.now(UTC)


# the run row --------------------------------------------------------------------------------


@dataclass
class RunKey:
    source: str
    kind: str
    business_date: date
    sha: str
    file_name: str
    file_format: str
    started_by: str


def _claim(sessions: sessionmaker[Session], key: RunKey) -> tuple[int, bool]:
    """(run id, done): the existing succeeded/superseded run, or a (re)claimed ``running`` one."""
    with sessions.begin() as s:
        run = s.scalars(
            select(ReconciliationRun).where(
                ReconciliationRun.source == key.source,
                ReconciliationRun.business_date == key.business_date,
                ReconciliationRun.file_sha256 == key.sha,
            )
        ).one_or_none()
        if run is not None and run.state in ("succeeded", "superseded"):
            return run.id, True
        if run is None:
            run = ReconciliationRun(
                source=key.source,
                kind=key.kind,
                business_date=key.business_date,
                file_name=key.file_name[:255],
                file_sha256=key.sha,
                file_format=key.file_format,
                state="running",
                started_by=key.started_by[:100],
                started_at=utcnow(),
                line_count=0,
                counts={},
                totals={},
            )
            s.add(run)
        else:  # failed before, or left running by a killed worker: run it again
            run.state, run.error, run.started_at = "running", None, utcnow()
            run.started_by, run.finished_at = key.started_by[:100], None
        s.flush()
        return run.id, False


def _fail(sessions: sessionmaker[Session], run_id: int, error: str) -> None:
    with sessions.begin() as s:
        s.execute(
            update(ReconciliationRun)
            .where(ReconciliationRun.id == run_id, ReconciliationRun.state == "running")
            .values(state="failed", error=error[:4000], finished_at=utcnow())
        )


def _lock_day(session: Session, source: str, day: date) -> ReconciliationRun | None:
    """Serialise runs of one source and day; returns nothing (the lock is the point)."""
    if repo.is_postgres(session):
        digest = hashlib.sha256(f"recon:{source}:{day.isoformat()}".encode()).digest()
        session.execute(
            text("SELECT pg_advisory_xact_lock(:k)"),
            {"k": int.from_bytes(digest[:8], "big", signed=True)},
        )
    return None


def _reload(session: Session, run_id: int) -> ReconciliationRun:
    run = session.scalars(
        select(ReconciliationRun).where(ReconciliationRun.id == run_id).with_for_update()
    ).one()
    return run


def _earlier_run(session: Session, run: ReconciliationRun) -> ReconciliationRun | None:
    return session.scalars(
        select(ReconciliationRun)
        .where(
            ReconciliationRun.source == run.source,
            ReconciliationRun.kind == run.kind,
            ReconciliationRun.business_date == run.business_date,
            ReconciliationRun.state == "succeeded",
            ReconciliationRun.id != run.id,
        )
        .order_by(ReconciliationRun.id.desc())
        .limit(1)
    ).one_or_none()


def _reverse_run_entries(session: Session, old: ReconciliationRun, new_id: int) -> list[int]:
    ledger = LedgerService(session)
    reversed_ids = []
    for row in ledger.repo.entries_for(RUN_REF, str(old.id)):
        if row.reverses_id is not None or ledger.repo.reversal_of(row.id) is not None:
            continue
        posted = ledger.reverse(
            row.id,
            idempotency_key=f"supersede:{row.id}",
            business_date=row.business_date,
            description=f"Run {old.id} superseded by run {new_id}: reverses entry {row.id}",
        )
        reversed_ids.append(posted.id)
    return reversed_ids


def _supersede(session: Session, run: ReconciliationRun) -> ReconciliationRun | None:
    old = _earlier_run(session, run)
    if old is None:
        return None
    _reverse_run_entries(session, old, run.id)
    old.state, old.superseded_by_id = "superseded", run.id
    return old


def _finish(run: ReconciliationRun, tally: Tally, extra: dict[str, int]) -> None:
    run.state, run.finished_at = "succeeded", utcnow()
    run.line_count = tally.lines
    run.counts = dict(sorted(tally.counts.items()))
    run.totals = {**dict(sorted(tally.totals.items())), **extra}
    for outcome, n in run.counts.items():
        metrics.reconciliation_outcomes.labels(outcome=outcome).inc(n)


@dataclass
class Tally:
    lines: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    totals: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, outcome: str, amount: int, fee: int, from_line: bool) -> None:
        self.counts[outcome] += 1
        self.totals[outcome] += amount
        self.totals[f"{outcome}_fees"] += fee
        self.lines += from_line


# bills --------------------------------------------------------------------------------------


def _file_date(filename: str | None) -> date | None:
    for y, m, d in reversed(_FILE_DATE.findall(filename or "")):
        try:
            return date(int(y), int(m), int(d))
        except ValueError:
            continue
    return None


def _first_date(data: bytes, fmt: str, filename: str) -> date:
    for line in parse(data, format=fmt, filename=filename):
        return line.value_on or line.booked_on
    raise StatementError("the file has no lines and its name has no date", filename=filename)


def _bill_key(
    data: bytes, filename: str, started_by: str, source: str | None, business_date: date | None
) -> RunKey:
    fmt = detect_format(data, filename)
    if fmt not in BILL_FORMATS:
        raise StatementError(f"{fmt} is a bank statement, not a gateway bill", filename=filename)
    if source is not None and source != fmt:
        raise StatementError(f"the file is a {fmt} bill, not {source}", filename=filename)
    day = business_date or _file_date(filename) or _first_date(data, fmt, filename)
    return RunKey(fmt, "bill", day, sha256_of(data), filename, fmt, started_by)


def reconcile_bill(
    sessions: sessionmaker[Session],
    ctx: PaymentContext,
    *,
    data: bytes,
    filename: str,
    started_by: str,
    source: str | None = None,
    business_date: date | None = None,
    fee_rate: Decimal | None = None,
) -> int:
    """Reconcile one gateway bill for one business day; returns the run id.

    ``source`` (alipay, wechatpay, unionpay) defaults to the detected format; ``business_date``
    to the date in the file name (else the first line's date); ``fee_rate`` to the gateway's
    configured rate. Raises :class:`RunFailed` (after recording the failed run) for a broken file
    or any error while posting, and :class:`StatementError` (no run) for an unknown format."""
    key = _bill_key(data, filename, started_by, source, business_date)
    rate = fee_rate if fee_rate is not None else options.fee_rate(get_settings(), key.source)
    run_id, done = _claim(sessions, key)
    if done:
        return run_id
    try:
        if _postgres(sessions):
            _bill_postgres(sessions, ctx, run_id, key, data, rate)
        else:
            _bill_memory(sessions, ctx, run_id, key, data, rate)
    except BaseException as exc:
        error = exc.detail if isinstance(exc, FeishuiError) else f"{type(exc).__name__}: {exc}"
        _fail(sessions, run_id, error)
        if isinstance(exc, Exception):
            raise RunFailed(run_id, error) from exc
        raise
    return run_id


def _postgres(sessions: sessionmaker[Session]) -> bool:
    return sessions.kw["bind"].dialect.name == "postgresql"  # type: ignore[no-any-return]


@dataclass
class Confirmed:
    """Gateway answers for lines missing on our side, fetched before the posting transaction."""

    answers: dict[str, PaymentResult] = field(default_factory=dict)
    problems: dict[str, str] = field(default_factory=dict)
    captured: list[CaptureOutcome] = field(default_factory=list)
    """What the posting transaction captured: after it commits, a duplicate payment's automatic
    refund is enqueued (``clearing.payments.tasks.after_commit``)."""

    def after_commit(self, sessions: sessionmaker[Session], ctx: PaymentContext) -> None:
        if not self.captured:
            return
        from clearing.payments.tasks import after_commit

        for outcome in self.captured:
            after_commit(outcome, sessions, ctx)


def _ask_gateway(ctx: PaymentContext, gateway: str, order_ids: list[str]) -> Confirmed:
    confirmed = Confirmed()
    adapter = ctx.gateways.get(gateway)
    for order_id in order_ids:
        if adapter is None:
            confirmed.problems[order_id] = f"gateway {gateway} is not enabled"
            continue
        try:
            confirmed.answers[order_id] = adapter.query(order_id)
        except GatewayUnavailable as exc:
            confirmed.problems[order_id] = f"query failed: {exc.detail}"
    return confirmed


def _capture_confirmed(
    session: Session, ctx: PaymentContext, confirmed: Confirmed
) -> dict[str, tuple[str, int | None]]:
    """Capture what the gateway says SUCCEEDED; (detail, journal entry id) per order id."""
    out: dict[str, tuple[str, int | None]] = {k: (v, None) for k, v in confirmed.problems.items()}
    for order_id, answer in sorted(confirmed.answers.items()):
        if answer.status is not GatewayStatus.SUCCEEDED:
            out[order_id] = (f"gateway query says {answer.status.value}", None)
            continue
        result = apply_result(session, answer, source="reconciliation", eseal=ctx.eseal)
        confirmed.captured.append(result)
        if result.outcome in ("captured", "duplicate"):
            out[order_id] = ("captured by reconciliation", result.journal_entry_id)
        else:
            out[order_id] = (
                f"capture by reconciliation: {result.outcome}",
                result.journal_entry_id,
            )
    return out


def _bill_memory(
    sessions: sessionmaker[Session],
    ctx: PaymentContext,
    run_id: int,
    key: RunKey,
    data: bytes,
    rate: Decimal,
) -> None:
    lines = list(parse(data, format=key.file_format, filename=key.file_name))
    with sessions.begin() as s:
        records = list(repo.records(s, key.source, key.business_date))
    first = matching.classify(lines, records, business_date=key.business_date, fee_rate=rate)
    missing = sorted(
        {
            o.order_id
            for o in first
            if o.outcome == matching.MISSING_INTERNAL and o.kind == "payment" and o.order_id
        }
    )
    confirmed = _ask_gateway(ctx, key.source, missing)
    with sessions.begin() as s:
        _lock_day(s, key.source, key.business_date)
        run = _reload(s, run_id)
        if run.state != "running":
            return
        captures = _capture_confirmed(s, ctx, confirmed)
        records = list(repo.records(s, key.source, key.business_date))
        outcomes = matching.classify(lines, records, business_date=key.business_date, fee_rate=rate)
        _write_bill(
            s, run, outcomes, captures, matching.summarize(key.source, key.business_date, lines)
        )
    confirmed.after_commit(sessions, ctx)


@contextmanager
def _phase(conn: Connection) -> Iterator[Session]:
    """One transaction on a held connection (the TEMP table lives as long as the connection)."""
    with conn.begin():
        session = Session(bind=conn)
        try:
            yield session
            session.flush()
        finally:
            session.close()


def _bill_postgres(
    sessions: sessionmaker[Session],
    ctx: PaymentContext,
    run_id: int,
    key: RunKey,
    data: bytes,
    rate: Decimal,
) -> None:
    """One connection: COPY the lines into a TEMP table (its own transaction: nothing durable),
    find the lines missing on our side, ask the gateway, then post in one transaction.

    The connection is the run's own: its temporary-table buffers are enlarged before its first
    temporary table (:func:`repo.size_temp_buffers`), and it is closed after the run instead of
    going back to the pool, so that the server frees that memory."""
    engine: Engine = sessions.kw["bind"]
    with engine.connect() as conn:
        try:
            repo.size_temp_buffers(conn)
            _stage_and_post(sessions, ctx, conn, run_id, key, data, rate)
        finally:
            conn.invalidate()


def _stage_and_post(
    sessions: sessionmaker[Session],
    ctx: PaymentContext,
    conn: Connection,
    run_id: int,
    key: RunKey,
    data: bytes,
    rate: Decimal,
) -> None:
    """:func:`_bill_postgres`'s phases on its connection."""
    with _phase(conn) as s:
        repo.create_stage(s)
        repo.copy_rows(s, parse_rows(data, format=key.file_format, filename=key.file_name))
        s.execute(text("ANALYZE recon_stage"))
        summary = BillSummary(key.source, key.business_date, *repo.staged_totals(s))
        missing = repo.staged_missing_orders(s, key.source, key.business_date)
    confirmed = _ask_gateway(ctx, key.source, missing)
    with _phase(conn) as s:
        _lock_day(s, key.source, key.business_date)
        run = _reload(s, run_id)
        if run.state != "running":
            return
        captures = _capture_confirmed(s, ctx, confirmed)
        if SET_BASED:
            _match_in_sql(s, run, key, rate, captures, summary)
        else:
            outcomes = matching.classify(
                repo.staged_lines(s, key.source),
                repo.records(s, key.source, key.business_date),
                business_date=key.business_date,
                fee_rate=rate,
                presorted=True,
            )
            _write_bill(s, run, outcomes, captures, summary)
    confirmed.after_commit(sessions, ctx)
    with _phase(conn) as s:
        repo.drop_stage(s)


def _match_in_sql(
    session: Session,
    run: ReconciliationRun,
    key: RunKey,
    rate: Decimal,
    captures: dict[str, tuple[str, int | None]],
    summary: BillSummary,
) -> None:
    tally = Tally()
    classified = repo.classify_staged(
        session, run.id, key.source, key.business_date, rate, captures
    )
    for outcome, n, from_lines, amount, fees in classified:
        tally.counts[outcome] += n
        tally.totals[outcome] += amount
        tally.totals[f"{outcome}_fees"] += fees
        tally.lines += from_lines
    _close_bill(session, run, tally, summary)


def _write_bill(
    session: Session,
    run: ReconciliationRun,
    outcomes: Iterator[Outcome],
    captures: dict[str, tuple[str, int | None]],
    summary: BillSummary,
) -> None:
    tally = Tally()
    writer = repo.ItemWriter(session)
    for o in outcomes:
        entry_id = None
        if (
            o.kind == "payment"
            and o.line_no is not None
            and o.order_id in captures
            and o.outcome in (matching.MATCHED, matching.MISSING_INTERNAL)
        ):
            detail, entry_id = captures.pop(o.order_id)
            o = Outcome(
                matching.MISSING_INTERNAL,
                o.kind,
                o.order_id,
                o.external_id,
                o.amount,
                o.line_no,
                o.expected_amount,
                o.fee,
                o.expected_fee,
                detail,
                o.key,
            )
        tally.add(o.outcome, o.amount, o.fee, o.line_no is not None)
        writer.write(repo.item_row(run.id, o, entry_id))
    writer.close()
    _close_bill(session, run, tally, summary)


def _close_bill(
    session: Session, run: ReconciliationRun, tally: Tally, summary: BillSummary
) -> None:
    old = _supersede(session, run)
    if old is not None:
        _repost_settlement(session, run, summary)
    _finish(
        run,
        tally,
        {
            "bill_payments": summary.payments,
            "bill_refunds": summary.refunds,
            "bill_fees": summary.fees,
            "bill_net": summary.net,
        },
    )


# settlement entries -------------------------------------------------------------------------


def settlement_entry(
    key: str, summary: BillSummary, credited: int, account: str, run_id: int, bank_ref: str
) -> Entry:
    """Dr fiscal bank (what arrived) + Dr gateway fees / Cr gateway clearing (gross). What did
    not arrive stays in gateway clearing (a shortfall); what arrived beyond the bill's net goes
    to suspense (an excess)."""
    gw = summary.gateway
    legs: dict[str, int] = defaultdict(int)  # signed: debit +
    legs[account] += credited
    legs[f"gateway_fees:{gw}"] += summary.fees
    cleared = min(credited, summary.net) + summary.fees
    legs[f"gateway_clearing:{gw}"] -= cleared
    legs["suspense"] -= credited - min(credited, summary.net)
    postings = [
        Posting.debit(a, v) if v > 0 else Posting.credit(a, -v)
        for a, v in sorted(legs.items())
        if v
    ]
    return Entry(
        idempotency_key=key,
        business_date=summary.business_date,
        description=f"Settlement {gw} {summary.business_date:%Y%m%d}: "
        f"{credited} fen credited, bill net {summary.net} fen",
        postings=tuple(postings),
        metadata={
            "credited": credited,
            "account": account,
            "bank_ref": bank_ref,
            "bill_net": summary.net,
            "bill_fees": summary.fees,
        },
        ref_type=RUN_REF,
        ref_id=str(run_id),
    )


def _settle_key(session: Session, gw: str, day: date, sha: str) -> str | None:
    """``settle:<gw>:<date>``; a suffixed key when that entry was reversed (superseded);
    None when a live settlement for the gateway and day exists already."""
    base = f"settle:{gw}:{day:%Y%m%d}"
    keys = session.scalars(
        select(JournalEntry.id).where(JournalEntry.idempotency_key.like(base + "%"))
    ).all()
    ledger = LedgerService(session).repo
    live = [k for k in keys if ledger.reversal_of(k) is None]
    if live:
        return None
    return base if not keys else f"{base}:{sha[:16]}"


def _live_settlement(session: Session, gw: str, day: date) -> JournalEntry | None:
    base = f"settle:{gw}:{day:%Y%m%d}"
    rows = session.scalars(
        select(JournalEntry).where(
            JournalEntry.idempotency_key.like(base + "%"), JournalEntry.reverses_id.is_(None)
        )
    ).all()
    ledger = LedgerService(session).repo
    return next((r for r in rows if ledger.reversal_of(r.id) is None), None)


def _repost_settlement(session: Session, run: ReconciliationRun, summary: BillSummary) -> None:
    """A corrected bill changes the settlement split: reverse it and post it again."""
    row = _live_settlement(session, summary.gateway, summary.business_date)
    if row is None:
        return
    meta = dict(row.metadata_ or {})
    ledger = LedgerService(session)
    ledger.reverse(
        row.id,
        idempotency_key=f"supersede:{row.id}",
        business_date=row.business_date,
        description=f"Bill run {run.id} corrects settlement entry {row.id}",
    )
    key = f"settle:{summary.gateway}:{summary.business_date:%Y%m%d}:{run.file_sha256[:16]}"
    ledger.post(
        settlement_entry(
            key,
            summary,
            int(meta["credited"]),
            str(meta["account"]),
            int(row.ref_id or run.id),
            str(meta.get("bank_ref", "")),
        )
    )


# bank statements ----------------------------------------------------------------------------


def _statement_key(data: bytes, filename: str, started_by: str, account: str) -> RunKey:
    fmt = detect_format(data, filename)
    if fmt not in STATEMENT_FORMATS:
        raise StatementError(f"{fmt} is a gateway bill, not a bank statement", filename=filename)
    day = _file_date(filename) or _first_date(data, fmt, filename)
    return RunKey(account, "statement", day, sha256_of(data), filename, fmt, started_by)


def reconcile_statement(
    sessions: sessionmaker[Session],
    *,
    data: bytes,
    filename: str,
    started_by: str,
    account: str = DEFAULT_ACCOUNT,
) -> int:
    """Reconcile the fiscal account's bank statement (OFX or camt.053); returns the run id.

    For each credit naming a gateway settlement (``SETTLE ALIPAY 20261127``): when a succeeded
    bill run for that gateway and day exists, post Dr ``account`` (net) + Dr ``gateway_fees``
    / Cr ``gateway_clearing`` (gross), key ``settle:<gw>:<yyyymmdd>`` (``settled``; a
    ``shortfall`` posts what arrived, an ``excess`` puts the surplus in suspense). Any other
    credit (or a settlement without a reconciled bill) is Dr ``account`` / Cr ``suspense``, key
    ``suspense:<sha256>:<line>`` (``unexplained_credit``). Debits are recorded as ``other``."""
    if not account.startswith("fiscal_bank:"):
        raise ValidationError("the account must be a fiscal_bank:<name> account", field="account")
    key = _statement_key(data, filename, started_by, account)
    run_id, done = _claim(sessions, key)
    if done:
        return run_id
    try:
        lines = list(parse(data, format=key.file_format, filename=filename))
        with sessions.begin() as s:
            _lock_day(s, key.source, key.business_date)
            run = _reload(s, run_id)
            if run.state == "running":
                _supersede(s, run)
                _post_statement(s, run, lines, account)
    except BaseException as exc:
        error = exc.detail if isinstance(exc, FeishuiError) else f"{type(exc).__name__}: {exc}"
        _fail(sessions, run_id, error)
        if isinstance(exc, Exception):
            raise RunFailed(run_id, error) from exc
        raise
    return run_id


def bill_summary(session: Session, gateway: str, day: date) -> BillSummary | None:
    """The totals of the succeeded bill run for a gateway and day, if there is one."""
    run = session.scalars(
        select(ReconciliationRun)
        .where(
            ReconciliationRun.kind == "bill",
            ReconciliationRun.source == gateway,
            ReconciliationRun.business_date == day,
            ReconciliationRun.state == "succeeded",
        )
        .order_by(ReconciliationRun.id.desc())
        .limit(1)
    ).one_or_none()
    if run is None:
        return None
    t = run.totals
    return BillSummary(
        gateway, day, int(t["bill_payments"]), int(t["bill_refunds"]), int(t["bill_fees"])
    )


def _post_statement(
    session: Session, run: ReconciliationRun, lines: list[StatementLine], account: str
) -> None:
    tally = Tally()
    ledger = LedgerService(session)
    for line in lines:
        target = matching.settlement_target(line.reference)
        summaries = [s for s in [bill_summary(session, *target)] if s] if target else []
        cash = matching.settle(summaries, line)
        outcome, entry_id, detail = cash.outcome, None, cash.detail
        if cash.outcome in ("settled", "shortfall", "excess"):
            assert cash.gateway and cash.business_date
            key = _settle_key(session, cash.gateway, cash.business_date, run.file_sha256)
            if key is None:
                outcome, detail = "unexplained_credit", "the settlement was already posted"
            else:
                entry_id = ledger.post(
                    settlement_entry(
                        key, summaries[0], line.amount_fen, account, run.id, line.external_id
                    )
                ).id
        if outcome == "unexplained_credit":
            entry_id = ledger.post(_suspense_entry(run, line, account, detail)).id
        tally.add(outcome, line.amount_fen, 0, True)
        session.add(
            ReconciliationItem(
                run_id=run.id,
                line_no=line.line_no,
                outcome=outcome,
                kind=str(line.kind),
                order_id=None,
                external_id=line.external_id[:100],
                amount=line.amount_fen,
                expected_amount=cash.expected,
                fee=0,
                expected_fee=None,
                detail=(detail or line.reference)[:500],
                journal_entry_id=entry_id,
                exception_state=None if outcome in ("settled", "other") else "open",
            )
        )
    session.flush()
    _finish(run, tally, {})


def _suspense_entry(
    run: ReconciliationRun, line: StatementLine, account: str, detail: str
) -> Entry:
    return Entry(
        idempotency_key=f"suspense:{run.file_sha256}:{line.line_no}",
        business_date=line.booked_on,
        description=f"Unexplained credit {line.external_id}: {line.reference}"[:500],
        postings=(
            Posting.debit(account, line.amount_fen),
            Posting.credit("suspense", line.amount_fen),
        ),
        metadata={"bank_ref": line.external_id, "detail": detail},
        ref_type=RUN_REF,
        ref_id=str(run.id),
    )


# reads --------------------------------------------------------------------------------------


def list_runs(session: Session, limit: int = 50) -> list[ReconciliationRun]:
    return list(
        session.scalars(
            select(ReconciliationRun).order_by(ReconciliationRun.id.desc()).limit(limit)
        )
    )


def get_run(session: Session, run_id: int) -> ReconciliationRun:
    run = session.get(ReconciliationRun, run_id)
    if run is None:
        raise NotFound(f"reconciliation run {run_id} does not exist")
    return run


def exceptions(session: Session, run_id: int, limit: int | None = None) -> list[ReconciliationItem]:
    stmt = (
        select(ReconciliationItem)
        .where(ReconciliationItem.run_id == run_id, ReconciliationItem.exception_state.is_not(None))
        .order_by(ReconciliationItem.id)
    )
    if limit:
        stmt = stmt.limit(limit)
    return list(session.scalars(stmt))
