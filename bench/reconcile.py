"""Benchmark: a full reconciliation run of a gateway bill, beside a plain SQL baseline.

For each size (10,000 / 100,000 / 1,000,000 lines by default) on PostgreSQL:

1. setup (not timed): our side is bulk-loaded with COPY straight into ``payment_attempts``
   (captured, pointing at one balanced capture entry of the day: the matcher reads
   ``payment_attempts JOIN journal_entries``), and a UnionPay-style bill is written with
   realistic exceptions: 0.1% paid at the gateway but not captured, 0.1% captured but absent from
   the bill, 0.1% amount mismatches, 0.1% fee mismatches, 0.05% duplicate lines;
2. ``feishui``: ``reconcile_bill`` in a fresh subprocess (parse, COPY to staging, gateway queries
   for the missing lines (a fake gateway answering NOT_FOUND), sorted merge-join, COPY of the
   items, run row); wall time and peak RSS (``VmHWM``) measured in the child;
3. ``baseline``: in a fresh subprocess, COPY of the same file's detail records into a plain table
   and one SQL FULL OUTER JOIN against the captured payments classifying every row into a table.
   It runs just before and just after ``feishui``; the ratio is to the mean of the two, so that a
   change of the machine's load between the minutes does not decide the ratio.

Prints a markdown table. Usage::

    python bench/reconcile.py [--sizes 10000,100000,1000000] [--db feishui_bench_recon]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

DAY = date(2026, 11, 27)
RATE = Decimal("0.003")
PG = "postgresql+psycopg://postgres@127.0.0.1:5432/{db}"


def fee(amount: int) -> int:
    from reconciliation.matching import payment_fee

    return payment_fee(amount, RATE)


def generate(n: int, path: Path, seed: int = 1) -> list[tuple[str, int]]:
    """Write the bill; return our side [(order id, amount)]."""
    rnd = random.Random(seed)
    ours: list[tuple[str, int]] = []
    total = fee_sum = count = 0
    with path.open("w", encoding="ascii") as out:
        out.write(f"H|898510148990001|{DAY:%Y%m%d}|COUNT\n")
        for i in range(n):
            order = f"PB{i:012d}"
            amount = rnd.randint(100, 500_000)
            roll = rnd.random()
            if roll >= 0.001:  # everything but "paid at the gateway, not captured"
                ours.append((order, amount))
            if 0.001 <= roll < 0.002:  # captured, not in the bill
                continue
            billed = amount + 1 if 0.002 <= roll < 0.003 else amount
            f = fee(billed) + (1 if 0.003 <= roll < 0.004 else 0)
            line = f"D|{order}|Q{i:020d}|20261127100000|01|{billed}|{f}|{billed - f}|00\n"
            times = 2 if 0.004 <= roll < 0.0045 else 1
            for _ in range(times):
                out.write(line)
                total, fee_sum, count = total + billed, fee_sum + f, count + 1
        out.write(f"T|{count}|{total}|{fee_sum}|{total - fee_sum}\n")
    data = path.read_bytes().replace(b"|COUNT\n", f"|{count}\n".encode(), 1)
    path.write_bytes(data)
    return ours


def reset(url: str) -> None:
    from sqlalchemy import text

    from clearing.db import make_engine
    from clearing.models import metadata

    engine = make_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
        conn.execute(text("DROP TABLE IF EXISTS bench_lines, bench_out"))
    engine.dispose()


def load_ours(url: str, ours: list[tuple[str, int]], tmp: Path) -> None:
    """One notice, one balanced capture entry for the day, and every attempt COPYed in."""
    from sqlalchemy import text

    from clearing.db import make_engine, make_sessionmaker, transaction
    from clearing.ledger.core import Entry, Posting
    from clearing.ledger.repository import clear_account_cache
    from clearing.ledger.service import LedgerService
    from tests.factories import notice_setup

    clear_account_cache()
    engine = make_engine(url)
    sessions = make_sessionmaker(engine)
    total = sum(a for _, a in ours)
    with transaction(sessions) as s:
        _, notice = notice_setup(s, tmp, decision_date=date(2026, 11, 20))
        entry = LedgerService(s).post(
            Entry(
                "bench:captures",
                DAY,
                "bench: the day's captures",
                (
                    Posting.debit("gateway_clearing:unionpay", total),
                    Posting.credit("treasury_payable:510100-city", total),
                ),
            )
        )
        notice_id, entry_id = notice.id, entry.id
    now = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)
    with engine.begin() as conn:
        cur = conn.connection.driver_connection.cursor()
        cols = (
            "order_id, notice_id, gateway, channel, routing_reason, state, amount, "
            "principal, late_fee, business_date, expires_at, gateway_txn_id, paid_at, "
            "journal_entry_id, created_at, updated_at"
        )
        with cur.copy(f"COPY payment_attempts ({cols}) FROM STDIN") as copy:
            for i, (order, amount) in enumerate(ours):
                copy.write_row(
                    (
                        order,
                        notice_id,
                        "unionpay",
                        "bank",
                        "bench",
                        "succeeded",
                        amount,
                        amount,
                        0,
                        DAY,
                        now,
                        f"Q{i:020d}",
                        now,
                        entry_id,
                        now,
                        now,
                    )
                )
        conn.execute(text("ANALYZE payment_attempts"))
    engine.dispose()


def child_feishui(url: str, path: str) -> None:
    from clearing.db import make_engine, make_sessionmaker
    from clearing.payments.service import PaymentContext
    from clearing.routing import DEFAULT_RULES, Router
    from gateways.protocol import Channel
    from reconciliation.service import reconcile_bill
    from tests.support.fake_gateway import FakeGateway

    sessions = make_sessionmaker(make_engine(url))
    ctx = PaymentContext(
        {"unionpay": FakeGateway("unionpay", Channel.BANK)}, Router(DEFAULT_RULES), "https://bench"
    )
    started = time.perf_counter()
    data = Path(path).read_bytes()
    run_id = reconcile_bill(
        sessions, ctx, data=data, filename=Path(path).name, started_by="bench", fee_rate=RATE
    )
    seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "run_id": run_id, "peak_mb": peak_rss_mb()}))


def peak_rss_mb() -> float:
    """This process's own peak RSS (``VmHWM`` of its address space). ``ru_maxrss`` of a spawned
    child also counts the parent's pages before ``exec`` (the kernel keeps the larger of the two),
    so at 1,000,000 lines it reported the bench parent's memory, not the run's."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


