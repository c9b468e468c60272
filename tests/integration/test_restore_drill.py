"""deploy/restore-drill.sh on PostgreSQL: a sound database passes; a broken dump and a
tampered ledger fail the drill with a non-zero exit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from clearing.db import transaction
from clearing.ledger.service import LedgerService
from tests.conftest import unavailable
from tests.factories import payment_entry

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "deploy" / "restore-drill.sh"
FEISHUI = Path(sys.executable).with_name("feishui")

pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def drill(pg, tmp_path):
    if not (shutil.which("pg_dump") and shutil.which("pg_restore") and shutil.which("psql")):
        unavailable("pg_dump, pg_restore and psql", FileNotFoundError("not on PATH"))
    with transaction(pg.sessions) as s:
        ledger = LedgerService(s)
        for i in range(3):
            ledger.post(payment_entry(f"pay-{i}", 10_000 + i))
    with transaction(pg.sessions) as s:
        LedgerService(s).seal()

    def run(**env: str) -> subprocess.CompletedProcess[str]:
        environ = {
            **os.environ,
            "FEISHUI_BIN": str(FEISHUI),
            "FEISHUI_ENV": "test",
            "FEISHUI_VAR_DIR": str(tmp_path),
            "FEISHUI_DATABASE_URL": pg.url,
            **env,
        }
        environ.pop("FEISHUI_REDIS_URL", None)
        return subprocess.run(
            ["bash", str(SCRIPT)],
            env=environ,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    return run


def scratch_databases(pg) -> list[str]:
    with pg.engine.connect() as conn:
        return list(
            conn.scalars(
                text("SELECT datname FROM pg_database WHERE datname LIKE 'feishui_restore_drill_%'")
            )
        )


def test_a_sound_database_passes_the_drill(drill, pg):
    result = drill()
    assert result.returncode == 0, result.stderr + result.stdout
    assert "PASSED" in result.stderr and "balanced" in result.stdout.lower()
    assert scratch_databases(pg) == []


def test_an_unreadable_dump_fails_the_drill(drill, pg, tmp_path):
    bad = tmp_path / "broken.dump"
    bad.write_bytes(b"PGDMP not really a dump")
    result = drill(DUMP_FILE=str(bad))
    assert result.returncode != 0 and "FAILED" in result.stderr
    assert scratch_databases(pg) == []


def test_a_tampered_ledger_fails_the_drill(drill, pg):
    with pg.engine.begin() as conn:  # behind the triggers' back, as only an intruder could
        conn.execute(text("SET LOCAL session_replication_role = replica"))
        conn.execute(
            text(
                "UPDATE postings SET amount = amount + 1 WHERE id = (SELECT min(id) FROM postings)"
            )
        )
    result = drill()
    assert result.returncode != 0 and "FAILED" in result.stderr
    assert scratch_databases(pg) == []


def test_a_url_that_is_not_postgresql_is_refused(drill):
    result = drill(FEISHUI_DATABASE_URL="sqlite:///var/feishui.db")
    assert result.returncode == 2 and "not a PostgreSQL URL" in result.stderr
