"""Liveness and readiness for load balancers and orchestrators.

- ``GET /healthz``: the process answers (200). Never touches a dependency, so a database outage
  does not make the orchestrator restart every web process at once.
- ``GET /readyz``: this process can serve: the database answers ``SELECT 1``, Redis answers
  ``PING`` when ``FEISHUI_REDIS_URL`` is set, and the database's Alembic revision is one the code
  runs on. 503 with the reasons otherwise (no connection strings, no secrets).

The code runs on every revision from ``clearing.migrate.OLDEST_SCHEMA`` to its head: a deploy
migrates to OLDEST_SCHEMA (the expand), rolls every process, then applies the contract
migrations after it. A database *ahead* of the code (a revision these scripts do not know) is
ready too: during a rolling deploy the new release's expand migration runs first while the old
release still serves, and the expand/migrate/contract rule (docs/operations.md) makes that safe.
A database *behind* OLDEST_SCHEMA is not: the code would use columns that do not exist yet.
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
    """Database reachable, Redis reachable (if configured), migrations in the code's range."""
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
    """Return "ok" when the database's Alembic revisions are ones this code runs on: from
    ``migrate.OLDEST_SCHEMA`` to the scripts' heads, or ahead of them (unknown revisions)."""
    try:
        with engine.connect() as conn:
            current = {
                row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))
            }
    except Exception as exc:
        return f"no alembic_version ({type(exc).__name__}): run feishui db upgrade"
    heads, known, supported = script_revisions()
    if current and (current <= supported or not current & known):
        return "ok"  # OLDEST_SCHEMA..head, or ahead of this code (a newer release's expand step)
    return (
        f"database at {sorted(current) or 'nothing'}, code expects {sorted(heads)} "
        f"(runs on {migrate.OLDEST_SCHEMA} or newer)"
    )


@lru_cache(maxsize=1)
def script_revisions() -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    """The head revision(s) of the migration scripts shipped with this code, every revision they
    know, and the revisions the code runs on (``migrate.OLDEST_SCHEMA`` up to the heads)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(migrate.alembic_config("sqlite://"))
    known = frozenset(rev.revision for rev in scripts.walk_revisions())
    newer = scripts.iterate_revisions("heads", migrate.OLDEST_SCHEMA)  # excludes the lower bound
    supported = frozenset({migrate.OLDEST_SCHEMA, *(rev.revision for rev in newer)})
    return frozenset(scripts.get_heads()), known, supported


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
