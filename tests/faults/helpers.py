"""What every fault test ends with: nothing lost, nothing duplicated, a sound ledger."""

from __future__ import annotations

from sqlalchemy import func, select

from clearing.db import transaction
from clearing.ledger.models import JournalEntry
from clearing.ledger.service import LedgerService
from clearing.payments.models import PaymentAttempt
from notices.models import Notice


def simulator(client, gateway: str):
    return next(
        r.app.state.simulator
        for r in client.app.routes
        if getattr(r, "path", "") == f"/sim/{gateway}"
    )


def assert_sound(db, *, entries: int, paid_notices: int = 1) -> None:
    """``entries`` journal entries, one per money-moving attempt (no duplicate capture, none
    lost); the hash chain and every entry verify; the trial balance nets to zero."""
    with transaction(db.sessions) as s:
        LedgerService(s).seal()
    with transaction(db.sessions) as s:
        assert s.scalar(select(func.count()).select_from(JournalEntry)) == entries
        captured = s.scalars(
            select(PaymentAttempt).where(PaymentAttempt.state.in_(("succeeded", "duplicate")))
        ).all()
        keys = s.scalars(
            select(JournalEntry.idempotency_key).where(
                JournalEntry.idempotency_key.like("capture:%")
            )
        ).all()
        assert sorted(keys) == sorted(f"capture:{a.order_id}" for a in captured)
        assert all(a.journal_entry_id is not None for a in captured)
        assert (
            s.scalar(select(func.count()).select_from(Notice).where(Notice.status == "paid"))
            == paid_notices
        )
        ledger = LedgerService(s)
        report = ledger.verify()
        assert report.ok, report.failures
        assert ledger.trial_balance().balanced
