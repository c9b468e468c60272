#!/usr/bin/env python
"""Scale-out: N API processes and 2 RQ workers on one PostgreSQL database and one Redis.

For each ``--api`` count (default: 1, then 2), on a fresh database ``feishui_bench_scale``
(dropped and created, migrated) and Redis db 14 (flushed):

- start the API processes (``feishui serve --port <p>``, one uvicorn process each, on
  consecutive ports; every process mounts the gateway simulators, whose order book is one SQLite
  file under the shared ``FEISHUI_VAR_DIR``) and 2 RQ workers (``feishui worker --simple``);
- drive ``--payments`` payments with ``--concurrency`` threads, requests round-robin over the
  API processes: create a notice (department API), open it on the portal, check out to the Alipay
  simulator, pay there (the simulator delivers the notify over real HTTP), then ask the simulator
  to re-send the notify twice (``/_sim/renotify/{order_id}``): three notifies per payment;
- wait for every paid simulator order to be captured, then run the night's reconciliation as RQ
  jobs on the ``reconciliation`` queue, executed by the workers (the three gateways' bills in
  parallel, then the bank statement), then ``feishui ledger seal`` and ``feishui ledger verify``.

Checks (a failure exits 1): one capture journal entry per paid notice and per paid simulator
order (none duplicated, none lost), no ``duplicate`` attempt, no refund, ledger verify ok, every
reconciliation job finished, the Alipay bill's reconciliation run all ``matched``.
``tests/e2e/test_scaleout.py`` runs it in CI (2 API processes, 40 payments).

Throughput is payments (each: 1 notice + portal + checkout + pay + 3 notifies) per second of
the driving phase. The machine is shared and small: read the ratio between the rows.

    .venv/bin/python bench/scaleout.py --payments 200 --concurrency 8
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from itertools import count
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from notices.service import today_in_shanghai  # noqa: E402


@dataclass(frozen=True)
class Cluster:
    """Where the processes run: the server, database and Redis db they share, and their ports.

    The defaults are the benchmark's; the CI test (``tests/e2e/test_scaleout.py``) passes its own.
    """

    server: str = "postgresql+psycopg://postgres@127.0.0.1:5432"
    database: str = "feishui_bench_scale"
    redis: str = "redis://127.0.0.1:6379/14"
    base_port: int = 8710
    feishui: str = str(Path(sys.executable).parent / "feishui")

    @property
    def url(self) -> str:
        return f"{self.server}/{self.database}"


def env(cluster: Cluster, var_dir: Path) -> dict[str, str]:
    e = dict(os.environ)
    e.update(
        {
            "FEISHUI_DATABASE_URL": cluster.url,
            "FEISHUI_REDIS_URL": cluster.redis,
            "FEISHUI_VAR_DIR": str(var_dir),
            "FEISHUI_PUBLIC_BASE_URL": f"http://127.0.0.1:{cluster.base_port}",
            "FEISHUI_API_RATE": "",
            "FEISHUI_LOG_LEVEL": "WARNING",
        }
    )
    e.pop("FEISHUI_ENV", None)
    return e


def fresh_database(cluster: Cluster) -> None:
    admin = create_engine(f"{cluster.server}/postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{cluster.database}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{cluster.database}"'))
    admin.dispose()
    from clearing import migrate

    migrate.upgrade(cluster.url)
    from redis import Redis

    Redis.from_url(cluster.redis).flushdb()


def seed(e: dict[str, str]) -> str:
    """Catalogue and one department; returns its API key."""
    code = (
        "from clearing.db import transaction\n"
        "from clearing.runtime import get_runtime\n"
        "from notices import catalogue\n"
        "from notices.departments import SCOPES, create_department\n"
        "with transaction(get_runtime().sessions) as s:\n"
        "    catalogue.seed(s, catalogue.load_seed())\n"
        "    print(create_department(s, '成都市出入境管理局', '510100', 'agency', SCOPES).full)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], env=e, cwd=ROOT, check=True, capture_output=True, text=True
    )
    return out.stdout.strip().splitlines()[-1]


def start(cmd: list[str], e: dict[str, str], log: Path) -> subprocess.Popen:
    with log.open("w") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen(
            cmd, env=e, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )


def wait_up(port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"API on port {port} did not come up")


class Payer:
    """One citizen's whole payment, requests round-robin over the API processes."""

    def __init__(self, ports: list[int], key: str) -> None:
        self.ports, self.key, self.rr, self.ips = ports, key, count(), count(1)

    def base(self) -> str:
        return f"http://127.0.0.1:{self.ports[next(self.rr) % len(self.ports)]}"

    def pay(self, n: int) -> str:
        ip = next(self.ips)
        headers = {"X-Forwarded-For": f"10.{ip // 65536 % 256}.{ip // 256 % 256}.{ip % 256}"}
        with httpx.Client(timeout=30, headers=headers) as c:
            notice = c.post(
                f"{self.base()}/v1/notices",
                headers={"Authorization": f"Bearer {self.key}"},
                json={
                    "kind": "service_fee",
                    "payer": {"name": "王五"},
                    "items": [{"item_code": "SF-PASSPORT"}],
                    "reference": f"SCALE-{n}",
                    "due_date": (today_in_shanghai() + timedelta(days=30)).isoformat(),
                    "description": "普通护照签发",
                },
            )
            assert notice.status_code == 201, notice.text
            code = notice.json()["payment_code"]
            base = self.base()  # one process for the portal steps (its CSRF cookie)
            page = c.get(f"{base}/pay/{code}")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
            go = c.post(
                f"{base}/pay/{code}/checkout",
                follow_redirects=False,
                data={"channel": "wallet", "csrf_token": token},
            )
            if go.status_code == 303:
                checkout = c.get(go.headers["location"])
            else:
                action = html.unescape(re.search(r'action="([^"]+)"', go.text).group(1))
                fields = {
                    k: html.unescape(v)
                    for k, v in re.findall(r'name="([^"]+)" value="([^"]*)"', go.text)
                }
                checkout = c.post(action, data=fields)
            assert checkout.status_code == 200, checkout.text[:300]
            order_id = re.search(r"/checkout/([A-Za-z0-9_-]+)", checkout.text).group(1)
            paid = c.post(
                f"{self.base()}/sim/alipay/checkout/{order_id}",
                data={"action": "pay"},
                follow_redirects=False,
            )
            assert paid.status_code in (200, 303), paid.text[:300]
            for _ in range(2):  # the gateway says it twice more
                again = c.post(f"{self.base()}/sim/alipay/_sim/renotify/{order_id}")
                assert again.status_code == 202, again.text
            return order_id


