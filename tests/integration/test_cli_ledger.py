"""``feishui ledger ...`` end to end on the embedded SQLite default under a temporary var dir."""

from __future__ import annotations

from datetime import date

import pytest
from beancount import loader
from beancount.core import data
from sqlalchemy import text

from api import runtime
from clearing.db import transaction
from clearing.ledger.core import Entry, Posting
from clearing.ledger.service import LedgerService
from tests.factories import payment_entry


@pytest.fixture
def cli(embedded_cli):
    """``cli(*argv)`` runs ``feishui`` in-process on a fresh var dir; returns the exit code."""
    return embedded_cli


def run(cli, capsys, *argv):
    capsys.readouterr()
    code = cli(*argv)
    out, err = capsys.readouterr()
    return code, out, err


def post_some():
    sessions = runtime.get_runtime().sessions
    with transaction(sessions) as s:
        ledger = LedgerService(s)
        ledger.post(
            payment_entry(
                "p1", 26_000, on=date(2026, 11, 10), description='交通违法罚款 "川A12345"'
            )
        )
        ledger.post(payment_entry("p2", 5_050, treasury="510000-province", on=date(2026, 11, 11)))
        ledger.post(
            Entry(
                "settle-1",
                date(2026, 11, 12),
                "支付宝结算",
                (
                    Posting.debit("fiscal_bank:icbc-5101", 30_894),
                    Posting.debit("gateway_fees:alipay", 156),
                    Posting.credit("gateway_clearing:alipay", 31_050),
                ),
            )
        )


def rows(out: str) -> dict[str, list[str]]:
    return {line.split()[0]: line.split()[1:] for line in out.splitlines()[1:] if line.strip()}


def test_ledger_commands(cli, capsys, tmp_path):
    code, out, _ = run(cli, capsys, "db", "upgrade")
    assert code == 0 and (tmp_path / "feishui.db").exists()
    post_some()

    code, out, err = run(cli, capsys, "ledger", "balances")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == [
        "account",
        "type",
        "currency",
        "debits",
        "credits",
        "balance",
    ]
    assert rows(out) == {
        "fiscal_bank:icbc-5101": ["asset", "CNY", "308.94", "0.00", "308.94"],
        "gateway_clearing:alipay": ["asset", "CNY", "310.50", "310.50", "0.00"],
        "gateway_fees:alipay": ["expense", "CNY", "1.56", "0.00", "1.56"],
        "treasury_payable:510000-province": ["liability", "CNY", "0.00", "50.50", "50.50"],
        "treasury_payable:510100-city": ["liability", "CNY", "0.00", "260.00", "260.00"],
    }

    code, out, _ = run(cli, capsys, "ledger", "balances", "--as-of", "2026-11-10")
    assert code == 0
    assert rows(out)["gateway_clearing:alipay"] == ["asset", "CNY", "260.00", "0.00", "260.00"]
    assert rows(out)["fiscal_bank:icbc-5101"][-1] == "0.00"

    code, out, _ = run(cli, capsys, "ledger", "trial-balance")
    assert code == 0
    assert out.splitlines()[-2].split() == ["total", "CNY", "CNY", "310.50", "310.50"]
    assert out.splitlines()[-1] == "balanced"
    code, out, _ = run(cli, capsys, "ledger", "trial-balance", "--as-of", "2026-11-11")
    assert code == 0 and out.splitlines()[-2].split() == ["total", "CNY", "CNY", "310.50", "310.50"]

    code, out, _ = run(cli, capsys, "ledger", "verify")
    assert code == 0
    assert out.splitlines() == ["entries: 3  sealed: 0  unsealed: 3", "ok"]

    code, out, _ = run(cli, capsys, "ledger", "seal")
    assert (code, out) == (0, "sealed 3 entries\n")
    code, out, _ = run(cli, capsys, "ledger", "seal")
    assert (code, out) == (0, "sealed 0 entries\n")
    code, out, _ = run(cli, capsys, "ledger", "verify")
    assert code == 0 and out.splitlines() == ["entries: 3  sealed: 3  unsealed: 0", "ok"]

    code, out, err = run(cli, capsys, "ledger", "export", "--format", "beancount")
    assert (code, err) == (0, "")
    entries, errors, _ = loader.load_string(out)
    assert errors == []
    txns = [e for e in entries if isinstance(e, data.Transaction)]
    assert [t.narration for t in txns] == ['交通违法罚款 "川A12345"', "payment p2", "支付宝结算"]
    code, out2, _ = run(cli, capsys, "ledger", "export")  # beancount is the default
    assert code == 0 and out2 == out


@pytest.mark.parametrize(
    "bad",
    [
        "2026-13-01",
        "2026-02-29",
        "2026-1-1",
        "20261111",
        "yesterday",
        "2026-11-11T00:00",
        " 2026-11-11",
        "２０２６-11-11",
    ],
)
@pytest.mark.parametrize("command", ["balances", "trial-balance"])
def test_bad_as_of_is_one_line_and_exit_2(cli, capsys, bad, command):
    assert run(cli, capsys, "db", "upgrade")[0] == 0
    code, out, err = run(cli, capsys, "ledger", command, "--as-of", bad)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("feishui: invalid date")
    assert "Traceback" not in err


def test_unknown_format_is_refused(cli, capsys):
    with pytest.raises(SystemExit) as exc:
        cli("ledger", "export", "--format", "ledger-cli")
    assert exc.value.code == 2


def test_tampering_fails_verify_and_trial_balance(cli, capsys):
    assert run(cli, capsys, "db", "upgrade")[0] == 0
    post_some()
    assert run(cli, capsys, "ledger", "seal")[0] == 0
    with runtime.get_runtime().engine.begin() as conn:  # what an attacker with file access does
        conn.execute(text("DROP TRIGGER postings_no_update"))
        conn.execute(
            text("UPDATE postings SET amount = amount + 1 WHERE entry_id = 2 AND direction = 'D'")
        )

    code, out, err = run(cli, capsys, "ledger", "verify")
    assert code == 1 and err == ""
    assert out.splitlines()[0] == "entries: 3  sealed: 3  unsealed: 0"
    assert "first: entry 2: entry 2 is invalid" in out.splitlines()[1]

    code, out, _ = run(cli, capsys, "ledger", "trial-balance")
    assert code == 1
    assert out.splitlines()[-2].split() == ["total", "CNY", "CNY", "310.51", "310.50"]
    assert out.splitlines()[-1] == "NOT BALANCED"
