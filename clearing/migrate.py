"""Run Alembic migrations from code (``feishui db upgrade``, tests, the demo)."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config

from alembic import command

ROOT = Path(__file__).resolve().parent.parent

OLDEST_SCHEMA = "0010"
"""The oldest schema revision this code runs on.

A release's code runs on every revision from this one to its head. A contract migration newer
than it (0011: NOT NULL, the keys and the once-per-entry balance check) refuses what the previous
release writes, so it is applied only once no process of the previous release is left: deploy
with ``feishui db upgrade --to OLDEST_SCHEMA``, roll every process, then ``feishui db upgrade``
(docs/operations.md, "Migrations while the old release serves"). ``/readyz`` reports ready on
any revision of that range."""


def alembic_config(url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "alembic"))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(url: str, revision: str = "head") -> None:
    """Migrate the database at ``url`` to ``revision``."""
    command.upgrade(alembic_config(url), revision)


def check(url: str) -> None:
    """Raise unless the models and the migrations agree (``alembic check``)."""
    command.check(alembic_config(url))
