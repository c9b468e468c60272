#!/usr/bin/env python
"""Ledger posting throughput: ``LedgerService.post`` against plain INSERTs of the same rows.

For every cell (legs x writers x layout) the script measures, back to back in the same run:

* ``ledger``       -- ``LedgerService.post`` through ``clearing.db.run_in_transaction`` (one
                      entry per transaction, a fresh session per transaction, unique keys);
* ``plain-bare``   -- the same rows (1 entry row + N posting rows per transaction) INSERTed with
                      psycopg into ``plain_entries`` / ``plain_postings``: same columns, but no
                      triggers, no constraints besides NOT NULL, no indexes;
* ``plain-schema`` -- the same psycopg INSERTs into the real ``journal_entries`` / ``postings``
                      (indexes, FKs, CHECKs and the deferred balance triggers all fire).

Layouts: ``spread`` debits a random ``gateway_clearing:*`` and credits random
``treasury_payable:*`` accounts out of 1,000; ``hot`` debits ``gateway_clearing:alipay`` in every
entry. After every cell the script checks that the cell's entries and postings were all stored,
that they balance, that the whole trial balance nets to zero, and that no error reached the caller
(retries inside ``run_in_transaction`` are counted, not hidden).

Kinds and layouts interleave in ``--rounds`` rounds so that noise hits them alike. Absolute
figures depend on the machine and the minute; compare the ratios (measured in the same run).

    .venv/bin/python bench/ledger_post.py --seconds 3 --processes --out /tmp/ledger_post.md
    .venv/bin/python bench/ledger_post.py --no-main --writers 8 --extras --extra-writers 8 \
        --extra-seconds 3 --profile                    # prototypes, schema variants, profile

See bench/README.md; results and interpretation in docs/performance.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import multiprocessing as mp
import os
import platform
import pstats
import random
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import psycopg  # noqa: E402
from sqlalchemy import create_engine, make_url, text  # noqa: E402

from clearing import migrate  # noqa: E402
from clearing.db import make_engine, make_sessionmaker, run_in_transaction, transaction  # noqa: E402
from clearing.ledger.core import Entry, Posting  # noqa: E402
from clearing.ledger.repository import LedgerRepository  # noqa: E402
from clearing.ledger.service import LedgerService  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ledger_fastpath import CoreLedgerService, lean_post, one_round_trip_post  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/feishui_bench"
HOT = "gateway_clearing:alipay"
GATEWAYS = [HOT] + [f"gateway_clearing:gw{i:03d}" for i in range(499)]
TREASURIES = [f"treasury_payable:t{i:03d}-city" for i in range(500)]
ACCOUNTS = GATEWAYS + TREASURIES  # 1,000
BUSINESS_DATE = date(2026, 11, 28)
DUMMY_HASH = "0" * 64
KINDS = ("ledger", "plain-bare", "plain-schema")
EXTRA_KINDS = ("ledger-core", "ledger-noping", "lean", "lean-1rt", "plain-notrig", "plain-nofk")
LABELS = {
    "ledger": "ledger (LedgerService.post)",
    "plain-bare": "plain INSERTs, bare tables (no triggers, constraints, indexes)",
    "plain-schema": "plain INSERTs into the real tables (indexes, FKs, CHECKs, deferred triggers)",
    "ledger-core": "prototype: LedgerService with its 2 INSERTs prebuilt on the Core tables",
    "ledger-noping": "LedgerService.post, engine without pool_pre_ping",
    "lean": "prototype: one INSERT ... CTE on the session's connection, no pre-ping",
    "lean-1rt": "prototype: the same CTE as its own autocommit transaction (1 round trip)",
    "plain-notrig": "plain INSERTs, real indexes + CHECKs + FKs, no triggers",
    "plain-nofk": "plain INSERTs, real indexes + CHECKs, FK to the entry only (none to accounts)",
}
TABLES = {
    "plain-bare": ("plain_entries", "plain_postings"),
    "plain-notrig": ("notrig_entries", "notrig_postings"),
    "plain-nofk": ("nofk_entries", "nofk_postings"),
}

BARE_DDL = """
CREATE TABLE plain_entries (LIKE journal_entries INCLUDING DEFAULTS);
CREATE SEQUENCE plain_entries_id_seq OWNED BY plain_entries.id;
ALTER TABLE plain_entries ALTER COLUMN id SET DEFAULT nextval('plain_entries_id_seq');
CREATE TABLE plain_postings (LIKE postings INCLUDING DEFAULTS);
CREATE SEQUENCE plain_postings_id_seq OWNED BY plain_postings.id;
ALTER TABLE plain_postings ALTER COLUMN id SET DEFAULT nextval('plain_postings_id_seq');
"""
LIKE_DDL = """
CREATE TABLE {p}_entries (LIKE journal_entries INCLUDING ALL);
CREATE SEQUENCE {p}_entries_id_seq OWNED BY {p}_entries.id;
ALTER TABLE {p}_entries ALTER COLUMN id SET DEFAULT nextval('{p}_entries_id_seq');
CREATE TABLE {p}_postings (LIKE postings INCLUDING ALL);
CREATE SEQUENCE {p}_postings_id_seq OWNED BY {p}_postings.id;
ALTER TABLE {p}_postings ALTER COLUMN id SET DEFAULT nextval('{p}_postings_id_seq');
ALTER TABLE {p}_postings ADD FOREIGN KEY (entry_id, entry_legs) REFERENCES {p}_entries (id, legs);
"""
NOTRIG_FK = (
    "ALTER TABLE notrig_postings ADD FOREIGN KEY (account_id) REFERENCES ledger_accounts (id);"
)


# -- the workload ---------------------------------------------------------------------------
def make_legs(rng: random.Random, legs: int, layout: str) -> list[tuple[str, str, int]]:
    """One debit to a gateway clearing account, ``legs - 1`` credits to distinct treasuries."""
    debit = HOT if layout == "hot" else rng.choice(GATEWAYS)
    credits = [(code, "C", rng.randint(100, 500_000)) for code in rng.sample(TREASURIES, legs - 1)]
    return [(debit, "D", sum(a for _, _, a in credits)), *credits]


def psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def admin_url(url: str) -> str:
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


# -- workers --------------------------------------------------------------------------------
class Result:
    __slots__ = ("attempts", "errors", "first_error", "lat", "ok", "t0", "t1")

    def __init__(self) -> None:
        self.ok = self.errors = self.attempts = 0
        self.lat: list[float] = []
        self.t0 = self.t1 = 0.0
        self.first_error: str | None = None

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in self.__slots__}


def ledger_engine(url: str, kind: str, pool_size: int):  # type: ignore[no-untyped-def]
    """The application's engine (``make_engine``: pool_pre_ping on) or the same without ping."""
    if kind in ("ledger", "ledger-core"):
        engine = make_engine(url, pool_size=pool_size)
    else:
        engine = create_engine(
            url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=False
        )
    with transaction(make_sessionmaker(engine)) as s:  # warm the per-engine account cache
        assert len(LedgerRepository(s).accounts(ACCOUNTS)) == len(ACCOUNTS)
    return engine


