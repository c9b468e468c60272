"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from api import runtime
from api.cli import main
from clearing import config
from clearing.db import transaction
from tests.notice_factories import department, seed_catalogue


@pytest.fixture
def police(db):
    """The seeded catalogue and a police department; its principal (it issues traffic fines)."""
    with transaction(db.sessions) as s:
        seed_catalogue(s)
        who, _ = department(s)
    return who


@pytest.fixture
def embedded_cli(tmp_path, monkeypatch):
    """``embedded_cli(*argv)`` runs ``feishui`` in-process on the embedded default (SQLite under a
    fresh var dir, jobs in-process, no Redis) and returns its exit code."""
    monkeypatch.setenv("FEISHUI_VAR_DIR", str(tmp_path))
    for name in ("FEISHUI_DATABASE_URL", "FEISHUI_ENV", "FEISHUI_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)
    config.get_settings.cache_clear()
    runtime.get_runtime.cache_clear()
    yield lambda *argv: main(list(argv))
    if runtime.get_runtime.cache_info().currsize:
        runtime.get_runtime().engine.dispose()
    config.get_settings.cache_clear()
    runtime.get_runtime.cache_clear()