def counts(engine) -> dict[str, int]:  # type: ignore[no-untyped-def]
    q = {
        "paid_notices": "SELECT count(*) FROM notices WHERE status = 'paid'",
        "capture_entries": "SELECT count(*) FROM journal_entries WHERE idempotency_key LIKE "
        "'capture:%'",
        "distinct_capture_keys": "SELECT count(DISTINCT idempotency_key) FROM journal_entries "
        "WHERE idempotency_key LIKE 'capture:%'",
        "succeeded_attempts": "SELECT count(*) FROM payment_attempts WHERE state = 'succeeded'",
        "duplicate_attempts": "SELECT count(*) FROM payment_attempts WHERE state = 'duplicate'",
        "refunds": "SELECT count(*) FROM refunds",
        "notifies_captured": "SELECT count(*) FROM gateway_notifications "
        "WHERE outcome = 'captured'",
        "notifies_already": "SELECT count(*) FROM gateway_notifications "
        "WHERE outcome = 'already_captured'",
    }
    with engine.connect() as conn:
        return {k: conn.execute(text(sql)).scalar() for k, sql in q.items()}


def run(
    apis: int, payments: int, concurrency: int, cluster: Cluster = Cluster()
) -> tuple[dict, list[str]]:
    var = Path(tempfile.mkdtemp(prefix="feishui-scale-"))
    e = env(cluster, var)
    fresh_database(cluster)
    key = seed(e)
    ports = [cluster.base_port + i for i in range(apis)]
    feishui = cluster.feishui
    procs = [
        start([feishui, "serve", "--port", str(p), "--no-migrate"], e, var / f"api-{p}.log")
        for p in ports
    ]
    procs += [start([feishui, "worker", "--simple"], e, var / f"worker-{i}.log") for i in range(2)]
    problems: list[str] = []
    try:
        for p in ports:
            wait_up(p)
        payer = Payer(ports, key)
        payer.pay(0)  # warm-up (not timed): first requests, imports, caches
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            orders = [o for o in pool.map(payer.pay, range(1, payments + 1))]
        elapsed = time.perf_counter() - started
        orders.append("warm-up")
        engine = create_engine(cluster.url)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # notifies are in flight (background, retried)
            c = counts(engine)
            if c["paid_notices"] >= payments + 1 and c["notifies_captured"] + c[
                "notifies_already"
            ] >= 3 * (payments + 1):
                break
            time.sleep(0.5)
        day = today_in_shanghai().isoformat()
        rec = night_through_workers(cluster, day)
        subprocess.run([feishui, "ledger", "seal"], env=e, cwd=ROOT, capture_output=True)
        verify = subprocess.run(
            [feishui, "ledger", "verify"], env=e, cwd=ROOT, capture_output=True, text=True
        )
        c = counts(engine)
        with engine.connect() as conn:
            sim_paid = _sim_paid(var)
            items = dict(
                conn.execute(
                    text(
                        "SELECT i.outcome, count(*) FROM reconciliation_items i "
                        "JOIN reconciliation_runs r ON r.id = i.run_id "
                        "WHERE r.source = 'alipay' GROUP BY i.outcome"
                    )
                ).all()
            )
        engine.dispose()
        total = payments + 1
        if not (
            c["paid_notices"]
            == c["capture_entries"]
            == c["distinct_capture_keys"]
            == c["succeeded_attempts"]
            == total
            == sim_paid
        ):
            problems.append(f"captures do not match payments: {c}, simulator paid {sim_paid}")
        if c["duplicate_attempts"] or c["refunds"]:
            problems.append(f"a duplicate capture: {c}")
        if verify.returncode != 0:
            problems.append(f"ledger verify failed: {verify.stdout[-500:]}{verify.stderr[-500:]}")
        if set(items) != {"matched"} or items.get("matched") != total:
            problems.append(f"reconciliation not clean: {items} (jobs: {rec})")
        if any(job["status"] != "finished" for job in rec.values()):
            problems.append(f"a reconciliation job did not finish: {rec}")
        return {
            "apis": apis,
            "payments": payments,
            "seconds": elapsed,
            "per_second": payments / elapsed,
            "counts": c,
            "reconciliation": items,
            "jobs": rec,
            "verify": verify.stdout.strip().splitlines()[-1:] if verify.stdout else [],
        }, problems
    finally:
        for proc in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        if not problems:
            shutil.rmtree(var, ignore_errors=True)
        else:
            print(f"  logs kept in {var}", file=sys.stderr)