def _entry(rng: random.Random, legs: int, layout: str, key: str, tag: str) -> Entry:
    return Entry(
        idempotency_key=key,
        business_date=BUSINESS_DATE,
        description=f"payment {key}",
        postings=tuple(Posting(c, d, a) for c, d, a in make_legs(rng, legs, layout)),
        ref_type=tag,
        ref_id=key,
    )


def _timed_loop(res: Result, one: Callable[[int], None], go) -> None:  # type: ignore[no-untyped-def]
    start_at, stop_at = go()
    delay = start_at - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    res.t0 = time.monotonic()
    n = 0
    while time.monotonic() < stop_at:
        t = time.perf_counter()
        try:
            one(n)
            res.ok += 1
        except Exception as exc:
            res.errors += 1
            res.first_error = res.first_error or f"{type(exc).__name__}: {exc}"[:300]
        res.lat.append(time.perf_counter() - t)
        n += 1
    res.t1 = time.monotonic()


def post_function(kind: str):  # type: ignore[no-untyped-def]
    if kind == "lean":
        return lean_post
    service = CoreLedgerService if kind == "ledger-core" else LedgerService
    return lambda session, entry: service(session).post(entry)


def ledger_worker(url: str, shared: dict, spec: dict, wid: int, ready, go) -> dict:  # type: ignore[no-untyped-def]
    """``ledger`` / ``ledger-core`` / ``ledger-noping`` / ``lean``: one entry per
    ``run_in_transaction``."""
    kind = spec["kind"]
    engine = shared.get("engine") or ledger_engine(url, kind, 2)
    factory = make_sessionmaker(engine)
    res = Result()

    def counting_factory():  # type: ignore[no-untyped-def]  # one call per attempt
        res.attempts += 1
        return factory()

    post = post_function(kind)

    rng = random.Random(spec["seed"] * 1000 + wid)
    tag, legs, layout = spec["tag"], spec["legs"], spec["layout"]
    for i in range(5):  # warm-up, not counted (prepared statements, pool)
        entry = _entry(rng, legs, layout, f"warm-{tag}-{spec['round']}-{wid}-{i}", "warm")
        run_in_transaction(factory, lambda s, e=entry: post(s, e))

    def one(n: int) -> None:
        entry = _entry(rng, legs, layout, f"{tag}-{spec['round']}-{wid}-{n}", tag)
        posted = run_in_transaction(counting_factory, lambda s: post(s, entry))
        if posted.replayed:
            raise AssertionError("unexpected replay")

    ready()
    _timed_loop(res, one, go)
    if "engine" not in shared:
        engine.dispose()
    return res.as_dict()


