"""Shared plumbing of the HTTP benchmarks: the database, the servers, the load generator, the
figures. See bench/README.md."""

from __future__ import annotations

import json
import os
import pickle
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable

import psycopg  # noqa: E402
from sqlalchemy import make_url, text  # noqa: E402

from clearing import migrate  # noqa: E402
from clearing.db import make_engine  # noqa: E402

DEFAULT_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/feishui_bench_api"


def psycopg_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def admin_url(url: str) -> str:
    return make_url(url).set(database="postgres").render_as_string(hide_password=False)


def setup_database(url: str, extra_ddl: str = "") -> None:
    """DROP and CREATE the benchmark database, migrate it, run ``extra_ddl``."""
    name = make_url(url).database
    if not name or name.startswith("feishui_test") or name in ("feishui_dev", "postgres"):
        raise SystemExit(f"refusing to drop database {name!r}: use a dedicated bench database")
    admin = make_engine(admin_url(url))
    with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    migrate.upgrade(url)
    if extra_ddl:
        with psycopg.connect(psycopg_dsn(url), autocommit=True) as conn:
            conn.execute(extra_ddl)


def machine(url: str) -> dict[str, Any]:
    with psycopg.connect(psycopg_dsn(url)) as c:
        pg = c.execute("SHOW server_version").fetchone()[0]
        settings = dict(
            c.execute(
                "SELECT name, setting FROM pg_settings WHERE name IN ('synchronous_commit', "
                "'shared_buffers', 'max_connections', 'fsync')"
            ).fetchall()
        )
    import fastapi
    import sqlalchemy
    import uvicorn

    versions = {
        "fastapi": fastapi.__version__,
        "uvicorn": uvicorn.__version__,
        "sqlalchemy": sqlalchemy.__version__,
        "psycopg": psycopg.__version__,
    }
    for mod in ("uvloop", "httptools"):
        try:
            versions[mod] = __import__(mod).__version__
        except ImportError:
            versions[mod] = "absent"
    return {
        "nproc": os.cpu_count(),
        "pg": pg,
        "settings": settings,
        "python": platform.python_version(),
        "load": os.getloadavg(),
        "versions": versions,
    }


def bench_env(url: str, var_dir: Path, base_url: str) -> dict[str, str]:
    """The servers' environment: FEISHUI_* settings, quiet logs, the repo on the path."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEISHUI_")}
    env.update(
        {
            "FEISHUI_DATABASE_URL": url,
            "FEISHUI_VAR_DIR": str(var_dir),
            "FEISHUI_ENV": "development",
            "FEISHUI_PUBLIC_BASE_URL": base_url,
            "FEISHUI_LOG_LEVEL": "WARNING",
            # The per-key limit stays on (its cost is part of every request) but far above
            # what one key sends here: the default, 100/1s, would answer most requests 429.
            "FEISHUI_API_RATE": "1000000/1s",
            "PYTHONPATH": str(ROOT),
        }
    )
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``workers`` processes of ``uvicorn --factory`` on a factory of bench/_apps.py, one worker
    each, each on its own port and in its own process group.

    Why not ``uvicorn --workers N``: its workers share one listening socket and the kernel hands
    each new connection to whichever worker accepts first, so a closed loop's 16 connections
    were split 8/8 in one round and 16/0 in the next (measured: one worker at 87% CPU, the other
    idle), and throughput moved by a third from round to round for both the application and the
    baseline. Here the load generator opens connection i on ``ports[i % workers]``: the even
    spread a load balancer in front of the processes gives (bench/README.md)."""

    def __init__(self, factory: str, workers: int, env: dict[str, str], log: Path) -> None:
        self.factory, self.workers = factory, workers
        self.ports = [free_port() for _ in range(workers)]
        self._log = open(log, "ab")  # noqa: SIM115
        self.procs = [self._start(port, env) for port in self.ports]

    @property
    def port(self) -> int:
        """The first process's port (for a client that needs only one)."""
        return self.ports[0]

    def _start(self, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
        cmd = [
            str(Path(PYTHON).with_name("uvicorn")),
            "--factory",
            "--app-dir",
            str(ROOT),
            f"bench._apps:{self.factory}",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--loop",
            "uvloop",
            "--http",
            "httptools",
            "--no-access-log",
            "--log-level",
            "warning",
        ]
        out = self._log
        return subprocess.Popen(
            cmd, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, path: str, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        request = f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode()
        for port, proc in zip(self.ports, self.procs, strict=True):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"{self.factory} exited with {proc.returncode}")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.factory} not ready in {timeout} s")
                try:
                    with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                        s.sendall(request)
                        if s.recv(64).startswith(b"HTTP/1.1 200"):
                            break
                except OSError:
                    pass
                time.sleep(0.2)

    def pids(self) -> list[int]:
        """The server processes (each is its own worker)."""
        return [proc.pid for proc in self.procs]

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        self._log.close()


