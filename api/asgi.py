"""The ASGI application for production servers: ``gunicorn api.asgi:app -c deploy/gunicorn.conf.py``
(or ``uvicorn api.asgi:app``). Logging is configured first, from the settings, so that the app's
start-up lines are JSON and redacted too.

Once the app is built, ``gc.freeze()`` moves everything allocated so far (modules, the app, the
compiled statements) out of the garbage collector's sight: the collector then scans only what
requests allocate, which cut the CPU of a 10,000-notice batch by about a third in-process.
"""

from __future__ import annotations

import gc

from api.app import create_app
from clearing.config import get_settings
from clearing.logs import configure_logging

_settings = get_settings()
configure_logging(_settings.log_level, json=_settings.log_json)

app = create_app()
gc.freeze()
