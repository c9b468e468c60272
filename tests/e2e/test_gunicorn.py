"""Production serving: gunicorn with two uvicorn workers answers /healthz, /readyz and
/metrics (multi-process metrics), and stops gracefully on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from clearing import migrate

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_up(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"gunicorn exited with {proc.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise AssertionError("gunicorn did not answer in time")


def test_two_uvicorn_workers_under_gunicorn(tmp_path):
    url = f"sqlite:///{tmp_path / 'feishui.db'}"
    migrate.upgrade(url)
    prom = tmp_path / "prometheus"
    prom.mkdir()
    port = free_port()
    env = {
        **os.environ,
        "FEISHUI_DATABASE_URL": url,
        "FEISHUI_VAR_DIR": str(tmp_path),
        "FEISHUI_ENV": "test",
        "PROMETHEUS_MULTIPROC_DIR": str(prom),
    }
    env.pop("FEISHUI_REDIS_URL", None)
    code = (
        "import sys; from api.serving import serve; "
        f"sys.exit(serve('127.0.0.1', {port}, 2, app_path='tests.e2e.gunicorn_app:app'))"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_up(f"{base}/healthz", proc)
        ready = httpx.get(f"{base}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        for _ in range(20):
            assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200
        body = httpx.get(f"{base}/metrics", timeout=5).text
        counts = [
            line
            for line in body.splitlines()
            if line.startswith("feishui_http_request_duration_seconds_count")
            and 'route="/healthz"' in line
        ]
        assert counts and float(counts[0].rsplit(" ", 1)[1]) >= 21  # both workers' requests
    except BaseException:
        proc.send_signal(signal.SIGTERM)
        print(proc.communicate(timeout=60)[0])
        raise
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, output
    assert output.count("Booting worker") == 2, output