def night_through_workers(cluster: Cluster, day: str, timeout: float = 180) -> dict[str, dict]:
    """The night's reconciliation as RQ jobs on the ``reconciliation`` queue, run by the
    workers: each gateway's bill (in parallel), then the bank statement once they are done."""
    from redis import Redis
    from rq import Queue

    queue = Queue("reconciliation", connection=Redis.from_url(cluster.redis))
    bills = {
        gw: queue.enqueue("reconciliation.tasks.reconcile_day", gw, day, job_timeout=timeout)
        for gw in ("alipay", "unionpay", "wechatpay")
    }
    _wait(bills.values(), timeout)
    statement = queue.enqueue(
        "reconciliation.tasks.reconcile_statement_day", day, job_timeout=timeout
    )
    _wait([statement], timeout)
    return {
        name: {"status": _status(job), "run": job.result}
        for name, job in {**bills, "statement": statement}.items()
    }


def _wait(jobs, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(_status(j) in ("finished", "failed") for j in jobs):
            return
        time.sleep(0.3)


def _status(job) -> str:  # type: ignore[no-untyped-def]
    status = job.get_status(refresh=True)
    return getattr(status, "value", status)


def _sim_paid(var: Path) -> int:
    """Orders the Alipay simulator (the gateway) holds as paid."""
    import sqlite3

    from gateways.simulators.common import PAID

    conn = sqlite3.connect(var / "sim" / "alipay.db")
    try:
        return conn.execute("SELECT count(*) FROM orders WHERE status = ?", (PAID,)).fetchone()[0]
    finally:
        conn.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--payments", type=int, default=200)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--apis", default="1,2", help="API process counts to measure, in order")
    args = ap.parse_args()
    failed = False
    rows = []
    for apis in (int(a) for a in args.apis.split(",")):
        result, problems = run(apis, args.payments, args.concurrency)
        rows.append(result)
        print(
            f"{apis} API process(es), 2 workers: {result['payments']} payments in "
            f"{result['seconds']:.1f} s = {result['per_second']:.1f} payments/s; "
            f"{result['counts']}; reconciliation {result['reconciliation']}; "
            f"verify {result['verify']}; night jobs {result['jobs']}",
            flush=True,
        )
        for p in problems:
            failed = True
            print(f"  CHECK FAILED: {p}", flush=True)
    if len(rows) > 1:
        print(
            f"ratio {rows[-1]['apis']}/{rows[0]['apis']} API processes: "
            f"{rows[-1]['per_second'] / rows[0]['per_second']:.2f}x"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
