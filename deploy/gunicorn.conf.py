"""gunicorn settings for feishui: ``gunicorn api.asgi:app -c deploy/gunicorn.conf.py``.

Environment: ``GUNICORN_BIND`` (default ``127.0.0.1:8000``), ``WEB_CONCURRENCY`` (workers,
default 2: one per core for this async app), ``PROMETHEUS_MULTIPROC_DIR`` (see
docs/operations.md). Everything else lives in api/serving.py, shared with ``feishui serve``.
"""

import os

from api.serving import gunicorn_options

_options = gunicorn_options(
    *os.environ.get("GUNICORN_BIND", "127.0.0.1:8000").rsplit(":", 1),
    int(os.environ.get("WEB_CONCURRENCY", "2")),
)
globals().update(_options)
