"""Ledger jobs (ids and dates only; idempotent)."""

from __future__ import annotations

from clearing.db import run_in_transaction
from clearing.ledger.service import LedgerService
from clearing.runtime import get_runtime


def seal_ledger(batch: int = 50_000) -> int:
    """Append every committed, unsealed entry to the hash chain; returns how many were sealed."""
    total = 0
    while n := run_in_transaction(
        get_runtime().sessions, lambda s: LedgerService(s).seal(limit=batch)
    ):
        total += n
    return total
