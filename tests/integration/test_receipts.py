"""Issuing, storing and finding receipts on SQLite and PostgreSQL; the append-only backstop."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from api import cli
from api.commands import receipts as receipt_commands
from clearing.config import Settings
from clearing.errors import NotFound, ValidationError
from clearing.runtime import Runtime
from notices.receipt_models import Receipt
from notices.receipts import (
    CHECK_ALPHABET,
    ESeal,
    PublishedKeys,
    canonical_bytes,
    find_receipt,
    issue_receipt,
    payload_digest,
    receipt_json,
    verify_receipt,
)
from tests.receipt_factories import FULL_NAME, MASKED_NAME, NOW, paid_notice

ESEAL = ESeal(Ed25519PrivateKey.generate())
KEYS = PublishedKeys({ESEAL.key_id: ESEAL.public_key})


def test_issue_stores_a_signed_receipt(db) -> None:
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session, late_fee=150, lines=((1, 20_000), (2, 5_050)))
        receipt = issue_receipt(session, notice, attempt, ESEAL, NOW)
        number, check = receipt.number, receipt.check_code
    with db.session() as session:
        stored = session.scalars(select(Receipt)).one()
        assert stored.number == number and len(number) == 20
        assert number.startswith("FS20261128") and number[2:].isdigit()
        assert len(check) == 6 and set(check) <= set(CHECK_ALPHABET)
        assert stored.key_id == ESEAL.key_id
        assert stored.payload_sha256 == payload_digest(stored.payload)
        assert verify_receipt(stored, KEYS).ok
        doc = stored.payload
        assert doc["total"] == {"fen": 30_250, "display": "302.50"}
        assert doc["principal"]["fen"] == 30_100 and doc["late_fee"]["fen"] == 150
        assert [i["amount"]["fen"] for i in doc["items"]] == [20_000, 10_100]
        assert doc["paid_at"] == "2026-11-28T10:30:00+08:00"
        assert doc["payer"] == {"name_masked": MASKED_NAME}
        assert FULL_NAME not in canonical_bytes(doc).decode()
        assert doc["payment"]["gateway"] == "alipay" and doc["payment"]["channel"] == "h5"


def test_issue_twice_gives_one_receipt(db) -> None:
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session)
        first = issue_receipt(session, notice, attempt, ESEAL, NOW)
    with db.session() as session, session.begin():
        notice, attempt = (
            session.get(type(notice), notice.id),
            session.get(type(attempt), attempt.id),
        )
        again = issue_receipt(session, notice, attempt, ESEAL, datetime.now(UTC))
        assert again.id == first.id and again.number == first.number
        assert again.signature == first.signature
        assert session.scalar(select(func.count()).select_from(Receipt)) == 1


def test_the_database_refuses_a_second_receipt_for_a_notice(db) -> None:
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session)
        first = issue_receipt(session, notice, attempt, ESEAL, NOW)
        row = {
            c: getattr(first, c)
            for c in ("notice_id", "payload", "payload_sha256", "signature", "key_id", "issued_at")
        }
    with db.session() as session, pytest.raises(DBAPIError), session.begin():
        session.add(
            Receipt(
                number="FS202611280000000001", check_code="ABCDEF", attempt_id=attempt.id, **row
            )
        )
        session.flush()


def test_only_the_succeeded_attempt_of_the_notice_gets_a_receipt(db) -> None:
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session, suffix="2")
        other, _ = paid_notice(session, suffix="3")
        with pytest.raises(ValidationError, match="not for notice"):
            issue_receipt(session, other, attempt, ESEAL, NOW)
        attempt.state = "duplicate"
        with pytest.raises(ValidationError, match="duplicate"):
            issue_receipt(session, notice, attempt, ESEAL, NOW)


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE receipts SET check_code = 'AAAAAA'",
        "UPDATE receipts SET payload_sha256 = 'x'",
        "DELETE FROM receipts",
    ],
)
def test_receipts_are_append_only(db, statement) -> None:
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session)
        issue_receipt(session, notice, attempt, ESEAL, NOW)
    with db.engine.connect() as conn:
        with pytest.raises(DBAPIError, match="append-only"):
            conn.execute(text(statement))
        conn.rollback()
    with db.session() as session:
        stored = session.scalars(select(Receipt)).one()
        assert stored.check_code != "AAAAAA" and verify_receipt(stored, KEYS).ok


def test_find_by_number_and_check_code(db) -> None:
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session)
        receipt = issue_receipt(session, notice, attempt, ESEAL, NOW)
        number, check = receipt.number, receipt.check_code
    with db.session() as session:
        assert find_receipt(session, number, check).number == number
        assert find_receipt(session, f" {number} ", check.lower()).number == number
        wrong = "".join("2" if c != "2" else "3" for c in check)
        messages = set()
        for n, c in (
            (number, wrong),
            (number, ""),
            (number, None),
            (number, check[:5]),
            ("FS202611289999999999", check),
            ("nonsense", check),
        ):
            with pytest.raises(NotFound) as caught:
                find_receipt(session, n, c)
            messages.add(caught.value.detail)
        assert len(messages) == 1  # the same answer whether or not the number exists


def _cli_runtime(db, tmp_path, monkeypatch) -> Settings:
    settings = Settings(env="test", var_dir=tmp_path, public_base_url="https://pay.example.cn")
    monkeypatch.setattr(
        receipt_commands, "get_runtime", lambda: Runtime(settings, db.engine, db.sessions)
    )
    return settings


def test_cli_show(db, tmp_path, monkeypatch, capsys) -> None:
    settings = _cli_runtime(db, tmp_path, monkeypatch)
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session)
        receipt = issue_receipt(session, notice, attempt, ESeal.from_settings(settings), NOW)
        number, check = receipt.number, receipt.check_code
    assert cli.main(["receipt", "show", number, "--check", check]) == 0
    out = capsys.readouterr().out
    assert number in out and MASKED_NAME in out and "200.00" in out
    assert f"https://pay.example.cn/receipts/{number}?check={check}" in out
    assert cli.main(["receipt", "show", number, "--check", check, "--json"]) == 0
    published = json.loads(capsys.readouterr().out)
    with db.session() as session:
        assert published == receipt_json(find_receipt(session, number, check))
    pdf = tmp_path / "r.pdf"
    assert cli.main(["receipt", "show", number, "--check", check, "--pdf", str(pdf)]) == 0
    assert pdf.read_bytes().startswith(b"%PDF-")
    assert cli.main(["receipt", "show", number, "--check", "ZZZZZZ"]) == 2
    assert "no receipt" in capsys.readouterr().err
