"""``feishui user ...`` and ``feishui report ...`` end to end on the embedded SQLite default."""

from __future__ import annotations

import io
from datetime import date

import pytest
from openpyxl import load_workbook

from api import runtime
from clearing.db import transaction
from clearing.ledger.service import LedgerService
from reconciliation import users
from reconciliation.models import User
from tests.factories import payment_entry


@pytest.fixture
def cli(embedded_cli):
    assert embedded_cli("db", "upgrade") == 0
    return embedded_cli


def test_user_create_token_disable(cli, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert (
        cli(
            "user",
            "create",
            "li.ming",
            "--role",
            "finance_officer",
            "--name",
            "李明",
            "--password-stdin",
        )
        == 0
    )
    assert "li.ming (finance_officer) created" in capsys.readouterr().out
    monkeypatch.setattr("sys.stdin", io.StringIO("a long enough password\n"))
    assert cli("user", "create", "li.ming", "--role", "auditor", "--password-stdin") == 2
    assert "already exists" in capsys.readouterr().err
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert cli("user", "create", "wang", "--role", "auditor", "--password-stdin") == 2

    assert cli("user", "token", "li.ming") == 0
    token = capsys.readouterr().out.strip()
    assert token.startswith("fsu_")
    sessions = runtime.get_runtime().sessions
    with transaction(sessions) as s:
        user = users.authenticate(s, token, kind="api")
        assert (user.username, user.display_name, user.role) == (
            "li.ming",
            "李明",
            "finance_officer",
        )
        assert s.query(User).one().password_hash.startswith("scrypt$")
    assert cli("user", "disable", "li.ming") == 0
    with transaction(sessions) as s, pytest.raises(Exception, match="invalid"):
        users.authenticate(s, token, kind="api")
    assert cli("user", "token", "nobody") == 2


def test_reports_on_the_command_line(cli, capsys, tmp_path):
    with transaction(runtime.get_runtime().sessions) as s:
        LedgerService(s).post(payment_entry("p1", 26_000, on=date(2026, 11, 27)))
    capsys.readouterr()
    assert cli("report", "trial-balance", "--as-of", "2026-11-27") == 0
    out = capsys.readouterr().out
    assert "试算平衡表" in out and "treasury_payable:510100-city" in out and "260.00" in out
    assert (
        cli(
            "report",
            "collections",
            "--date",
            "2026-11-27",
            "--format",
            "xlsx",
            "--out",
            str(tmp_path / "c.xlsx"),
        )
        == 0
    )
    assert load_workbook(tmp_path / "c.xlsx").sheetnames[0] == "Info"
    assert cli("report", "trial-balance", "--format", "pdf", "--out", str(tmp_path / "tb.pdf")) == 0
    assert (tmp_path / "tb.pdf").read_bytes().startswith(b"%PDF")
    assert cli("report", "trial-balance", "--format", "pdf") == 2  # needs --out
    assert cli("report", "run", "999", "--format", "csv") == 2
    assert "does not exist" in capsys.readouterr().err
    assert cli("report", "collections", "--date", "2026-02-30") == 2
