"""Load generator for the HTTP benchmarks, run in its own process (so that its CPU is not the
server's): ``python bench/_load.py SPEC.pickle OUT.pickle``.

It speaks HTTP/1.1 with keep-alive over raw asyncio streams (uvloop when installed): requests are
pre-built bytes, responses are read by ``Content-Length``. That costs a few tens of microseconds
of CPU per request, several times less than an HTTP client library, so the generator takes as
little as possible of the 2 CPUs away from the server it measures.

Spec (a dict):

- ``host``, ``port``; ``ports`` (optional): connection i is opened on ``ports[i % len(ports)]``
  (one server process per port: the even spread of a load balancer);
- ``requests``: a list of raw HTTP requests (bytes); ``cycle``: reuse them round-robin (else
  each is sent once and the run ends when they run out);
- ``mode`` = ``closed``: ``concurrency`` connections, each sending its next request as soon as
  the previous answer arrived, for ``duration`` seconds (or until the requests run out);
- ``mode`` = ``open``: requests sent at a fixed ``rate`` per second for ``duration`` seconds,
  whatever the answers (a pool of up to ``concurrency`` connections; a request that finds no idle
  connection waits, and its latency counts from its scheduled send time: no coordinated
  omission);
- ``expect_status`` (int or list) and ``expect_body`` (bytes or None): answers that differ are
  counted as errors and the first few kept.

Output (a dict): ``latencies`` (seconds, one per answered request), ``sent``, ``answered``,
``errors``, ``error_samples``, ``statuses`` (count per status), ``elapsed`` (first send to last
answer), ``late`` (open mode: requests that started more than 10 ms after their slot).
"""

from __future__ import annotations

import asyncio
import pickle
import sys
import time
from collections import Counter

try:
    import uvloop
except ImportError:  # pragma: no cover
    uvloop = None


class Conn:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, host: str, port: int) -> Conn:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def call(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        status_line = await self.reader.readline()
        if not status_line:
            raise ConnectionError("connection closed by the server")
        status = int(status_line.split(b" ", 2)[1])
        length = None
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            raise ValueError("response without Content-Length")
        body = await self.reader.readexactly(length) if length else b""
        return status, body

    def close(self) -> None:
        self.writer.close()


async def run(spec: dict) -> dict:
    host, ports = spec["host"], spec.get("ports") or [spec["port"]]
    requests: list[bytes] = spec["requests"]
    cycle = spec.get("cycle", False)
    expect_status = spec.get("expect_status", 200)
    expect_status = set(expect_status if isinstance(expect_status, list) else [expect_status])
    expect_body = spec.get("expect_body")
    duration = spec["duration"]
    concurrency = spec.get("concurrency", 8)
    lat: list[float] = []
    statuses: Counter[int] = Counter()
    errors: list[str] = []
    counters = {"next": 0, "sent": 0, "late": 0, "errors": 0}

    def next_request() -> bytes | None:
        i = counters["next"]
        if i >= len(requests):
            if not cycle:
                return None
            i %= len(requests)
        counters["next"] += 1
        return requests[i % len(requests)]

    def record(status: int, body: bytes, started: float) -> None:
        lat.append(time.perf_counter() - started)
        statuses[status] += 1
        if status not in expect_status or (expect_body is not None and body != expect_body):
            counters["errors"] += 1
            if len(errors) < 5:
                errors.append(f"{status}: {body[:300]!r}")

    conns = [await Conn.open(host, ports[i % len(ports)]) for i in range(concurrency)]
    t_first = time.perf_counter()
    t_last = t_first
    deadline = t_first + duration

    if spec["mode"] == "closed":

        async def loop(conn: Conn) -> None:
            nonlocal t_last
            while time.perf_counter() < deadline:
                req = next_request()
                if req is None:
                    return
                counters["sent"] += 1
                t = time.perf_counter()
                try:
                    status, body = await conn.call(req)
                except Exception as exc:
                    counters["errors"] += 1
                    if len(errors) < 5:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    return
                record(status, body, t)
                t_last = max(t_last, time.perf_counter())

        await asyncio.gather(*(loop(c) for c in conns))
    else:
        rate = spec["rate"]
        idle: asyncio.Queue[Conn] = asyncio.Queue()
        for c in conns:
            idle.put_nowait(c)

        async def one(req: bytes, slot: float) -> None:
            nonlocal t_last
            conn = await idle.get()
            if time.perf_counter() - slot > 0.010:
                counters["late"] += 1
            try:
                status, body = await conn.call(req)
            except Exception as exc:
                counters["errors"] += 1
                if len(errors) < 5:
                    errors.append(f"{type(exc).__name__}: {exc}")
                return
            idle.put_nowait(conn)
            record(status, body, slot)  # latency from the scheduled send time
            t_last = max(t_last, time.perf_counter())

        tasks = []
        n = int(rate * duration)
        for i in range(n):
            slot = t_first + i / rate
            delay = slot - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            req = next_request()
            if req is None:
                break
            counters["sent"] += 1
            tasks.append(asyncio.create_task(one(req, slot)))
        await asyncio.gather(*tasks)
    for c in conns:
        c.close()
    return {
        "latencies": lat,
        "sent": counters["sent"],
        "answered": len(lat),
        "errors": counters["errors"],
        "error_samples": errors,
        "statuses": dict(statuses),
        "elapsed": t_last - t_first,
        "late": counters["late"],
    }


def main() -> None:
    spec_path, out_path = sys.argv[1], sys.argv[2]
    with open(spec_path, "rb") as f:
        spec = pickle.load(f)
    result = uvloop.run(run(spec)) if uvloop is not None else asyncio.run(run(spec))
    with open(out_path, "wb") as f:
        pickle.dump(result, f)


if __name__ == "__main__":
    main()