BASELINE_SQL = """
CREATE TABLE bench_out AS
SELECT CASE
         WHEN p.order_id IS NULL THEN 'missing_internal'
         WHEN l.order_id IS NULL THEN 'missing_external'
         WHEN l.rn > 1 THEN 'duplicate'
         WHEN l.amt <> p.amount THEN 'amount_mismatch'
         WHEN l.fee <> round(p.amount * 0.003) THEN 'fee_mismatch'
         ELSE 'matched' END AS outcome,
       coalesce(l.order_id, p.order_id) AS order_id, l.amt, p.amount
FROM (SELECT *, row_number() OVER (PARTITION BY order_id) AS rn FROM bench_lines) l
FULL OUTER JOIN (SELECT a.order_id, a.amount FROM payment_attempts a
                 JOIN journal_entries je ON je.id = a.journal_entry_id
                 WHERE a.gateway = 'unionpay' AND a.state = 'succeeded'
                   AND je.business_date = '2026-11-27') p
  ON p.order_id = l.order_id AND l.rn = 1
"""


def child_baseline(url: str, path: str) -> None:
    import psycopg

    started = time.perf_counter()
    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql")) as conn:
        conn.execute("DROP TABLE IF EXISTS bench_lines, bench_out")
        conn.execute(
            "CREATE TABLE bench_lines (rec text, order_id text, query_id text, "
            "txn_time text, txn_type text, amt bigint, fee bigint, settle bigint, "
            "resp text)"
        )
        with (
            conn.cursor().copy("COPY bench_lines FROM STDIN (DELIMITER '|')") as copy,
            open(path, "rb") as f,
        ):
            for raw in f:
                if raw.startswith(b"D|"):
                    copy.write(raw)
        conn.execute(BASELINE_SQL)
        conn.commit()
    print(json.dumps({"seconds": time.perf_counter() - started}))


def checkpoint(url: str) -> None:
    """Write out every dirty buffer before a measured child starts, so that no child pays for
    the one before it: the baseline's COPY and CREATE TABLE AS leave about 200 MB of dirty
    pages and WAL, whose checkpoint otherwise lands in the next child's minutes."""
    import psycopg

    with psycopg.connect(url.replace("postgresql+psycopg", "postgresql"), autocommit=True) as c:
        c.execute("CHECKPOINT")


def measure(kind: str, url: str, path: Path) -> tuple[float, float]:
    """(seconds, peak RSS MB) of a child process, started after a checkpoint."""
    checkpoint(url)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, "--url", url, "--file", str(path)],
        stdout=subprocess.PIPE,
        cwd=ROOT,
    )
    out = proc.stdout.read()  # type: ignore[union-attr]
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{kind} child failed ({proc.returncode})")
    result = json.loads(out.decode().strip().splitlines()[-1])
    return result["seconds"], result.get("peak_mb", usage.ru_maxrss / 1024)


def ensure_db(db: str) -> str:
    import psycopg

    with psycopg.connect("postgresql://postgres@127.0.0.1:5432/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (db,)).fetchone():
            conn.execute(f'CREATE DATABASE "{db}"')
    url = PG.format(db=db)
    from clearing import migrate

    migrate.upgrade(url)
    return url


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--db", default="feishui_bench_recon")
    ap.add_argument("--child")
    ap.add_argument("--url")
    ap.add_argument("--file")
    args = ap.parse_args()
    if args.child:
        (child_feishui if args.child == "feishui" else child_baseline)(args.url, args.file)
        return
    url = ensure_db(args.db)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in (int(x) for x in args.sizes.split(",")):
            path = Path(tmp) / f"unionpay_898510148990001_{DAY:%Y%m%d}.txt"
            reset(url)
            ours = generate(n, path)
            load_ours(url, ours, Path(tmp))
            del ours
            # The baseline brackets the run (before and after it): on a shared machine the load
            # can change between two minutes; the ratio uses the mean of the two.
            before_s, _ = measure("baseline", url, path)
            ours_s, rss = measure("feishui", url, path)
            after_s, _ = measure("baseline", url, path)
            base_s = (before_s + after_s) / 2
            rows.append((n, ours_s, base_s, rss, before_s, after_s))
            print(
                f"# {n}: feishui {ours_s:.2f}s baseline {before_s:.2f}s / {after_s:.2f}s "
                f"rss {rss:.0f}MB",
                file=sys.stderr,
                flush=True,
            )
    print(
        "| lines | feishui s | baseline s (before / after) | ratio to their mean "
        "| peak RSS MB | lines/s |"
    )
    print("|---:|---:|---:|---:|---:|---:|")
    for n, ours_s, base_s, rss, before_s, after_s in rows:
        print(
            f"| {n:,} | {ours_s:.2f} | {before_s:.2f} / {after_s:.2f} | {ours_s / base_s:.2f}x "
            f"| {rss:.0f} | {n / ours_s:,.0f} |"
        )


if __name__ == "__main__":
    main()
