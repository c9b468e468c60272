"""Shared fixtures: real databases, migrated by Alembic.

- ``db`` is parametrised over SQLite (the embedded default) and PostgreSQL.
- ``pg`` is PostgreSQL only. Its URL is ``FEISHUI_TEST_PG_URL`` (default: a ``feishui_test``
  database on 127.0.0.1 as postgres), created afresh for each test session.
- With ``CI=true`` a missing PostgreSQL or Redis fails the tests instead of skipping them.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session, sessionmaker

from clearing import migrate
from clearing.db import make_engine, make_sessionmaker
from clearing.ledger.repository import clear_account_cache
from clearing.models import metadata
from tests.support.databases import recreate_database

PG_URL = os.environ.get(
    "FEISHUI_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/feishui_test"
)
REDIS_URL = os.environ.get("FEISHUI_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
IN_CI = os.environ.get("CI", "").lower() == "true"


def unavailable(what: str, exc: Exception) -> None:
    message = f"{what} is not reachable: {exc}"
    if IN_CI:
        pytest.fail(message + " (CI=true: services are required)", pytrace=False)
    pytest.skip(message)


@dataclass
class Database:
    """A migrated database for one test: an engine and a session factory."""

    name: str
    url: str
    engine: Engine
    sessions: sessionmaker[Session]

    def session(self) -> Session:
        return self.sessions()


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[Engine]:
    try:
        recreate_database(PG_URL)
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    migrate.upgrade(PG_URL)
    engine = make_engine(PG_URL, pool_size=25)
    yield engine
    engine.dispose()


def _wipe_postgres(engine: Engine) -> None:
    tables = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
    with engine.begin() as conn:
        # Replica mode skips the append-only triggers: only tests ever wipe a ledger.
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    clear_account_cache()


@pytest.fixture
def pg(pg_engine: Engine) -> Iterator[Database]:
    _wipe_postgres(pg_engine)
    yield Database("postgresql", PG_URL, pg_engine, make_sessionmaker(pg_engine))


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite") / "template.db"
    migrate.upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite(sqlite_template: Path, tmp_path: Path) -> Iterator[Database]:
    path = tmp_path / "feishui.db"
    shutil.copy(sqlite_template, path)
    url = f"sqlite:///{path}"
    engine = make_engine(url)
    clear_account_cache()
    yield Database("sqlite", url, engine, make_sessionmaker(engine))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db(request: pytest.FixtureRequest) -> Database:
    """The test runs once on SQLite and once on PostgreSQL."""
    return request.getfixturevalue("pg" if request.param == "postgresql" else "sqlite")
