#!/usr/bin/env python
"""Notices API over HTTP: ``POST /v1/notices/batch`` and ``POST /v1/notices`` under uvicorn,
beside a bare FastAPI endpoint doing one INSERT (or one COPY), measured in the same run.

For each server setting (``--workers``, default 1 and 2; uvicorn with uvloop + httptools, both
servers started with the same flags and idle while the other is measured):

(a) batch: ``--batch-total`` notices (default 100,000) in batches of ``--batch-size`` (10,000)
    through ``POST /v1/notices/batch``, ``workers`` connections; beside it the same bodies to the
    bare ``POST /bare/batch`` (validate ``list[Any]``, COPY every element as one row), in
    ``--rounds`` interleaved rounds. Figure: notices (rows) per second.
(b) single: ``POST /v1/notices`` with ``--concurrency`` connections for ``--seconds`` per round
    and kind, beside ``POST /bare`` (the same JSON body, one INSERT), ``--rounds`` rounds
    interleaved, order alternating. Figures: requests/s, p50/p90/p99/max latency. Then each kind
    in an open loop at half its measured maximum for ``--open-seconds`` (latency from each
    request's scheduled send time): the p99 a service sees when it is not saturated.

The load generator (bench/_load.py) is a separate process. Checks: every answer has the
expected status, and the database holds exactly the rows the answers promised.

    .venv/bin/python bench/notices.py --out bench/results/notices.md

See bench/README.md; results and interpretation in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# this file is bench/notices.py: keep bench/ behind the repository so that ``notices`` is the
# package, not this script
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "bench"))

import _httpbench as hb  # noqa: E402
import psycopg  # noqa: E402
from _apps import BARE_DDL  # noqa: E402

from clearing.config import Settings  # noqa: E402
from clearing.db import transaction  # noqa: E402
from clearing.runtime import build_runtime  # noqa: E402
from notices import catalogue  # noqa: E402
from notices.departments import create_department  # noqa: E402
from notices.service import today_in_shanghai  # noqa: E402

TARGET_BATCH = 5_000  # notices/s
TARGET_RATIO = 0.5
TARGET_P99 = 100.0  # ms


def notice_body(i: int) -> dict:
    return {
        "kind": "traffic_fine",
        "payer": {"name": "张小三", "id_number": "11010519491231002X"},
        "items": [{"item_code": "TF-RED-LIGHT"}],
        "decision_date": (today_in_shanghai() - timedelta(days=3)).isoformat(),
        "reference": f"JT-2026-{i:07d}",
        "description": "闯红灯",
    }


def count(url: str, table: str) -> int:
    with psycopg.connect(hb.psycopg_dsn(url)) as c:
        return c.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


def prepare(url: str, var_dir: Path) -> str:
    """Database, catalogue, a police department; keys and dev secrets. Returns the API key."""
    hb.setup_database(url, BARE_DDL)
    settings = Settings(database_url=url, var_dir=var_dir, env="development")
    runtime = build_runtime(settings)
    from api.app import create_app

    create_app(runtime, simulators=False)  # generates the dev secrets and keys once, up front
    with transaction(runtime.sessions) as s:
        catalogue.seed(s, catalogue.load_seed())
        key = create_department(s, "成都市公安局交通管理局", "510100", "police").full
    runtime.engine.dispose()
    return key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--url",
        default=os.environ.get("FEISHUI_BENCH_API_URL", hb.DEFAULT_URL),
        help="SQLAlchemy URL of a database this script may DROP and re-create",
    )
    ap.add_argument("--workers", default="1,2", help="uvicorn worker counts")
    ap.add_argument("--batch-total", type=int, default=100_000)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--concurrency", type=int, default=16, help="connections for (b)")
    ap.add_argument("--seconds", type=float, default=5.0, help="(b): seconds per round and kind")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument(
        "--open-seconds", type=float, default=10.0, help="(b): half-load open loop, seconds"
    )
    ap.add_argument("--no-batch", action="store_true")
    ap.add_argument("--no-single", action="store_true")
    ap.add_argument("--out", help="write the markdown report here (else print it)")
    args = ap.parse_args()
    workers_list = [int(w) for w in args.workers.split(",")]

    def log(msg: str) -> None:
        print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)

    began = datetime.now(UTC)
    info = hb.machine(hb.admin_url(args.url))
    log(f"machine: load {info['load']}")
    var_dir = Path(tempfile.mkdtemp(prefix="feishui_bench_var_"))
    key = prepare(args.url, var_dir)
    env = hb.bench_env(args.url, var_dir, "http://127.0.0.1:8000")
    server_log = var_dir / "servers.log"
    auth = {"Authorization": f"Bearer {key}"}

    # pre-built requests
    import json

    n_batches = args.batch_total // args.batch_size
    batches = [
        [notice_body(b * args.batch_size + i) for i in range(args.batch_size)]
        for b in range(n_batches)
    ]
    batch_bodies = [json.dumps({"notices": b}, ensure_ascii=False).encode() for b in batches]
    single_body = json.dumps(notice_body(0), ensure_ascii=False).encode()
    problems: list[str] = []
    batch_rows, single_rows = [], []

    for workers in workers_list:
        log(f"workers={workers}: starting servers")
        with hb.servers(
            [("feishui_app", workers, "/healthz"), ("bare_app", workers, "/ping")], env, server_log
        ) as (api, bare):
            # warm-up: a few requests of each kind on every worker (not counted)
            for server, path, extra in ((api, "/v1/notices", auth), (bare, "/bare", {})):
                hb.load(
                    {
                        "host": "127.0.0.1",
                        "port": server.port,
                        "mode": "closed",
                        "concurrency": 4,
                        "duration": 1.0,
                        "cycle": True,
                        "requests": [hb.http_request("POST", path, single_body, extra)],
                        "expect_status": 201,
                    },
                    server,  # its processes' ports: every one is warmed up
                )
            hb.load(
                {
                    "host": "127.0.0.1",
                    "port": api.port,
                    "mode": "closed",
                    "concurrency": workers,  # one connection per process
                    "duration": 60,
                    "requests": [
                        hb.http_request(
                            "POST",
                            "/v1/notices/batch",
                            json.dumps({"notices": batches[0][:500]}).encode(),
                            auth,
                        )
                    ]
                    * workers,
                    "expect_status": 200,
                },
                api,
            )

            if not args.no_batch:
                parts: dict[str, list[dict]] = {"feishui": [], "bare": []}
                per_round = max(1, n_batches // args.rounds)
                chunks = [batch_bodies[i : i + per_round] for i in range(0, n_batches, per_round)]
                for r, chunk in enumerate(chunks):
                    order = ["feishui", "bare"] if r % 2 == 0 else ["bare", "feishui"]
                    for kind in order:
                        server, path, extra, table = (
                            (api, "/v1/notices/batch", auth, "notices")
                            if kind == "feishui"
                            else (bare, "/bare/batch", {}, "bare_rows")
                        )
                        before = count(args.url, table)
                        res = hb.load(
                            {
                                "host": "127.0.0.1",
                                "port": server.port,
                                "mode": "closed",
                                "concurrency": workers,
                                "duration": 600,
                                "requests": [
                                    hb.http_request("POST", path, b, extra) for b in chunk
                                ],
                                "expect_status": 200,
                            },
                            server,
                        )
                        stored = count(args.url, table) - before
                        expected = res["answered"] * args.batch_size
                        if res["errors"] or stored != expected or res["answered"] != len(chunk):
                            problems.append(
                                f"batch {kind} w{workers}: {res['answered']} of "
                                f"{len(chunk)} answered, {res['errors']} errors "
                                f"{res['error_samples'][:1]}, {stored} rows stored,"
                                f" {expected} expected"
                            )
                        res["rows"] = stored
                        parts[kind].append(res)
                        log(
                            f"batch {kind} w{workers} round {r}: "
                            f"{stored / res['elapsed']:.0f} rows/s"
                        )
                f, b = (hb.merge(parts["feishui"]), hb.merge(parts["bare"]))
                f_rows = sum(p["rows"] for p in parts["feishui"])
                b_rows = sum(p["rows"] for p in parts["bare"])
                batch_rows.append(
                    {
                        "workers": workers,
                        "feishui": f,
                        "bare": b,
                        "f_nps": f_rows / f["elapsed"],
                        "b_nps": b_rows / b["elapsed"],
                        "f_rows": f_rows,
                        "b_rows": b_rows,
                        "f_rounds": [round(p["rows"] / p["elapsed"]) for p in parts["feishui"]],
                    }
                )

            if not args.no_single:
                single = {  # kind -> (server, path, headers, table the rows land in)
                    "feishui": (api, "/v1/notices", auth, "notices"),
                    "bare": (bare, "/bare", {}, "bare_rows"),
                }

                def cell(target: tuple, label: str, **spec: Any) -> dict:
                    """One run of single creates at ``target`` (server, path, headers, table the
                    rows land in); checks that every answered request stored its row."""
                    server, path, extra, table = target
                    before = count(args.url, table)
                    res = hb.load(
                        {
                            "host": "127.0.0.1",
                            "port": server.port,
                            "cycle": True,
                            "requests": [hb.http_request("POST", path, single_body, extra)],
                            "expect_status": 201,
                            **spec,
                        },
                        server,
                    )
                    stored = count(args.url, table) - before
                    if res["errors"] or stored != res["answered"]:
                        problems.append(
                            f"{label}: {res['errors']} errors {res['error_samples'][:1]}, "
                            f"{stored} rows stored, {res['answered']} answered"
                        )
                    return res

                parts = {"feishui": [], "bare": []}
                for r in range(args.rounds):
                    order = ["feishui", "bare"] if r % 2 == 0 else ["bare", "feishui"]
                    for kind in order:
                        res = cell(
                            single[kind],
                            f"single {kind} w{workers}",
                            mode="closed",
                            concurrency=args.concurrency,
                            duration=args.seconds,
                        )
                        parts[kind].append(res)
                        log(
                            f"single {kind} w{workers} round {r}: {res['rps']:.0f} req/s "
                            f"p99 {res['p99']:.1f} ms"
                        )
                row = {
                    "workers": workers,
                    "feishui": hb.merge(parts["feishui"]),
                    "bare": hb.merge(parts["bare"]),
                }
                for kind in ("feishui", "bare"):  # half load: open loop at 50% of the maximum
                    rate = row[kind]["rps"] / 2
                    res = cell(
                        single[kind],
                        f"half-load {kind} w{workers}",
                        mode="open",
                        concurrency=64,
                        duration=args.open_seconds,
                        rate=rate,
                    )
                    res["rate"] = rate
                    row[f"{kind}_half"] = res
                    log(f"half load {kind} w{workers}: {rate:.0f} req/s p99 {res['p99']:.1f} ms")
                single_rows.append(row)

    took = (datetime.now(UTC) - began).total_seconds()
    lines = hb.header(
        "Notices API (bench/notices.py)", began, took, info, sys.argv[1:], "bench/notices.py"
    )
    lines += [
        "Servers: W processes of `uvicorn --factory --loop uvloop --http httptools` (one "
        "worker each, each on its own port, connections spread evenly over them) on "
        "`bench/_apps.py:feishui_app` (`create_app(build_runtime(Settings()))`) and "
        "`bare_app` (bare FastAPI, sync endpoint, one INSERT / one COPY through the same "
        "`make_engine`), both running, the idle one waiting. Load generator: "
        "bench/_load.py in its own process (raw HTTP/1.1 keep-alive on uvloop). `load` = "
        "the host's 1-minute load average at the end of the cell. `server CPU` = user + "
        "system CPU of the uvicorn processes (master and workers, /proc) over the cell, "
        "divided by the answered requests (PostgreSQL's CPU not included).",
        "",
    ]
    if batch_rows:
        lines += [
            f"### (a) Batches: {args.batch_total:,} notices in batches of "
            f"{args.batch_size:,}, `workers` connections",
            "",
            "| workers | feishui notices/s | bare COPY rows/s | feishui / bare | "
            "feishui per batch p50 / max ms | bare per batch p50 / max ms | "
            "feishui server CPU ms / 1,000 notices | bare | feishui rounds | "
            "target >= 5,000/s | load |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---|---|---:|",
        ]
        for row in batch_rows:
            f, b = row["feishui"], row["bare"]
            lines.append(
                f"| {row['workers']} | {row['f_nps']:,.0f} | {row['b_nps']:,.0f} | "
                f"{row['f_nps'] / row['b_nps']:.2f} | {f['p50']:,.0f} / {f['max']:,.0f} | "
                f"{b['p50']:,.0f} / {b['max']:,.0f} | "
                f"{f['cpu_ms'] * 1000 / args.batch_size:,.0f} | "
                f"{b['cpu_ms'] * 1000 / args.batch_size:,.0f} | {row['f_rounds']} | "
                f"{'met' if row['f_nps'] >= TARGET_BATCH else 'MISSED'} | {f['load1']:.1f} |"
            )
        lines.append("")
    if single_rows:
        lines += [
            f"### (b) Single `POST /v1/notices`, {args.concurrency} connections, "
            f"closed loop, {args.rounds} x {args.seconds:g} s per kind",
            "",
            "| workers | kind | req/s | p50 ms | p90 ms | p99 ms | max ms | "
            "server CPU ms/req | errors | rounds req/s | load |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for row in single_rows:
            for kind, label in (
                ("feishui", "`POST /v1/notices`"),
                ("bare", "bare `POST /bare` (one INSERT)"),
            ):
                m = row[kind]
                lines.append(
                    f"| {row['workers']} | {label} | {m['rps']:,.0f} | {m['p50']:.1f} "
                    f"| {m['p90']:.1f} | {m['p99']:.1f} | {m['max']:.0f} | "
                    f"{m['cpu_ms']:.2f} | {m['errors']} | {m['rounds']} | "
                    f"{m['load1']:.1f} |"
                )
        lines += [
            "",
            "| workers | feishui / bare throughput | target >= 0.50 | feishui p99 ms "
            "| target < 100 ms |",
            "|---:|---:|---|---:|---|",
        ]
        for row in single_rows:
            ratio = row["feishui"]["rps"] / row["bare"]["rps"]
            p99 = row["feishui"]["p99"]
            lines.append(
                f"| {row['workers']} | {ratio:.2f} | "
                f"{'met' if ratio >= TARGET_RATIO else 'MISSED'} | {p99:.1f} | "
                f"{'met' if p99 < TARGET_P99 else 'MISSED'} |"
            )
        lines += [
            "",
            f"Half load: open loop at 50% of each kind's closed-loop maximum, "
            f"{args.open_seconds:g} s, latency from each request's scheduled send time:",
            "",
            "| workers | kind | offered req/s | answered req/s | p50 ms | p90 ms | p99 ms | "
            "max ms | p99 < 100 ms | load |",
            "|---:|---|---:|---:|---:|---:|---:|---:|---|---:|",
        ]
        for row in single_rows:
            for kind, label in (("feishui", "`POST /v1/notices`"), ("bare", "bare `POST /bare`")):
                m = row[f"{kind}_half"]
                lines.append(
                    f"| {row['workers']} | {label} | {m['rate']:,.0f} | {m['rps']:,.0f} | "
                    f"{m['p50']:.1f} | {m['p90']:.1f} | {m['p99']:.1f} | {m['max']:.0f} | "
                    f"{'met' if m['p99'] < TARGET_P99 else 'MISSED'} | {m['load1']:.1f} |"
                )
        lines.append("")
    lines += [
        "Checks: "
        + (
            "all answers as expected, rows stored = rows answered."
            if not problems
            else "PROBLEMS: " + "; ".join(problems)
        ),
        "",
    ]
    report = "\n".join(lines)
    if args.out:
        Path(args.out).write_text(report)
        log(f"wrote {args.out}")
    print(report)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