@contextmanager
def servers(specs: list[tuple[str, int, str]], env: dict[str, str], log: Path):  # type: ignore[no-untyped-def]
    """Start (factory, workers, ready path) servers; stop them all afterwards."""
    started: list[Server] = []
    try:
        for factory, workers, _ in specs:
            started.append(Server(factory, workers, env, log))
        for server, (_, _, path) in zip(started, specs, strict=True):
            server.wait_ready(path)
        yield started
    finally:
        for server in started:
            server.stop()


def http_request(
    method: str,
    path: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1"]
    if body or method == "POST":
        lines += [f"Content-Type: {content_type}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds consumed so far by ``pids`` (from /proc)."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def load(spec: dict[str, Any], server: Server | None = None) -> dict[str, Any]:
    """Run bench/_load.py with ``spec`` in a separate process; return its result (with the
    server's CPU seconds over the run when ``server`` is given)."""
    pids = server.pids() if server is not None else []
    if server is not None:
        spec = {**spec, "ports": server.ports}  # connection i on ports[i % len(ports)]
    cpu0 = cpu_seconds(pids)
    with tempfile.TemporaryDirectory(prefix="feishui_load_") as tmp:
        spec_path, out_path = Path(tmp) / "spec.pickle", Path(tmp) / "out.pickle"
        spec_path.write_bytes(pickle.dumps(spec))
        t = time.monotonic()
        subprocess.run(
            [PYTHON, str(BENCH / "_load.py"), str(spec_path), str(out_path)],
            check=True,
            timeout=spec["duration"] + 600,
        )
        result = pickle.loads(out_path.read_bytes())
    result["wall"] = time.monotonic() - t
    result["server_cpu"] = cpu_seconds(pids) - cpu0
    result["load1"] = os.getloadavg()[0]
    lat = sorted(result["latencies"])
    result["rps"] = result["answered"] / result["elapsed"] if result["elapsed"] > 0 else 0.0
    result["p50"], result["p90"], result["p99"] = (pct(lat, 50), pct(lat, 90), pct(lat, 99))
    result["max"] = lat[-1] * 1000 if lat else float("nan")
    return result


def merge(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """Rounds of one kind as if one run: summed counts and time, merged latencies."""
    lat = sorted(x for p in parts for x in p["latencies"])
    answered = sum(p["answered"] for p in parts)
    elapsed = sum(p["elapsed"] for p in parts)
    statuses: dict[int, int] = {}
    for p in parts:
        for k, v in p["statuses"].items():
            statuses[k] = statuses.get(k, 0) + v
    return {
        "answered": answered,
        "elapsed": elapsed,
        "rps": answered / elapsed if elapsed else 0,
        "errors": sum(p["errors"] for p in parts),
        "statuses": statuses,
        "error_samples": [e for p in parts for e in p["error_samples"]][:5],
        "p50": pct(lat, 50),
        "p90": pct(lat, 90),
        "p99": pct(lat, 99),
        "max": lat[-1] * 1000 if lat else float("nan"),
        "rounds": [round(p["rps"]) for p in parts],
        "late": sum(p.get("late", 0) for p in parts),
        "cpu_ms": (
            1000 * sum(p.get("server_cpu", 0.0) for p in parts) / answered
            if answered
            else float("nan")
        ),
        "load1": max(p["load1"] for p in parts),
    }


def pct(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, round(p / 100 * (len(sorted_values) - 1)))
    return sorted_values[i] * 1000


def header(
    title: str,
    began,
    took: float,
    info: dict[str, Any],
    argv: list[str],  # type: ignore[no-untyped-def]
    script: str,
) -> list[str]:
    settings = ", ".join(f"{k}={v}" for k, v in sorted(info["settings"].items()))
    versions = ", ".join(f"{k} {v}" for k, v in info["versions"].items())
    return [
        f"## {title}",
        "",
        f"Run {began:%Y-%m-%d %H:%M} UTC, {took:.0f} s in all; {info['nproc']} CPUs; PostgreSQL "
        f"{info['pg']} ({settings}), same host, TCP 127.0.0.1; Python {info['python']}; "
        f"{versions}; load average before the run {info['load'][0]:.2f} / {info['load'][1]:.2f} "
        f"/ {info['load'][2]:.2f}.",
        "",
        "Command: `" + " ".join([".venv/bin/python", script, *argv]) + "`",
        "",
    ]


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
