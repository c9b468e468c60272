#!/usr/bin/env python
"""Capture over HTTP: genuine signed Alipay notifies fired at ``POST /v1/gateways/alipay/notify``
under uvicorn, beside a bare FastAPI endpoint doing one INSERT, measured in the same run.

Setup (not timed): ``--notices`` service-fee notices of one split item (SF-PASSPORT, 120.00,
50/50 central/province: a capture posts a 3-leg entry) through ``notices.service.create_batch``;
one payment attempt each through ``clearing.payments.service.start_attempt`` with the real Alipay
adapter (routing alipay/wallet, the merchant RSA2 signature); for each attempt the matching paid
simulator order and its notify built and signed by the simulator
(``AlipaySimulator.build_notify``: RSA2 with the gateway key), all before timing.

Measured (``--workers`` uvicorn processes (default 2), one worker each on its own port, the
load generator's connections spread evenly over them; uvloop + httptools; load generator
bench/_load.py in its own process):

1. maximum throughput, closed loop, ``--concurrency`` connections, ``--rounds`` rounds of
   ``--seconds`` per kind, interleaved: the notifies (each verified, captured: ledger entry with
   split, attempt succeeded, notice paid, receipt signed with Ed25519, event recorded) and the
   bare ``POST /bare`` (one INSERT);
2. open loop at half of each kind's measured maximum, ``--open-seconds``: latency from each
   request's scheduled send time.

Checks afterwards: every notify answered ``success``; exactly as many captured attempts,
capture journal entries (``ref_type = payment_attempt``), paid notices, receipts, ``notice.paid``
events and ``captured`` gateway notifications as notifies answered; nothing else logged (no
duplicate, no already_captured, no refund); the trial balance nets to zero.

``--profile`` adds an in-process profile of single captures (no HTTP): cost per step, statements
per capture, cProfile.

    .venv/bin/python bench/capture.py --profile --out bench/results/capture.md

See bench/README.md; results and interpretation in docs/performance.md.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
sys.path[:0] = [str(ROOT)]
sys.path.append(str(ROOT / "bench"))

import _httpbench as hb  # noqa: E402
import httpx  # noqa: E402
import psycopg  # noqa: E402
from _apps import BARE_DDL  # noqa: E402
from sqlalchemy import event  # noqa: E402

from clearing.config import Settings  # noqa: E402
from clearing.db import transaction  # noqa: E402
from clearing.ledger.service import LedgerService  # noqa: E402
from clearing.payments.nonces import DbNonceStore  # noqa: E402
from clearing.payments.service import PaymentContext, start_attempt  # noqa: E402
from clearing.routing import GatewayRule, Router  # noqa: E402
from clearing.runtime import build_runtime  # noqa: E402
from gateways.registry import build_gateways  # noqa: E402
from gateways.simulators.alipay import AlipaySimulator  # noqa: E402
from gateways.simulators.common import PAID, Order  # noqa: E402
from notices import catalogue  # noqa: E402
from notices.departments import authenticate, create_department  # noqa: E402
from notices.privacy import PayerVault  # noqa: E402
from notices.receipts import ESeal  # noqa: E402
from notices.schemas import NoticeCreate  # noqa: E402
from notices.service import create_batch, today_in_shanghai  # noqa: E402

TARGET_RATIO = 0.40
TARGET_P99 = 100.0  # ms, at half load
BASE = "http://127.0.0.1:8000"


def notice_request(i: int) -> NoticeCreate:
    return NoticeCreate.model_validate(
        {
            "kind": "service_fee",
            "payer": {"name": "李小四", "id_number": "11010519491231002X"},
            "items": [{"item_code": "SF-PASSPORT"}],
            "due_date": (today_in_shanghai() + timedelta(days=10)).isoformat(),
            "reference": f"PP-{i:07d}",
            "description": "护照",
        }
    )


class Setup:
    """Database, notices, attempts and signed notifies, built before any timing."""

    def __init__(self, url: str, var_dir: Path, n: int, log) -> None:  # type: ignore[no-untyped-def]
        hb.setup_database(url, BARE_DDL)
        self.settings = Settings(
            database_url=url, var_dir=var_dir, env="development", public_base_url=BASE
        )
        self.runtime = build_runtime(self.settings)
        from api.app import create_app

        create_app(self.runtime, simulators=False)  # dev secrets and keys, generated once
        sessions = self.runtime.sessions
        with transaction(sessions) as s:
            catalogue.seed(s, catalogue.load_seed())
            key = create_department(s, "成都市公安局出入境管理支队", "510100", "agency").full
        vault = PayerVault.from_settings(self.settings)
        t = time.monotonic()
        codes: list[str] = []
        for start in range(0, n, 5000):
            with transaction(sessions) as s:
                who = authenticate(s, key)
                out = create_batch(
                    s, who, [notice_request(i) for i in range(start, min(n, start + 5000))], vault
                )
                codes += [o.payment_code for o in out]
        assert len(codes) == n
        log(f"setup: {n} notices in {time.monotonic() - t:.1f} s")
        self.http = httpx.Client()
        gateways = build_gateways(self.settings, http=self.http, nonce_store=DbNonceStore(sessions))
        self.ctx = PaymentContext(
            gateways,
            Router([GatewayRule("alipay", "wallet")]),
            BASE,
            ESeal.from_settings(self.settings),
        )
        self.adapter = gateways["alipay"]
        t = time.monotonic()
        started = []
        for start in range(0, n, 500):
            with transaction(sessions) as s:
                for code in codes[start : start + 500]:
                    started.append(start_attempt(s, self.ctx, code, "wallet"))
        log(
            f"setup: {n} attempts (start_attempt, RSA2-signed redirects) in "
            f"{time.monotonic() - t:.1f} s"
        )
        # the gateway's side: each payer pays; the simulator signs the notify of each order
        self.sim = AlipaySimulator(self.settings)
        t = time.monotonic()
        now = datetime.now(UTC)
        self.notifies: list[tuple[str, dict[str, str], bytes]] = []
        for st in started:
            fields = st.redirect.fields
            biz = json.loads(fields["biz_content"])
            order = Order(
                order_id=st.order_id,
                amount_fen=12000,
                subject=biz["subject"],
                notify_url=fields["notify_url"],
                return_url=fields["return_url"],
                created_at=now,
                status=PAID,
                trade_no=self.sim.new_trade_no(now),
                paid_at=now,
            )
            self.notifies.append(self.sim.build_notify(order))
        log(f"setup: {n} signed notifies in {time.monotonic() - t:.1f} s")


def counts(url: str) -> dict[str, int]:
    queries = {
        "attempts succeeded": "SELECT count(*) FROM payment_attempts WHERE state = 'succeeded'",
        "attempts duplicate": "SELECT count(*) FROM payment_attempts WHERE state = 'duplicate'",
        "capture entries": "SELECT count(*) FROM journal_entries "
        "WHERE ref_type = 'payment_attempt'",
        "distinct entry per attempt": "SELECT count(DISTINCT journal_entry_id) "
        "FROM payment_attempts WHERE journal_entry_id IS NOT NULL",
        "postings": "SELECT count(*) FROM postings p JOIN journal_entries e "
        "ON e.id = p.entry_id WHERE e.ref_type = 'payment_attempt'",
        "notices paid": "SELECT count(*) FROM notices WHERE status = 'paid'",
        "receipts": "SELECT count(*) FROM receipts",
        "notice.paid events": "SELECT count(*) FROM department_events WHERE type = 'notice.paid'",
        "notifications captured": "SELECT count(*) FROM gateway_notifications "
        "WHERE outcome = 'captured'",
        "notifications other": "SELECT count(*) FROM gateway_notifications "
        "WHERE outcome <> 'captured'",
        "refunds": "SELECT count(*) FROM refunds",
    }
    with psycopg.connect(hb.psycopg_dsn(url)) as c:
        return {k: c.execute(q).fetchone()[0] for k, q in queries.items()}


def check(url: str, runtime, captured: int) -> tuple[dict[str, int], list[str]]:  # type: ignore[no-untyped-def]
    got = counts(url)
    problems = []
    for k in (
        "attempts succeeded",
        "capture entries",
        "distinct entry per attempt",
        "notices paid",
        "receipts",
        "notice.paid events",
        "notifications captured",
    ):
        if got[k] != captured:
            problems.append(f"{k}: {got[k]}, expected {captured}")
    if got["postings"] != 3 * captured:
        problems.append(f"postings: {got['postings']}, expected {3 * captured}")
    for k in ("attempts duplicate", "notifications other", "refunds"):
        if got[k]:
            problems.append(f"{k}: {got[k]}, expected 0")
    with transaction(runtime.sessions) as s:
        ledger = LedgerService(s)
        balanced = ledger.trial_balance().balanced and not ledger._verify_totals()
    got["trial balance balanced"] = int(balanced)
    if not balanced:
        problems.append("the trial balance does not net to zero")
    return got, problems


# -- profile --------------------------------------------------------------------------------
def profile(setup: Setup, notifies: list[tuple[str, dict[str, str], bytes]]) -> str:
    """Single captures in this process, no HTTP, no concurrency: where one capture's time goes."""
    import clearing.payments.capture as capture_mod
    import clearing.payments.repository as repo_mod
    import clearing.payments.settle_pg as settle_mod
    import notices.receipts as receipts_mod
    from clearing.payments.capture import capture
    from gateways.protocol import RawRequest

    sessions, eseal, adapter = setup.runtime.sessions, setup.ctx.eseal, setup.adapter
    raws = [
        RawRequest("POST", {k.lower(): v for k, v in h.items()}, body, "")
        for _u, h, body in notifies
    ]
    spent: dict[str, float] = {}

    def timed(name: str, fn):  # type: ignore[no-untyped-def]
        def wrapper(*a, **kw):  # type: ignore[no-untyped-def]
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                spent[name] = spent.get(name, 0.0) + time.perf_counter() - t

        return wrapper

    def one(raw: RawRequest) -> None:  # what api/routers/callbacks._handle does
        result = timed("parse_notify (RSA2 verify, decode)", adapter.parse_notify)(raw)
        outcome = timed("capture (read, build, one write)", capture)(
            sessions, result, source="notify", eseal=eseal
        )
        assert outcome.outcome == "captured", outcome

    k = len(raws) // 3
    for raw in raws[:10]:  # warm-up
        one(raw)
    # statements of one capture
    stmts: list[str] = []

    def before(conn, cur, statement, params, ctx, many):  # type: ignore[no-untyped-def]
        stmts.append(" ".join(statement.split())[:110])

    event.listen(setup.runtime.engine, "before_cursor_execute", before)
    one(raws[10])
    event.remove(setup.runtime.engine, "before_cursor_execute", before)

    # cost split (wall clock, one at a time)
    patches = [
        (repo_mod, "read_for_capture"),
        (capture_mod, "signed_receipt"),
        (receipts_mod.ESeal, "sign"),
        (settle_mod, "settle"),
    ]
    saved = [(obj, name, getattr(obj, name)) for obj, name in patches]
    orig_prepare = LedgerService.prepare_committed
    LedgerService.prepare_committed = timed("LedgerService.prepare_committed", orig_prepare)  # type: ignore[method-assign]
    for obj, name, fn in saved:
        setattr(obj, name, timed(name, fn))
    spent.clear()
    t = time.perf_counter()
    c0 = time.thread_time()
    batch = raws[11 : 11 + k]
    for raw in batch:
        one(raw)
    wall = (time.perf_counter() - t) / len(batch) * 1000
    cpu = (time.thread_time() - c0) / len(batch) * 1000
    split = {name: v / len(batch) * 1000 for name, v in spent.items()}
    LedgerService.prepare_committed = orig_prepare  # type: ignore[method-assign]
    for obj, name, fn in saved:
        setattr(obj, name, fn)

    # RSA verify and Ed25519 sign alone
    from gateways.alipay import wire
    from gateways.formdata import decode_form

    params = decode_form(raws[0].body)
    t = time.perf_counter()
    for _ in range(200):
        wire.verify_params(params, adapter._gateway_key)
    rsa = (time.perf_counter() - t) / 200 * 1000
    t = time.perf_counter()
    for _ in range(2000):
        eseal.sign(b"x" * 600)
    ed = (time.perf_counter() - t) / 2000 * 1000

    # cProfile (CPU time)
    prof = cProfile.Profile(time.thread_time)
    prof.enable()
    for raw in raws[11 + k : 11 + 2 * k]:
        one(raw)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(45)
    text_ = "\n".join(
        ln.rstrip()
        .replace(str(ROOT) + "/", "")
        .replace(sys.prefix + "/lib/python3.11/site-packages/", "")
        for ln in buf.getvalue().splitlines()
        if ln.strip() and not ln.lstrip().startswith(("Ordered by", "List reduced"))
    )

    lines = [
        "### Profile: single captures in one process, no HTTP, no concurrency",
        "",
        f"{len(batch)} captures one after the other (what `api/routers/callbacks._handle` "
        f"does: `adapter.parse_notify`, then `capture`, which is optimistic here): "
        f"**{wall:.2f} ms wall, {cpu:.2f} ms CPU of this thread per capture**. "
        f"RSA2 (2048-bit, SHA-256) verify alone: {rsa:.3f} ms; Ed25519 sign alone: "
        f"{ed:.3f} ms.",
        "",
        "| step (wall ms per capture; nested rows are part of the one above) | ms |",
        "|---|---:|",
    ]
    order = [
        "parse_notify (RSA2 verify, decode)",
        "capture (read, build, one write)",
        "read_for_capture",
        "LedgerService.prepare_committed",
        "signed_receipt",
        "sign",
        "settle",
    ]
    labels = {
        "read_for_capture": "read_for_capture (attempt and notice, no lock, one statement)",
        "sign": "Ed25519 `ESeal.sign` (inside signed_receipt)",
        "settle": "settle_pg.settle (guard and every write, one statement, autocommit)",
    }
    for name in order:
        if name in split:
            indent = "" if name.startswith(("parse", "capture")) else "  "
            lines.append(f"| {indent}{labels.get(name, name)} | {split[name]:.2f} |")
    lines += [
        "",
        f"Statements of one capture ({len(stmts)}, in order; every one is a round "
        "trip to PostgreSQL):",
        "",
    ]
    lines += [f"{i}. `{s}`" for i, s in enumerate(stmts, 1)]
    lines += [
        "",
        f"cProfile of {k} captures (thread CPU time; the profiler inflates totals):",
        "",
        "```",
        *text_.splitlines()[:50],
        "```",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--url",
        default=os.environ.get("FEISHUI_BENCH_API_URL", hb.DEFAULT_URL),
        help="SQLAlchemy URL of a database this script may DROP and re-create",
    )
    ap.add_argument(
        "--notices",
        type=int,
        default=15000,
        help="notices / attempts / notifies prepared (enough for every phase)",
    )
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=6.0, help="closed loop: per round and kind")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--open-seconds", type=float, default=10.0)
    ap.add_argument("--profile", action="store_true", help="append an in-process profile")
    ap.add_argument("--profile-captures", type=int, default=300)
    ap.add_argument("--out", help="write the markdown report here (else print it)")
    args = ap.parse_args()

    def log(msg: str) -> None:
        print(f"[{datetime.now(UTC):%H:%M:%S}] {msg}", flush=True)

    began = datetime.now(UTC)
    info = hb.machine(hb.admin_url(args.url))
    log(f"machine: load {info['load']}")
    var_dir = Path(tempfile.mkdtemp(prefix="feishui_bench_capture_"))
    n_prof = args.profile_captures * 3 + 11 if args.profile else 0
    setup = Setup(args.url, var_dir, args.notices + n_prof, log)
    prof_notifies = setup.notifies[args.notices :]
    requests = [
        hb.http_request("POST", "/v1/gateways/alipay/notify", body, content_type=h["Content-Type"])
        for _u, h, body in setup.notifies[: args.notices]
    ]
    cursor = 0

    def take(count: int) -> list[bytes]:
        nonlocal cursor
        chunk = requests[cursor : cursor + count]
        cursor += len(chunk)
        return chunk

    env = hb.bench_env(args.url, var_dir, BASE)
    bare_body = json.dumps({"order_id": "x" * 28, "amount": "120.00", "status": "paid"}).encode()
    bare_req = [hb.http_request("POST", "/bare", bare_body)]
    problems: list[str] = []
    answered = 0
    parts: dict[str, list[dict]] = {"capture": [], "bare": []}
    opened: dict[str, dict] = {}
    with hb.servers(
        [("feishui_app", args.workers, "/healthz"), ("bare_app", args.workers, "/ping")],
        env,
        var_dir / "servers.log",
    ) as (api, bare):

        def fire(kind: str, mode: str, seconds: float, rate: float = 0.0) -> dict:
            nonlocal answered, cursor
            if kind == "capture":
                budget = len(requests) - cursor
                res = hb.load(
                    {
                        "host": "127.0.0.1",
                        "port": api.port,
                        "mode": mode,
                        "concurrency": args.concurrency if mode == "closed" else 64,
                        "duration": seconds,
                        "rate": rate,
                        "requests": take(budget),
                        "expect_status": 200,
                        "expect_body": b"success",
                    },
                    api,
                )
                # give back what was not sent
                cursor -= budget - res["sent"]
                answered += res["answered"]
                if res["sent"] == budget:
                    problems.append("capture: ran out of prepared notifies (raise --notices)")
            else:
                res = hb.load(
                    {
                        "host": "127.0.0.1",
                        "port": bare.port,
                        "mode": mode,
                        "concurrency": args.concurrency if mode == "closed" else 64,
                        "duration": seconds,
                        "rate": rate,
                        "cycle": True,
                        "requests": bare_req,
                        "expect_status": 201,
                    },
                    bare,
                )
            if res["errors"]:
                problems.append(
                    f"{kind} {mode}: {res['errors']} errors, e.g. {res['error_samples'][:2]}"
                )
            log(
                f"{kind} {mode}: {res['rps']:.0f} req/s p50 {res['p50']:.1f} p99 "
                f"{res['p99']:.1f} ms, server CPU "
                f"{1000 * res['server_cpu'] / max(1, res['answered']):.2f} ms/req"
            )
            return res

        fire("capture", "closed", 1.5)  # warm-up (counted in the checks, not in the figures)
        fire("bare", "closed", 1.5)
        for r in range(args.rounds):
            for kind in ["capture", "bare"] if r % 2 == 0 else ["bare", "capture"]:
                parts[kind].append(fire(kind, "closed", args.seconds))
        closed = {k: hb.merge(v) for k, v in parts.items()}
        for kind in ("capture", "bare"):
            rate = closed[kind]["rps"] / 2
            opened[kind] = hb.merge([fire(kind, "open", args.open_seconds, rate)])
            opened[kind]["rate"] = rate
            opened[kind]["sent_rps"] = opened[kind]["answered"] / args.open_seconds

    got, found = check(args.url, setup.runtime, answered)
    problems += found
    sections = []
    if args.profile:
        log("profiling single captures in-process")
        sections.append(profile(setup, prof_notifies))
    setup.runtime.engine.dispose()
    setup.http.close()
    took = (datetime.now(UTC) - began).total_seconds()

    c, b = closed["capture"], closed["bare"]
    ratio = c["rps"] / b["rps"]
    half_p99 = opened["capture"]["p99"]
    lines = hb.header(
        "Capture (bench/capture.py)", began, took, info, sys.argv[1:], "bench/capture.py"
    )
    lines += [
        f"Servers: {args.workers} processes of `uvicorn --factory --loop uvloop --http "
        "httptools` (one worker each, each on its own port; connection i goes to process "
        "i mod N, the even spread of a load balancer) on `bench/_apps.py:feishui_app` and "
        "`bare_app`, both running (the idle one waits). Each notify is a genuine Alipay "
        "notify signed by the simulator (RSA2), for an attempt made by `start_attempt`; "
        "the API verifies it, captures (3-leg entry with the split, attempt succeeded, "
        "notice paid, receipt signed with Ed25519, `notice.paid` event, gateway "
        "notification logged) and answers `success`. Load generator: bench/_load.py in its "
        "own process. `server CPU` = CPU of the uvicorn processes per answered request "
        "(PostgreSQL's not "
        "included).",
        "",
        f"### Maximum throughput: closed loop, {args.concurrency} connections, "
        f"{args.rounds} x {args.seconds:g} s per kind, interleaved",
        "",
        "| kind | req/s | p50 ms | p90 ms | p99 ms | max ms | server CPU ms/req | "
        "errors | rounds req/s | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|",
    ]
    for kind, label in (
        ("capture", "Alipay notify -> capture"),
        ("bare", "bare `POST /bare` (one INSERT)"),
    ):
        m = closed[kind]
        lines.append(
            f"| {label} | {m['rps']:,.0f} | {m['p50']:.1f} | {m['p90']:.1f} | "
            f"{m['p99']:.1f} | {m['max']:.0f} | {m['cpu_ms']:.2f} | {m['errors']} | "
            f"{m['rounds']} | {m['load1']:.1f} |"
        )
    lines += [
        "",
        f"### Half load: open loop at 50% of each kind's maximum, "
        f"{args.open_seconds:g} s (latency from the scheduled send time)",
        "",
        "| kind | offered req/s | answered req/s | p50 ms | p90 ms | p99 ms | max ms | "
        "late starts | load |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, label in (
        ("capture", "Alipay notify -> capture"),
        ("bare", "bare `POST /bare` (one INSERT)"),
    ):
        m = opened[kind]
        lines.append(
            f"| {label} | {m['rate']:,.0f} | {m['sent_rps']:,.0f} | {m['p50']:.1f} | "
            f"{m['p90']:.1f} | {m['p99']:.1f} | {m['max']:.0f} | {m['late']} | "
            f"{m['load1']:.1f} |"
        )
    lines += [
        "",
        "| target | measured | |",
        "|---|---:|---|",
        f"| capture >= 40% of the bare endpoint's throughput | {ratio:.2f} | "
        f"{'met' if ratio >= TARGET_RATIO else 'MISSED'} |",
        f"| capture p99 < 100 ms at half load | {half_p99:.1f} ms | "
        f"{'met' if half_p99 < TARGET_P99 else 'MISSED'} |",
        "",
        f"Checks after the run ({answered} notifies answered `success`, warm-up "
        "included): "
        + ", ".join(f"{k} {v}" for k, v in got.items())
        + ". "
        + ("**All as expected.**" if not problems else "**PROBLEMS: " + "; ".join(problems) + "**"),
        "",
    ]
    report = "\n".join(lines + sections)
    if args.out:
        Path(args.out).write_text(report)
        log(f"wrote {args.out}")
    print(report)
    if problems:
        sys.exit(1)


if __name__ == "__main__":
    main()
