"""``feishui db upgrade [--to REVISION]`` on the embedded SQLite default under a temporary var
dir: the two steps of a deploy whose head is newer than ``migrate.OLDEST_SCHEMA``."""

from __future__ import annotations

import pytest
from sqlalchemy import inspect, text

from api.routers import health
from clearing import migrate
from clearing.db import make_engine


@pytest.fixture
def cli(embedded_cli):
    """``cli(*argv)`` runs ``feishui`` in-process on a fresh var dir; returns the exit code."""
    return embedded_cli


def test_db_upgrade_to_the_oldest_schema_then_to_head(cli, capsys, tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'feishui.db'}")
    try:
        assert cli("db", "upgrade", "--to", migrate.OLDEST_SCHEMA) == 0
        assert f"database at {migrate.OLDEST_SCHEMA}:" in capsys.readouterr().out
        assert _version(engine) == migrate.OLDEST_SCHEMA == "0010"
        legs = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("journal_entries")}
        assert legs["legs"] is True  # the expand: NULLable, no key yet
        assert health.check_migrations(engine) == "ok"

        assert cli("db", "upgrade") == 0
        assert "database at head:" in capsys.readouterr().out
        (head,) = health.script_revisions()[0]
        assert _version(engine) == head != migrate.OLDEST_SCHEMA
        legs = {c["name"]: c["nullable"] for c in inspect(engine).get_columns("journal_entries")}
        assert legs["legs"] is False
    finally:
        engine.dispose()


def _version(engine) -> str:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
