"""Liveness and readiness for load balancers and orchestrators.

- ``GET /healthz``: the process answers (200). Never touches a dependency, so a database outage
  does not make the orchestrator restart every web process at once.
- ``GET /readyz``: this process can serve: the database answers ``SELECT 1``, Redis answers
  ``PING`` when ``FEISHUI_REDIS_URL`` is set, and the database's Alembic revision is the code's
  head. 503 with the reasons otherwise (no connection strings, no secrets).

A database *ahead* of the code (a revision these scripts do not know) is ready: during a
rolling deploy the new release's expand migration runs first while the old release still serves,
and the expand/migrate/contract rule (docs/operations.md) makes that safe. A database *behind*
the code is not: the code would use columns that do not exist yet.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Engine, text

from clearing import migrate

router = APIRouter(tags=["health"])


@router.get("/healthz", include_in_schema=False)
def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", include_in_schema=False)
def readyz(request: Request) -> JSONResponse:
    """Database reachable, Redis reachable (if configured), migrations at head."""
    runtime = request.app.state.runtime
    checks = {"database": check_database(runtime.engine)}
    if checks["database"] == "ok":
        checks["migrations"] = check_migrations(runtime.engine)
    if runtime.settings.redis_url:
        checks["redis"] = check_redis(runtime.settings.redis_url)
    reasons = [f"{name}: {result}" for name, result in checks.items() if result != "ok"]
    body: dict[str, Any] = {"status": "ok" if not reasons else "unavailable", "checks": checks}
    if reasons:
        body["reasons"] = reasons
    return JSONResponse(body, status_code=503 if reasons else 200)


def check_database(engine: Engine) -> str:
    """Return "ok", or why the database does not answer (the error's class only)."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:
        return f"unreachable ({type(exc).__name__})"
    return "ok"


def check_migrations(engine: Engine) -> str:
    """Return "ok" when the database's Alembic revisions are the migration scripts' heads."""
    try:
        with engine.connect() as conn:
            current = {
                row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))
            }
    except Exception as exc:
        return f"no alembic_version ({type(exc).__name__}): run feishui db upgrade"
    heads, known = script_revisions()
    if current == heads or (current and not current & known):
        return "ok"  # at head, or ahead of this code (a newer release's expand step)
    return f"database at {sorted(current) or 'nothing'}, code expects {sorted(heads)}"


@lru_cache(maxsize=1)
def script_revisions() -> tuple[frozenset[str], frozenset[str]]:
    """The head revision(s) of the migration scripts shipped with this code, and every
    revision they know."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    known = frozenset(rev.revision for rev in scripts.walk_revisions())
    return frozenset(scripts.get_heads()), known


def check_redis(url: str) -> str:
    """Return "ok" when Redis answers PING within a second."""
    from redis import Redis

    try:
        client = Redis.from_url(url, socket_connect_timeout=1, socket_timeout=1)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"unreachable ({type(exc).__name__})"
    return "ok"
