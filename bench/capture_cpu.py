"""CPU per capture, both sides of the connection: the client's and its PostgreSQL backend's.

Serial captures in this process (what the notify route does: ``parse_notify``, then
``capture``), no HTTP, one pooled connection; then, in the same run, the same number of bare
``INSERT``s (one row, one transaction, the bare endpoint's statement) as the baseline. The
backend's CPU is read from ``/proc/<pid>/stat`` (Linux; the database on this host), the client's
with ``time.process_time``. Deterministic enough to compare two versions of the code a few
minutes apart, where the HTTP benchmark's noise would hide a few percent.

    .venv/bin/python bench/capture_cpu.py [--captures 3000] [--db feishui_bench_cpu]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "bench"))

import capture as capture_bench  # noqa: E402
import psycopg  # noqa: E402
from sqlalchemy import text  # noqa: E402

from clearing.payments.capture import capture  # noqa: E402
from gateways.protocol import RawRequest  # noqa: E402

WARM_UP = 20


def backends_cpu(pids: list[int]) -> float:
    """Seconds of CPU (user + system) the processes ``pids`` have used."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def backends(dsn: str, db: str) -> list[int]:
    """The PostgreSQL backends connected to ``db`` (the pools' connections), but this look-up's."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [
            pid
            for (pid,) in conn.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (db,),
            )
        ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--captures", type=int, default=3000)
    ap.add_argument("--db", default="feishui_bench_cpu")
    args = ap.parse_args()
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{args.db}"
    setup = capture_bench.Setup(url, Path(tempfile.mkdtemp()), args.captures + WARM_UP, print)
    sessions, eseal, adapter = setup.runtime.sessions, setup.ctx.eseal, setup.adapter
    raws = [
        RawRequest("POST", {k.lower(): v for k, v in h.items()}, body, "")
        for _u, h, body in setup.notifies
    ]

    def one(raw: RawRequest) -> None:
        outcome = capture(sessions, adapter.parse_notify(raw), source="notify", eseal=eseal)
        assert outcome.outcome == "captured", outcome

    for raw in raws[:WARM_UP]:  # opens the accounts; both pools have their connections
        one(raw)
    with setup.runtime.engine.begin() as conn:
        conn.execute(text("SELECT 1"))
    pids = backends(f"host=127.0.0.1 user=postgres dbname={args.db}", args.db)

    def measure(work, n: int) -> tuple[float, float, float]:  # type: ignore[no-untyped-def]
        b0, c0, w0 = backends_cpu(pids), time.process_time(), time.perf_counter()
        work()
        return tuple(  # type: ignore[return-value]
            v / n * 1e6
            for v in (
                backends_cpu(pids) - b0,
                time.process_time() - c0,
                time.perf_counter() - w0,
            )
        )

    n = len(raws) - WARM_UP
    cap = measure(lambda: [one(raw) for raw in raws[WARM_UP:]], n)
    insert = text("INSERT INTO bare_rows (payload) VALUES (:payload) RETURNING id")
    payload = json.dumps({"reference": "PP-0000001", "amount": 12000})

    def bare() -> None:
        for _ in range(n):
            with setup.runtime.engine.begin() as conn:
                conn.execute(insert, {"payload": payload}).scalar_one()

    base = measure(bare, n)
    print(f"{n} captures and {n} bare INSERTs, one at a time (us per operation)")
    print("| | PostgreSQL backend CPU | client CPU | both | wall |")
    print("|---|---:|---:|---:|---:|")
    for name, (pg, client, wall) in (("capture", cap), ("bare INSERT", base)):
        print(f"| {name} | {pg:.0f} | {client:.0f} | {pg + client:.0f} | {wall:.0f} |")
    print(
        f"| capture / bare | {cap[0] / base[0]:.2f} | {cap[1] / base[1]:.2f} | "
        f"{(cap[0] + cap[1]) / (base[0] + base[1]):.2f} | {cap[2] / base[2]:.2f} |"
    )


if __name__ == "__main__":
    main()
