#!/usr/bin/env python
"""Probe: does the hot account cost the ledger anything, and is it the FK to ledger_accounts?

Runs ``LedgerService.post`` (or ``--kind``; threads) hot vs spread, interleaved, on the database
that ``ledger_post.py`` created, and reports the MultiXact SLRU traffic (``pg_stat_slru``) of each
layout. With ``--drop-fk`` it repeats the pair after dropping the FK from postings.account_id to
ledger_accounts (the FK check takes a KEY SHARE row lock on the account row; concurrent lockers of
one row share a MultiXact). It re-creates the FK at the end. Bench database only.

    .venv/bin/python bench/hot_account_probe.py --writers 8 --seconds 8 --drop-fk
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import psycopg
from ledger_post import DEFAULT_URL, merge, psycopg_dsn, run_cell

FK = "fk_postings_account_id_ledger_accounts"


def slru(conn) -> dict[str, int]:  # type: ignore[no-untyped-def]
    rows = conn.execute(
        "SELECT name, blks_zeroed + blks_hit + blks_read + blks_written "
        "FROM pg_stat_slru WHERE name LIKE 'MultiXact%'"
    ).fetchall()
    return dict(rows)


def pair(args, conn, label: str) -> list[str]:  # type: ignore[no-untyped-def]
    parts: dict[str, list] = {"spread": [], "hot": []}
    mx: dict[str, int] = {"spread": 0, "hot": 0}
    for rnd in range(args.rounds):
        for layout in ("spread", "hot") if rnd % 2 == 0 else ("hot", "spread"):
            spec = {
                "tag": f"probe-{args.kind}-{label}-{layout}",
                "legs": args.legs,
                "layout": layout,
                "seed": 50 + rnd,
                "round": f"{label}{rnd}",
            }
            before = slru(conn)
            parts[layout].append(
                run_cell(
                    args.kind, args.url, spec, args.writers, args.seconds / args.rounds, "threads"
                )
            )
            after = slru(conn)
            mx[layout] += sum(after.values()) - sum(before.values())
    out = []
    res = {k: merge(v) for k, v in parts.items()}
    for layout in ("spread", "hot"):
        r = res[layout]
        out.append(
            f"| {label} | {layout} | {r['eps']:,.0f} | {r['p50']:.1f} / {r['p99']:.1f} "
            f"| {mx[layout] / max(r['ok'], 1):.2f} | {r['errors']} |"
        )
    out.append(f"| {label} | hot/spread | {res['hot']['eps'] / res['spread']['eps']:.2f} | | | |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--url", default=DEFAULT_URL)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--legs", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--drop-fk", action="store_true")
    ap.add_argument(
        "--kind",
        default="ledger",
        help="ledger, or a prototype from ledger_post.py (lean, lean-1rt, ...)",
    )
    args = ap.parse_args()
    if "feishui_bench" not in args.url:
        raise SystemExit("bench database only")
    conn = psycopg.connect(psycopg_dsn(args.url), autocommit=True)
    lines = [
        f"`{args.kind}`, {args.writers} writers (threads), {args.legs} legs",
        "",
        "| FK to accounts | layout | entries/s | p50 / p99 ms "
        "| MultiXact SLRU accesses / entry | errors |",
        "|---|---|---:|---:|---:|---:|",
    ]
    lines += pair(args, conn, "with FK")
    if args.drop_fk:
        conn.execute(f"ALTER TABLE postings DROP CONSTRAINT {FK}")
        try:
            lines += pair(args, conn, "without FK")
        finally:
            conn.execute(
                f"ALTER TABLE postings ADD CONSTRAINT {FK} FOREIGN KEY (account_id) "
                "REFERENCES ledger_accounts (id)"
            )
    print("\n".join(lines))


if __name__ == "__main__":
    main()
