"""Production serving: gunicorn with uvicorn workers, for ``feishui serve --workers N``.

Why gunicorn and not ``uvicorn --workers``: uvicorn's own multi-worker mode leaves accepted
sockets without TCP_NODELAY (uvicorn issue #3149), so every response waits for a delayed ACK
(p50 pinned near 44 ms; /work/shared/CEILINGS.md). Gunicorn also restarts a worker that dies or
hangs (``timeout``) and recycles workers (``max_requests``) without dropping the listen socket.
"""

from __future__ import annotations

import os
from typing import Any

#: The maintained home of ``uvicorn.workers.UvicornWorker`` (deprecated in uvicorn itself);
#: same class, uvloop and httptools when installed (``uvicorn[standard]``).
WORKER_CLASS = "uvicorn_worker.UvicornWorker"


def gunicorn_options(host: str, port: int, workers: int, **extra: Any) -> dict[str, Any]:
    """The gunicorn settings for ``workers`` uvicorn workers on ``host:port``."""
    options: dict[str, Any] = {
        "bind": f"{host}:{port}",
        "workers": workers,
        "worker_class": WORKER_CLASS,
        "timeout": 60,
        "graceful_timeout": 30,
        "keepalive": 5,
        "max_requests": 10_000,
        "max_requests_jitter": 1_000,
        "accesslog": None,  # the app's JSON logs and metrics say what the access log would
        "child_exit": child_exit,
    }
    options.update(extra)
    return options


def child_exit(_server: Any, worker: Any) -> None:
    """Tell prometheus_client a worker is gone (multi-process mode), so its live gauges go."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def serve(host: str, port: int, workers: int, app_path: str = "api.asgi:app") -> int:
    """Run gunicorn in this process until it is stopped (SIGTERM: graceful)."""
    from gunicorn.app.base import BaseApplication

    options = gunicorn_options(host, port, workers)

    class _Application(BaseApplication):  # type: ignore[misc]
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self) -> Any:
            from gunicorn.util import import_app

            return import_app(app_path)

    _Application().run()
    return 0