def one_rt_worker(url: str, shared: dict, spec: dict, wid: int, ready, go) -> dict:  # type: ignore[no-untyped-def]
    """``lean-1rt``: the CTE as its own autocommit transaction on a psycopg connection."""
    engine = shared.get("engine") or ledger_engine(url, "ledger-noping", 1)
    session = make_sessionmaker(engine)()  # only for the (warm) account cache: runs no SQL
    conn = psycopg.connect(psycopg_dsn(url), autocommit=True)
    res = Result()
    rng = random.Random(spec["seed"] * 1000 + wid)
    tag, legs, layout = spec["tag"], spec["legs"], spec["layout"]
    rnd = spec["round"]
    for i in range(6):
        one_round_trip_post(
            conn, session, _entry(rng, legs, layout, f"warm-{tag}-{rnd}-{wid}-{i}", "warm")
        )

    def one(n: int) -> None:
        res.attempts += 1
        entry = _entry(rng, legs, layout, f"{tag}-{rnd}-{wid}-{n}", tag)
        if one_round_trip_post(conn, session, entry) is None:
            raise AssertionError("unexpected replay")

    ready()
    _timed_loop(res, one, go)
    session.close()
    conn.close()
    return res.as_dict()


def plain_inserter(conn, kind: str, rng: random.Random, legs: int, layout: str):  # type: ignore[no-untyped-def]
    """Baselines: psycopg, BEGIN; INSERT entry RETURNING id; INSERT postings; COMMIT."""
    e_table, p_table = TABLES.get(kind, ("journal_entries", "postings"))
    ins_entry = (
        f"INSERT INTO {e_table} (idempotency_key, business_date, created_at, "
        "description, metadata, ref_type, ref_id, content_hash, legs) "
        "VALUES (%s, %s, %s, %s, %s::json, %s, %s, %s, %s) RETURNING id"
    )
    ins_posting = (
        f"INSERT INTO {p_table} (entry_id, leg, entry_legs, account_id, direction, amount, "
        "currency) VALUES (%s, %s, %s, %s, %s, %s, %s)"
    )
    with conn.cursor() as cur:
        cur.execute("SELECT code, id FROM ledger_accounts")
        ids = dict(cur.fetchall())
    conn.commit()

    def insert(key: str, ref_type: str) -> None:
        rows = make_legs(rng, legs, layout)
        try:
            with conn.cursor() as cur:
                cur.execute(
                    ins_entry,
                    (
                        key,
                        BUSINESS_DATE,
                        datetime.now(UTC),
                        f"payment {key}",
                        "{}",
                        ref_type,
                        key,
                        DUMMY_HASH,
                        len(rows),
                    ),
                )
                eid = cur.fetchone()[0]
                cur.executemany(
                    ins_posting,
                    [
                        (eid, leg, len(rows), ids[c], d, a, "CNY")
                        for leg, (c, d, a) in enumerate(rows, 1)
                    ],
                )
            conn.commit()
        except BaseException:
            conn.rollback()
            raise

    return insert


def plain_worker(url: str, shared: dict, spec: dict, wid: int, ready, go) -> dict:  # type: ignore[no-untyped-def]
    res = Result()
    conn = psycopg.connect(psycopg_dsn(url))
    rng = random.Random(spec["seed"] * 1000 + wid)
    tag, rnd = spec["tag"], spec["round"]
    insert = plain_inserter(conn, spec["kind"], rng, spec["legs"], spec["layout"])
    for i in range(6):
        insert(f"warm-{tag}-{rnd}-{wid}-{i}", "warm")

    def one(n: int) -> None:
        res.attempts += 1
        insert(f"{tag}-{rnd}-{wid}-{n}", tag)

    ready()
    _timed_loop(res, one, go)
    conn.close()
    return res.as_dict()


WORKERS = {
    "ledger": ledger_worker,
    "ledger-core": ledger_worker,
    "ledger-noping": ledger_worker,
    "lean": ledger_worker,
    "lean-1rt": one_rt_worker,
}
for _k in ("plain-bare", "plain-schema", "plain-notrig", "plain-nofk"):
    WORKERS[_k] = plain_worker


def _process_main(kind, url, spec, wid, ready_q, go_ev, times, out_q):  # type: ignore[no-untyped-def]
    try:

        def go() -> tuple[float, float]:
            go_ev.wait()
            return times[0], times[1]

        out_q.put(WORKERS[kind](url, {}, spec, wid, lambda: ready_q.put(wid), go))
    except BaseException as exc:
        ready_q.put(wid)
        out_q.put({"fatal": f"{type(exc).__name__}: {exc}"})


