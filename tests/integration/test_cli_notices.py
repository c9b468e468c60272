"""``feishui catalogue|department|code`` end to end on SQLite under a temporary var dir."""

from __future__ import annotations

import json

import pytest

from notices.codes import generate_code


@pytest.fixture
def cli(embedded_cli, capsys):
    """``cli(*argv)`` runs ``feishui`` in-process; returns ``(exit code, stdout, stderr)``."""
    assert embedded_cli("db", "upgrade") == 0

    def run(*argv):
        capsys.readouterr()
        code = embedded_cli(*argv)
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_catalogue_seed_list_add_disable(cli):
    assert cli("catalogue", "seed")[1].startswith("catalogue: 11 added")
    assert "0 added, 11 already present" in cli("catalogue", "seed")[1]
    code, out, _ = cli(
        "catalogue",
        "add",
        "SF-RESIDENCE",
        "--name-zh",
        "居住证工本费",
        "--name-en",
        "Residence permit card",
        "--kind",
        "service_fee",
        "--amount",
        "20.00",
        "--shares",
        "510100-city=10000",
        "--revenue-code",
        "103020211",
        "--budget-level",
        "city",
        "--for-kinds",
        "agency",
        "--late-fee",
        "daily:5:1000",
    )
    assert code == 0, out
    assert cli("catalogue", "disable", "TF-PARKING")[0] == 0
    items = {i["code"]: i for i in json.loads(cli("catalogue", "list", "--json")[1])}
    assert "TF-PARKING" not in items and items["SF-RESIDENCE"]["amount"] == "20.00"
    assert items["SF-RESIDENCE"]["late_fee_rule"]["basis_points_per_day"] == 5
    assert "[disabled]" in cli("catalogue", "list", "--all")[1]


def test_catalogue_add_refuses_bad_items(cli):
    base = [
        "catalogue",
        "add",
        "SF-X",
        "--name-zh",
        "x",
        "--name-en",
        "x",
        "--kind",
        "service_fee",
        "--amount",
        "20.00",
        "--revenue-code",
        "103020211",
        "--budget-level",
        "city",
        "--for-kinds",
        "agency",
    ]
    code, _, err = cli(*base, "--shares", "510100-city=9000")
    assert code == 2 and "10000" in err
    assert cli(*base, "--shares", "510100-city=10000", "--late-fee", "weekly")[0] == 2
    assert cli("catalogue", "disable", "NOPE")[0] == 2


def test_department_keys_are_printed_once_and_revocable(cli):
    code, out, _ = cli(
        "department",
        "create",
        "四川大学",
        "--region",
        "510100",
        "--kind",
        "school",
        "--scopes",
        "notices:read",
    )
    assert code == 0 and "fs_live_" in out and "notices:read" in out
    prefix = next(line.split()[-1] for line in out.splitlines() if line.startswith("key prefix"))
    assert cli("department", "add-key", "四川大学")[0] == 0
    assert cli("department", "revoke-key", prefix)[1] == f"API key {prefix} revoked\n"
    assert "四川大学" in cli("department", "list")[1]
    assert cli("department", "create", "四川大学", "--region", "510100")[0] == 2
    assert cli("department", "create", "X", "--region", "51")[0] == 2
    assert cli("department", "revoke-key", "00000000")[0] == 2


def test_code_check(cli):
    good = generate_code("510100", 2026)
    code, out, _ = cli("code", "check", good)
    assert code == 0 and out.startswith("valid: 5101 0026")
    typo = good[:-1] + str((int(good[-1]) + 1) % 10)
    code, out, _ = cli("code", "check", typo)
    assert code == 1 and out.startswith("invalid: check digit")
    assert cli("code", "check", "123")[1].startswith("invalid: payment code must be 20 digits")
