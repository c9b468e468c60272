"""The app for tests/e2e/test_gunicorn.py: api.asgi's app with the operations installers that
create_app will call (until it does), configured from the environment."""

from __future__ import annotations

from api.asgi import app
from api.observability import install_observability
from api.routers import health

if not any(getattr(r, "path", None) == "/healthz" for r in app.routes):
    app.include_router(health.router)
install_observability(app)