def run_cell(kind: str, url: str, spec: dict, writers: int, seconds: float, mode: str) -> dict:
    spec = {**spec, "kind": kind}
    if mode == "threads":
        shared = {}
        if kind in ("ledger", "ledger-core", "ledger-noping", "lean", "lean-1rt"):  # as an app
            shared["engine"] = ledger_engine(url, kind, writers + 2)
        results: list[dict] = []
        ready = threading.Semaphore(0)
        go_ev = threading.Event()
        times: list[float] = []

        def go() -> tuple[float, float]:
            go_ev.wait()
            return times[0], times[1]

        def body(wid: int) -> None:
            try:
                results.append(WORKERS[kind](url, shared, spec, wid, ready.release, go))
            except BaseException as exc:
                ready.release()
                results.append({"fatal": f"{type(exc).__name__}: {exc}"})

        threads = [threading.Thread(target=body, args=(w,)) for w in range(writers)]
        for t in threads:
            t.start()
        for _ in threads:
            ready.acquire()
        start = time.monotonic() + 0.05
        times[:] = [start, start + seconds]
        go_ev.set()
        for t in threads:
            t.join()
        if "engine" in shared:
            shared["engine"].dispose()
    else:
        ctx = mp.get_context("fork")
        ready_q, out_q, go_ev = ctx.Queue(), ctx.Queue(), ctx.Event()
        times = ctx.Array("d", 2)
        procs = [
            ctx.Process(
                target=_process_main, args=(kind, url, spec, w, ready_q, go_ev, times, out_q)
            )
            for w in range(writers)
        ]
        for p in procs:
            p.start()
        for _ in procs:
            ready_q.get(timeout=120)
        start = time.monotonic() + 0.05
        times[0], times[1] = start, start + seconds
        go_ev.set()
        results = [out_q.get(timeout=seconds + 120) for _ in procs]
        for p in procs:
            p.join()
    fatal = [r["fatal"] for r in results if "fatal" in r]
    if fatal:
        raise RuntimeError(f"{kind} worker failed: {fatal[0]}")
    ok = sum(r["ok"] for r in results)
    errors = sum(r["errors"] for r in results)
    elapsed = max(r["t1"] for r in results) - min(r["t0"] for r in results)
    lat = sorted(x for r in results for x in r["lat"])
    return {
        "kind": kind,
        "ok": ok,
        "errors": errors,
        "retries": sum(r["attempts"] for r in results) - ok - errors,
        "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        "elapsed": elapsed,
        "eps": ok / elapsed if elapsed else 0.0,
        "p50": _pct(lat, 50),
        "p99": _pct(lat, 99),
        "lat": lat,
    }


def merge(parts: list[dict]) -> dict:
    """Rounds of one kind in one cell, as if one run: summed counts and time, merged latencies."""
    lat = sorted(x for p in parts for x in p["lat"])
    ok, elapsed = sum(p["ok"] for p in parts), sum(p["elapsed"] for p in parts)
    return {
        "kind": parts[0]["kind"],
        "ok": ok,
        "elapsed": elapsed,
        "errors": sum(p["errors"] for p in parts),
        "retries": sum(p["retries"] for p in parts),
        "first_error": next((p["first_error"] for p in parts if p["first_error"]), None),
        "eps": ok / elapsed if elapsed else 0.0,
        "p50": _pct(lat, 50),
        "p99": _pct(lat, 99),
        "rounds": [round(p["eps"]) for p in parts],
    }


def _pct(values: list[float], p: int) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] * 1000


# -- checks ---------------------------------------------------------------------------------
def check_cell(engine, kind: str, tag: str, legs: int, result: dict) -> list[str]:
    """Problems found (empty when the cell stored exactly what it reported, balanced)."""
    e_table, p_table = TABLES.get(kind, ("journal_entries", "postings"))
    ok = result["ok"]
    problems = []
    with engine.connect() as conn:
        entries = conn.execute(
            text(f"SELECT count(*) FROM {e_table} WHERE ref_type = :t"), {"t": tag}
        ).scalar()
        postings, debits, credits = conn.execute(
            text(
                f"SELECT count(*), coalesce(sum(p.amount) FILTER (WHERE direction = 'D'), 0), "
                f"coalesce(sum(p.amount) FILTER (WHERE direction = 'C'), 0) "
                f"FROM {p_table} p JOIN {e_table} e ON e.id = p.entry_id WHERE e.ref_type = :t"
            ),
            {"t": tag},
        ).one()
    if entries != ok:
        problems.append(f"{kind}: {entries} entries stored, {ok} reported")
    if postings != ok * legs:
        problems.append(f"{kind}: {postings} postings stored, {ok * legs} expected")
    if debits != credits:
        problems.append(f"{kind}: cell debits {debits} != credits {credits}")
    if e_table == "journal_entries":
        with transaction(make_sessionmaker(engine)) as s:
            ledger = LedgerService(s)
            if not ledger.trial_balance().balanced or ledger._verify_totals():
                problems.append(f"{kind}: the trial balance does not net to zero")
    if result["errors"]:
        problems.append(
            f"{kind}: {result['errors']} errors reached the caller, first: {result['first_error']}"
        )
    return problems


# -- setup ----------------------------------------------------------------------------------
def setup_database(url: str) -> None:
    name = make_url(url).database
    if not name or name.startswith("feishui_test") or name in ("feishui_dev", "postgres"):
        raise SystemExit(f"refusing to drop database {name!r}: use a dedicated bench database")
    admin = make_engine(admin_url(url))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    migrate.upgrade(url)
    with psycopg.connect(psycopg_dsn(url), autocommit=True) as conn:
        conn.execute(BARE_DDL)
        conn.execute(LIKE_DDL.format(p="notrig") + NOTRIG_FK)
        conn.execute(LIKE_DDL.format(p="nofk"))


def open_accounts(engine) -> None:  # type: ignore[no-untyped-def]
    """Open the 1,000 accounts before any timing (chart kinds open themselves on first use)."""
    with transaction(make_sessionmaker(engine)) as s:
        LedgerRepository(s).accounts(ACCOUNTS)


