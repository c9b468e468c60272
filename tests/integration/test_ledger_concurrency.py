"""Concurrent writers on real databases: exact balances, no error surfaced, exactly-once keys."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from threading import Barrier

import pytest
from sqlalchemy import func, select

from clearing.db import run_in_transaction, transaction
from clearing.ledger.models import JournalEntry
from clearing.ledger.service import LedgerService
from tests.factories import payment_entry


def _post(db, entry):
    return run_in_transaction(db.sessions, lambda s: LedgerService(s).post(entry))


def _entry_count(db) -> int:
    with transaction(db.sessions) as s:
        return s.scalar(select(func.count()).select_from(JournalEntry))


def test_eight_writers_on_the_same_two_accounts(pg):
    """8 threads x 500 entries all on gateway_clearing:alipay / treasury_payable:510100-city."""
    writers, per_writer = 8, 500
    _post(pg, payment_entry("warm-up", 1))  # open both accounts first
    barrier = Barrier(writers)

    def work(w: int) -> int:
        barrier.wait()
        total = 0
        for i in range(per_writer):
            amount = 1 + (w * per_writer + i) % 997
            _post(pg, payment_entry(f"w{w}-{i}", amount))
            total += amount
        return total

    with ThreadPoolExecutor(writers) as pool:
        expected = 1 + sum(pool.map(work, range(writers)))  # re-raises any error from a writer
    with transaction(pg.sessions) as s:
        ledger = LedgerService(s)
        assert ledger.balance("gateway_clearing:alipay") == expected
        assert ledger.balance("treasury_payable:510100-city") == expected
        assert ledger.trial_balance().balanced
    assert _entry_count(pg) == writers * per_writer + 1


@pytest.mark.parametrize("threads", [20])
def test_same_idempotency_key_from_many_threads_posts_once(db, threads):
    _post(db, payment_entry("warm-up", 1))
    barrier = Barrier(threads)

    def work(_: int):
        barrier.wait()
        return _post(db, payment_entry("the-one", 4_200))

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(work, range(threads)))
    assert len({r.id for r in results}) == 1
    assert sum(not r.replayed for r in results) == 1
    assert _entry_count(db) == 2
    with transaction(db.sessions) as s:
        assert LedgerService(s).balance("gateway_clearing:alipay") == 4_201


def test_concurrent_sealers_build_one_chain(pg):
    for i in range(200):
        _post(pg, payment_entry(f"p{i}", 100))
    barrier = Barrier(4)

    def seal(_: int) -> int:
        barrier.wait()
        return run_in_transaction(pg.sessions, lambda s: LedgerService(s).seal(limit=60))

    with ThreadPoolExecutor(4) as pool:
        sealed = sum(pool.map(seal, range(4)))
    while n := run_in_transaction(pg.sessions, lambda s: LedgerService(s).seal()):
        sealed += n
    assert sealed == 200
    with transaction(pg.sessions) as s:
        report = LedgerService(s).verify()
    assert report.ok and report.sealed == 200 and report.unsealed == 0


def test_posting_while_sealing_loses_nothing(pg):
    """Writers and a sealer race; every entry ends up sealed exactly once."""
    stop = []

    def writer(w: int) -> None:
        for i in range(150):
            _post(pg, payment_entry(f"w{w}-{i}", 10))

    def sealer() -> None:
        while not stop:
            run_in_transaction(pg.sessions, lambda s: LedgerService(s).seal(limit=25))

    with ThreadPoolExecutor(5) as pool:
        seal_future = pool.submit(sealer)
        for f in [pool.submit(writer, w) for w in range(4)]:
            f.result()
        stop.append(True)
        seal_future.result()
    run_in_transaction(pg.sessions, lambda s: LedgerService(s).seal())
    with transaction(pg.sessions) as s:
        report = LedgerService(s).verify()
    assert report.ok and report.sealed == 600
