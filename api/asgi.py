"""The ASGI application for production servers: ``gunicorn api.asgi:app -c deploy/gunicorn.conf.py``
(or ``uvicorn api.asgi:app``). Logging is configured first, from the settings, so that the app's
start-up lines are JSON and redacted too."""

from __future__ import annotations

from api.app import create_app
from clearing.config import get_settings
from clearing.logs import configure_logging

_settings = get_settings()
configure_logging(_settings.log_level, json=_settings.log_json)

app = create_app()