def machine(url: str) -> dict:
    with psycopg.connect(psycopg_dsn(url)) as c:
        pg = c.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            c.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', "
                "'shared_buffers', 'max_connections', 'fsync')"
            ).fetchall()
        )
    return {
        "nproc": os.cpu_count(),
        "pg": pg,
        "settings": settings,
        "python": platform.python_version(),
        "load": os.getloadavg(),
    }


# -- the run --------------------------------------------------------------------------------
def run_matrix(
    args,
    engine,
    mode: str,
    kinds,
    writers_list,
    log,  # type: ignore[no-untyped-def]
    prefix: str = "m",
    seconds: float | None = None,
) -> list[dict]:
    """Every (legs, writers) pair: all kinds x both layouts interleave in ``--rounds`` rounds
    (order rotating per round), so that ledger/baseline and hot/spread are side by side."""
    rows = []
    slice_s = (seconds or args.seconds) / args.rounds
    for legs in args.legs:
        for writers in writers_list:
            combos = [(k, lay) for k in kinds for lay in ("spread", "hot")]
            parts: dict[tuple[str, str], list[dict]] = {c: [] for c in combos}
            tags = {
                (k, lay): f"{prefix}{mode[0]}{legs}l{writers}w{lay[0]}-{k}" for k, lay in combos
            }
            loads = []
            for rnd in range(args.rounds):
                shift = (rnd * 5) % len(combos)
                for kind, layout in combos[shift:] + combos[:shift]:
                    spec = {
                        "tag": tags[(kind, layout)],
                        "legs": legs,
                        "layout": layout,
                        "seed": legs * 100 + writers * 10 + rnd,
                        "round": rnd,
                    }
                    parts[(kind, layout)].append(
                        run_cell(kind, args.url, spec, writers, slice_s, mode)
                    )
                loads.append(os.getloadavg()[0])
            for layout in ("spread", "hot"):
                row = {
                    "legs": legs,
                    "writers": writers,
                    "layout": layout,
                    "mode": mode,
                    "problems": [],
                    "load": sum(loads) / len(loads),
                }
                for kind in kinds:
                    row[kind] = r = merge(parts[(kind, layout)])
                    row["problems"] += check_cell(engine, kind, tags[(kind, layout)], legs, r)
                log(
                    f"  {mode:9} legs={legs} writers={writers} {layout:6} "
                    f"load={row['load']:4.1f} "
                    + "  ".join(
                        f"{k}={row[k]['eps']:6.0f}/s p50={row[k]['p50']:5.1f}"
                        f" p99={row[k]['p99']:6.1f}ms r={row[k]['retries']}"
                        for k in kinds
                    )
                    + ("" if not row["problems"] else f"  PROBLEMS: {row['problems']}")
                )
                rows.append(row)
    return rows


def _mode_line(mode: str) -> str:
    return (
        "Writers as threads (one Python process, one GIL)."
        if mode == "threads"
        else "Writers as processes (one Python process per writer, forked)."
    )


def render(rows: list[dict], mode: str) -> str:
    out = [
        _mode_line(mode),
        "",
        "| legs | writers | layout | ledger e/s | plain, no triggers e/s | ledger / plain "
        "| plain, real schema e/s | ledger / plain-schema | ledger p50 / p99 ms "
        "| plain p50 / p99 ms | retries | load | checks |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        led, bare, sch = r["ledger"], r["plain-bare"], r["plain-schema"]
        out.append(
            f"| {r['legs']} | {r['writers']} | {r['layout']} | {led['eps']:,.0f} "
            f"| {bare['eps']:,.0f} | {_ratio(led['eps'], bare['eps'])} "
            f"| {sch['eps']:,.0f} | {_ratio(led['eps'], sch['eps'])} "
            f"| {led['p50']:.1f} / {led['p99']:.1f} | {bare['p50']:.1f} / {bare['p99']:.1f} "
            f"| {led['retries']} | {r['load']:.1f} "
            f"| {'ok' if not r['problems'] else '; '.join(r['problems'])} |"
        )
    out += [
        "",
        "Hot / spread, same legs and writers (target for the ledger: >= 0.8):",
        "",
        "| legs | writers | ledger hot/spread | plain, no triggers hot/spread "
        "| plain, real schema hot/spread |",
        "|---:|---:|---:|---:|---:|",
    ]
    out += _hot_spread(rows, KINDS)
    return "\n".join(out) + "\n"


def render_extras(rows: list[dict], mode: str, kinds) -> str:  # type: ignore[no-untyped-def]
    out = [
        _mode_line(mode) + " Entries per second; in brackets the ratio to plain, no "
        "triggers (plain-bare) of the same cell.",
        "",
    ]
    out += [f"- `{k}`: {LABELS[k]}" for k in kinds]
    out += [
        "",
        "| legs | writers | layout | " + " | ".join(kinds) + " | checks |",
        "|---:|---:|---|" + "---:|" * len(kinds) + "---|",
    ]
    for r in rows:
        base = r.get("plain-bare", {}).get("eps", 0.0)
        cells = [
            f"{r[k]['eps']:,.0f}"
            + (f" ({_ratio(r[k]['eps'], base)})" if base and k != "plain-bare" else "")
            for k in kinds
        ]
        out.append(
            f"| {r['legs']} | {r['writers']} | {r['layout']} | "
            + " | ".join(cells)
            + f" | {'ok' if not r['problems'] else '; '.join(r['problems'])} |"
        )
    out += [
        "",
        "Hot / spread:",
        "",
        "| legs | writers | " + " | ".join(kinds) + " |",
        "|---:|---:|" + "---:|" * len(kinds),
    ]
    out += _hot_spread(rows, kinds)
    return "\n".join(out) + "\n"


def _hot_spread(rows, kinds) -> list[str]:  # type: ignore[no-untyped-def]
    by = {(r["legs"], r["writers"], r["layout"]): r for r in rows}
    out = []
    for (legs, writers, layout), r in by.items():
        h = by.get((legs, writers, "hot"))
        if layout == "spread" and h:
            out.append(
                f"| {legs} | {writers} | "
                + " | ".join(_ratio(h[k]["eps"], r[k]["eps"]) for k in kinds)
                + " |"
            )
    return out


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}" if b else "n/a"


