"""The scale-out proof (issue 6), in CI: ``bench/scaleout.py`` with 2 API processes (uvicorn,
one process each) and 2 RQ workers on one PostgreSQL database and one Redis.

Concurrent payments, each notified three times by the Alipay simulator over real HTTP, land on
whichever API process; the night's reconciliation runs as RQ jobs on the workers. The run's own
checks must all pass: one capture per paid order (nothing duplicated, nothing lost), no refund,
``ledger verify`` ok, every reconciliation job finished and the bill all ``matched``. The
throughput rows in docs/performance.md come from the same script with more payments.
"""

from __future__ import annotations

import importlib.util
import socket
import sys
from pathlib import Path

import pytest
from redis import Redis
from sqlalchemy import make_url

from tests.conftest import PG_URL, REDIS_URL, unavailable

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "scaleout.py"


def load_scaleout():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("bench_scaleout", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def free_port_pair() -> int:
    """A port p with p and p + 1 both free (the API processes take consecutive ports)."""
    for _ in range(50):
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = a.getsockname()[1]
            with socket.socket() as b:
                try:
                    b.bind(("127.0.0.1", port + 1))
                except OSError:
                    continue
                return port
    raise RuntimeError("no two consecutive free ports")


def test_two_api_processes_and_two_workers_lose_and_duplicate_nothing():
    try:
        Redis.from_url(REDIS_URL).ping()
    except Exception as exc:
        unavailable("Redis", exc)
    scaleout = load_scaleout()
    url = make_url(PG_URL)
    cluster = scaleout.Cluster(
        server=url.set(database="").render_as_string(hide_password=False).rstrip("/"),
        database=f"{url.database}_scaleout",
        redis=REDIS_URL,
        base_port=free_port_pair(),
    )
    result, problems = scaleout.run(apis=2, payments=40, concurrency=6, cluster=cluster)
    assert problems == []
    counts = result["counts"]
    assert counts["paid_notices"] == counts["capture_entries"] == 41  # 40 + the warm-up
    assert counts["notifies_captured"] + counts["notifies_already"] == 3 * 41
    assert {job["status"] for job in result["jobs"].values()} == {"finished"}
