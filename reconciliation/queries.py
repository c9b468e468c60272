"""Read side of reconciliation for finance users: runs (filtered, paged), one run's summary
and its exceptions. Amounts stay integer fen here; the edges format them."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from clearing.errors import NotFound
from reconciliation.models import ReconciliationItem, ReconciliationRun

PAGE_LIMIT = 200


@dataclass(frozen=True)
class RunFilter:
    source: str | None = None
    business_date: date | None = None
    state: str | None = None
    file_sha256: str | None = None


@dataclass(frozen=True)
class OutcomeTotal:
    outcome: str
    count: int
    amount: int
    """Signed fen."""
    fee: int
    """Fen."""


@dataclass
class RunSummary:
    run: ReconciliationRun
    outcomes: list[OutcomeTotal]
    exceptions: list[ReconciliationItem] = field(default_factory=list)

    @property
    def open_exceptions(self) -> int:
        return sum(1 for i in self.exceptions if i.exception_state != "resolved")


def list_runs(
    session: Session, filters: RunFilter, *, limit: int = 50, before_id: int | None = None
) -> tuple[list[ReconciliationRun], int | None]:
    """Runs newest first, and the cursor of the next page (None on the last)."""
    query = select(ReconciliationRun).order_by(ReconciliationRun.id.desc()).limit(limit + 1)
    conditions = {
        ReconciliationRun.source: filters.source,
        ReconciliationRun.business_date: filters.business_date,
        ReconciliationRun.state: filters.state,
        ReconciliationRun.file_sha256: filters.file_sha256,
    }
    for column, value in conditions.items():
        if value is not None:
            query = query.where(column == value)
    if before_id is not None:
        query = query.where(ReconciliationRun.id < before_id)
    rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (rows[-1].id if more and rows else None)


def get_run(session: Session, run_id: int) -> ReconciliationRun:
    run = session.get(ReconciliationRun, run_id)
    if run is None:
        raise NotFound(f"reconciliation run {run_id} does not exist")
    return run


def outcome_totals(session: Session, run_id: int) -> list[OutcomeTotal]:
    """Count, signed amount and fees per outcome, from the items themselves."""
    rows = session.execute(
        select(
            ReconciliationItem.outcome,
            func.count(),
            func.coalesce(func.sum(ReconciliationItem.amount), 0),
            func.coalesce(func.sum(ReconciliationItem.fee), 0),
        )
        .where(ReconciliationItem.run_id == run_id)
        .group_by(ReconciliationItem.outcome)
        .order_by(ReconciliationItem.outcome)
    )
    return [OutcomeTotal(o, int(c), int(a), int(f)) for o, c, a, f in rows]


def exceptions(session: Session, run_id: int) -> list[ReconciliationItem]:
    """Every item of the run that is an exception (open, proposed or resolved), by line."""
    return list(
        session.scalars(
            select(ReconciliationItem)
            .where(
                ReconciliationItem.run_id == run_id, ReconciliationItem.exception_state.is_not(None)
            )
            .order_by(
                ReconciliationItem.line_no.is_(None),
                ReconciliationItem.line_no,
                ReconciliationItem.id,
            )
        )
    )


def run_summary(session: Session, run_id: int) -> RunSummary:
    run = get_run(session, run_id)
    return RunSummary(run, outcome_totals(session, run_id), exceptions(session, run_id))


def open_counts(session: Session, run_ids: list[int]) -> dict[int, int]:
    """Unresolved exceptions per run."""
    if not run_ids:
        return {}
    rows = session.execute(
        select(ReconciliationItem.run_id, func.count())
        .where(
            ReconciliationItem.run_id.in_(run_ids),
            ReconciliationItem.exception_state.in_(("open", "proposed")),
        )
        .group_by(ReconciliationItem.run_id)
    )
    return {int(r): int(c) for r, c in rows}