# -- profile --------------------------------------------------------------------------------
def _backend_cpu(pid: int) -> float:
    """User + system CPU seconds of one PostgreSQL backend (same host, from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_post(args, legs: int, n: int) -> dict[str, tuple[float, float, float]]:  # type: ignore[no-untyped-def]
    """Sequential posts, one connection each kind: (wall, client CPU, server CPU) ms per post."""
    out = {}
    rng = random.Random(7 + legs)
    for kind in (
        "plain-bare",
        "plain-nofk",
        "plain-notrig",
        "plain-schema",
        "lean-1rt",
        "lean",
        "ledger-core",
        "ledger-noping",
        "ledger",
    ):
        tag = f"cpu{legs}-{kind}"
        if kind.startswith("plain"):
            conn = psycopg.connect(psycopg_dsn(args.url))
            insert = plain_inserter(conn, kind, rng, legs, "spread")
            pid = conn.info.backend_pid

            def one(key: str, insert=insert, tag=tag) -> None:  # type: ignore[no-untyped-def]
                insert(key, tag)

            close = conn.close
        elif kind == "lean-1rt":
            engine = ledger_engine(args.url, "ledger-noping", 1)
            session = make_sessionmaker(engine)()
            conn = psycopg.connect(psycopg_dsn(args.url), autocommit=True)
            pid = conn.info.backend_pid

            def one(key: str, conn=conn, session=session, tag=tag) -> None:  # type: ignore[no-untyped-def]
                one_round_trip_post(conn, session, _entry(rng, legs, "spread", key, tag))

            def close(conn=conn, session=session, engine=engine) -> None:  # type: ignore[no-untyped-def]
                session.close()
                conn.close()
                engine.dispose()
        else:
            engine = ledger_engine(args.url, kind, 1)
            # sequential use of a QueuePool reuses its one idle connection: one backend to watch
            factory = make_sessionmaker(engine)
            with engine.connect() as c:
                pid = c.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            post = post_function(kind)

            def one(key: str, factory=factory, post=post, tag=tag) -> None:  # type: ignore[no-untyped-def]
                entry = _entry(rng, legs, "spread", key, tag)
                run_in_transaction(factory, lambda s: post(s, entry))

            close = engine.dispose
        for i in range(20):
            one(f"{tag}-warm-{i}")
        s0, c0, w0 = _backend_cpu(pid), time.thread_time(), time.perf_counter()
        for i in range(n):
            one(f"{tag}-{i}")
        w1, c1, s1 = time.perf_counter(), time.thread_time(), _backend_cpu(pid)
        close()
        out[kind] = ((w1 - w0) / n * 1000, (c1 - c0) / n * 1000, (s1 - s0) / n * 1000)
    return out


def profile(args, log) -> str:  # type: ignore[no-untyped-def]
    """One writer, no concurrency: round trips, CPU per post, and where the ledger's goes."""
    from sqlalchemy.orm import Session

    import clearing.ledger.core as core_mod
    import clearing.ledger.service as service_mod

    n = args.profile_entries
    engine = ledger_engine(args.url, "ledger", 4)
    factory = make_sessionmaker(engine)
    rng = random.Random(99)

    # 1. what goes over the wire for one post (libpq trace of the pooled connection)
    for i in range(20):
        e = _entry(rng, 2, "spread", f"prof-warm-{i}", "prof")
        run_in_transaction(factory, lambda s, e=e: LedgerService(s).post(e))
    raw = engine.raw_connection()
    pgconn = raw.driver_connection.pgconn
    trace_path = Path("/tmp") / f"ledger_post_trace_{os.getpid()}.txt"
    fd = os.open(trace_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    raw.close()
    pgconn.trace(fd)
    e = _entry(rng, 2, "spread", "prof-trace", "prof")
    run_in_transaction(factory, lambda s: LedgerService(s).post(e))
    pgconn.untrace()
    os.close(fd)
    wire = _round_trips(trace_path.read_text())
    trace_path.unlink()

    # 2. client and server CPU per post, every path
    cpu = {legs: cpu_per_post(args, legs, n) for legs in args.legs}

    # 3. the ledger path split by layer: client CPU (thread_time) in monkeypatched timers
    spent: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapper(*a, **kw):  # type: ignore[no-untyped-def]
            t = time.thread_time()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.thread_time() - t

        return wrapper

    from clearing.ledger.repository import LedgerRepository as Repo

    patches = [
        (Repo, "accounts"),
        (Repo, "insert_entry"),
        (Session, "commit"),
        (Session, "close"),
        (core_mod, "content_hash"),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name in patches]
    split = {}
    for legs in args.legs:
        for obj, name, fn in saved:
            setattr(obj, name, timed(name, fn))
        spent.clear()
        t_all = time.thread_time()
        for i in range(n):
            t = time.thread_time()
            entry = _entry(rng, legs, "spread", f"prof-{legs}-{i}", "prof")
            spent["entry"] = spent.get("entry", 0.0) + time.thread_time() - t
            run_in_transaction(factory, lambda s, e=entry: LedgerService(s).post(e))
        spent["all"] = time.thread_time() - t_all
        for obj, name, fn in saved:
            setattr(obj, name, fn)
        t = time.thread_time()
        for _ in range(n):
            with engine.connect():
                pass
        spent["checkout"] = time.thread_time() - t
        split[legs] = dict(spent)
    assert service_mod.core.content_hash is saved[-1][2]

    # 4. cProfile (2 legs)
    prof = cProfile.Profile(time.thread_time)  # CPU time: blocking waits do not count
    prof.enable()
    for i in range(n):
        e = _entry(rng, 2, "spread", f"cprof-{i}", "prof")
        run_in_transaction(factory, lambda s, e=e: LedgerService(s).post(e))
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(40)
    engine.dispose()

    ms = 1000 / n
    legs_list = list(args.legs)
    lines = [
        "### Profile: one writer, no concurrency",
        "",
        "Round trips of one 2-leg `LedgerService.post` in `run_in_transaction` "
        "(libpq trace of the pooled connection; account cache warm):",
        "",
    ]
    lines += [f"{i}. {w}" for i, w in enumerate(wire, 1)]
    lines += [
        "",
        f"Cost per post, {n} sequential posts per path on one connection: wall ms / "
        "client CPU ms (this Python thread) / server CPU ms (its PostgreSQL backend, "
        "/proc, 10 ms ticks):",
        "",
        "| path | "
        + " | ".join(f"{legs} legs: wall / client / server" for legs in legs_list)
        + " |",
        "|---|" + "---:|" * len(legs_list),
    ]
    for kind in cpu[legs_list[0]]:
        lines.append(
            f"| `{kind}` | "
            + " | ".join("{:.2f} / {:.2f} / {:.2f}".format(*cpu[legs][kind]) for legs in legs_list)
            + " |"
        )
    lines += [
        "",
        "Client CPU of the ledger path by layer (ms per post, `time.thread_time` in "
        "wrappers; indented rows are part of the whole):",
        "",
        "| layer | " + " | ".join(f"{legs} legs" for legs in legs_list) + " |",
        "|---|" + "---:|" * len(legs_list),
    ]
    layers = [
        ("whole post (build Entry, run_in_transaction, post, commit)", "all"),
        ("  build `Entry` (validation)", "entry"),
        ("  `repo.accounts` (account cache hit)", "accounts"),
        ("  `core.content_hash` (canonical JSON + SHA-256)", "content_hash"),
        ("  `repo.insert_entry` (2 ORM-enabled INSERTs via the session)", "insert_entry"),
        ("  `Session.commit`", "commit"),
        ("  `Session.close`", "close"),
        ("pool checkout + pre-ping + checkin, measured alone", "checkout"),
    ]
    for label, key in layers:
        lines.append(
            f"| {label} | "
            + " | ".join(f"{split[legs].get(key, 0.0) * ms:.2f}" for legs in legs_list)
            + " |"
        )
    rest = {
        legs: split[legs]["all"]
        - sum(
            split[legs].get(k, 0.0)
            for k in ("entry", "accounts", "content_hash", "insert_entry", "commit", "close")
        )
        for legs in legs_list
    }
    lines.append(
        "|   the rest (Session creation, checkout + pre-ping, BEGIN, retry wrapper) | "
        + " | ".join(f"{rest[legs] * ms:.2f}" for legs in legs_list)
        + " |"
    )
    lines += [
        "",
        f"cProfile of {n} 2-leg `LedgerService.post` calls, timer = thread CPU time "
        "(blocking waits excluded; the profiler inflates the totals), by cumulative time:",
        "",
        "```",
        _trim(buf.getvalue(), 42),
        "```",
        "",
    ]
    log("\n".join(lines))
    return "\n".join(lines)


def _round_trips(trace: str) -> list[str]:
    """Summarise a libpq trace: one line per client message group ending in Sync/Query."""
    out, pending = [], []
    for line in trace.splitlines():
        parts = line.split("\t")
        if len(parts) < 4 or parts[1] != "F":
            continue
        msg, rest = parts[3], (parts[4] if len(parts) > 4 else "")
        if msg == "Query":
            out.append(f"simple query `{rest.strip()[:60]}`")
        elif msg == "Bind":
            pending.append("Bind")
        elif msg == "Parse":
            pending.append("Parse")
        elif msg == "Sync":
            binds = pending.count("Bind")
            out.append(f"extended query, {binds} statement execution(s) in one pipeline sync")
            pending = []
    return out


def _trim(text_: str, max_lines: int) -> str:
    lines = [ln.rstrip() for ln in text_.splitlines() if ln.strip()]
    keep = [ln for ln in lines if not ln.lstrip().startswith(("Ordered by", "List reduced"))]
    return "\n".join(
        ln.replace(str(ROOT) + "/", "")
        .replace(sys.prefix + "/", "")
        .replace("lib/python3.11/site-packages/", "")
        for ln in keep[:max_lines]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--url",
        default=os.environ.get("FEISHUI_BENCH_URL", DEFAULT_URL),
        help="SQLAlchemy URL of a database this script may DROP and re-create",
    )
    ap.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell")
    ap.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="split each cell's seconds into this many rounds, interleaving the "
        "kinds (ledger, baselines) so that noise hits them alike",
    )
    ap.add_argument("--writers", default="1,4,8")
    ap.add_argument("--legs", default="2,5")
    ap.add_argument("--out", help="write the markdown report here (else print it)")
    ap.add_argument(
        "--processes",
        action="store_true",
        help="also run every cell with one forked process per writer",
    )
    ap.add_argument("--no-threads", action="store_true", help="no thread-mode runs")
    ap.add_argument(
        "--no-main",
        action="store_true",
        help="skip the main matrix (run only --extras and/or --profile)",
    )
    ap.add_argument(
        "--extras",
        action="store_true",
        help="also run the diagnostic variants (" + ", ".join(EXTRA_KINDS) + ")",
    )
    ap.add_argument("--extra-writers", default="1,8", help="writer counts for --extras")
    ap.add_argument("--extra-seconds", type=float, help="seconds per cell for --extras")
    ap.add_argument("--profile", action="store_true", help="append a one-writer profile")
    ap.add_argument("--profile-entries", type=int, default=1000)
    args = ap.parse_args()
    args.writers = [int(x) for x in args.writers.split(",")]
    args.legs = [int(x) for x in args.legs.split(",")]
    extra_writers = [int(x) for x in args.extra_writers.split(",")]

    def log(msg: str) -> None:
        print(msg, flush=True)

    began = datetime.now(UTC)
    info = machine(admin_url(args.url))
    log(f"machine: {info}")
    setup_database(args.url)
    engine = make_engine(args.url, pool_size=2)
    open_accounts(engine)
    sections = []
    modes = ([] if args.no_threads else ["threads"]) + (["processes"] if args.processes else [])
    problems = []
    for mode in [] if args.no_main else modes:
        rows = run_matrix(args, engine, mode, list(KINDS), args.writers, log)
        problems += [p for r in rows for p in r["problems"]]
        sections.append(f"### {mode}\n\n" + render(rows, mode))
    if args.extras:
        kinds = ["plain-bare", "ledger", *EXTRA_KINDS]
        for mode in modes:
            rows = run_matrix(
                args,
                engine,
                mode,
                kinds,
                extra_writers,
                log,
                prefix="x",
                seconds=args.extra_seconds,
            )
            problems += [p for r in rows for p in r["problems"]]
            sections.append(
                f"### Diagnostic variants, {mode}\n\n" + render_extras(rows, mode, kinds)
            )
    if args.profile:
        sections.append(profile(args, log))
    engine.dispose()
    took = (datetime.now(UTC) - began).total_seconds()
    settings = ", ".join(f"{k}={v}" for k, v in sorted(info["settings"].items()))
    header = [
        f"Run {began:%Y-%m-%d %H:%M} UTC, {took:.0f} s in all; {info['nproc']} CPUs; PostgreSQL "
        f"{info['pg']} ({settings}), same host, TCP 127.0.0.1; Python {info['python']}; "
        f"load average before the run {info['load'][0]:.2f}.",
        "",
        "Command: `" + " ".join([".venv/bin/python", "bench/ledger_post.py", *sys.argv[1:]]) + "`",
        "",
        f"e/s = committed entries per second over {args.seconds:g} s per cell and kind"
        + (f" ({args.extra_seconds:g} s for the diagnostic variants)" if args.extra_seconds else "")
        + f" (in {args.rounds} interleaved rounds), one entry per transaction, unique "
        "idempotency keys. Latency = one post as the caller sees it (build "
        "the entry, run the transaction, commit). Checks after every cell: the stored entries "
        "and postings equal the reported count, the cell's debits equal its credits, the whole "
        "trial balance nets to zero, no error reached the caller; `retries` counts "
        "transactions `run_in_transaction` retried. `load` = the host's 1-minute load average "
        "during the cell (other tenants included; 2 means both CPUs busy).",
        "",
    ]
    report = "\n".join(header) + "\n" + "\n".join(sections)
    if args.out:
        Path(args.out).write_text(report)
        log(f"wrote {args.out}")
    else:
        print(report)
    if problems:
        log(f"{len(problems)} PROBLEMS: {problems[:5]}")
        sys.exit(1)


if __name__ == "__main__":
    main()
