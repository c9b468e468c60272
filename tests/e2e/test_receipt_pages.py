"""The public receipt pages, the verify endpoint, the published key and the offline CLI."""

from __future__ import annotations

import copy
import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pypdf import PdfReader

from api import cli
from api.routers import receipts as receipts_router
from clearing.config import Settings
from clearing.runtime import Runtime
from notices.receipts import ESeal, issue_receipt, key_id_for
from tests.receipt_factories import FULL_NAME, MASKED_NAME, NOW, paid_notice

BASE = "https://pay.example.cn"


@pytest.fixture
def site(db, tmp_path) -> Iterator[tuple[TestClient, str, str, Settings]]:
    settings = Settings(env="test", var_dir=tmp_path, public_base_url=BASE)
    app = FastAPI()
    app.state.runtime = Runtime(settings, db.engine, db.sessions)
    app.include_router(receipts_router.router)
    with db.session() as session, session.begin():
        notice, attempt = paid_notice(session, late_fee=150, lines=((1, 20_000), (2, 5_050)))
        receipt = issue_receipt(session, notice, attempt, ESeal.from_settings(settings), NOW)
        number, check = receipt.number, receipt.check_code
    with TestClient(app) as client:
        yield client, number, check, settings


def test_page_shows_the_receipt_with_the_masked_name_only(site) -> None:
    client, number, check, _ = site
    page = client.get(f"/receipts/{number}", params={"check": check})
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    html = page.text
    assert MASKED_NAME in html and FULL_NAME not in html
    assert number in html and "302.50" in html and "200.00" in html and "1.50" in html
    assert "✓ 电子签章有效 / e-seal valid" in html
    assert "2026-11-28T10:30:00+08:00" in html
    assert f'href="{number}.pdf?check={check}"' in html
    assert f'href="{number}.json?check={check}"' in html


@pytest.mark.parametrize("suffix", ["", ".json", ".pdf"])
def test_a_wrong_or_missing_check_code_is_a_404_that_reveals_nothing(site, suffix) -> None:
    client, number, check, _ = site
    wrong = "".join("2" if c != "2" else "3" for c in check)
    answers = [
        client.get(f"/receipts/{number}{suffix}", params={"check": wrong}),
        client.get(f"/receipts/{number}{suffix}"),
        client.get(f"/receipts/FS202611289999999999{suffix}", params={"check": check}),
    ]
    assert {a.status_code for a in answers} == {404}
    assert len({a.text for a in answers}) == 1
    assert number not in answers[0].text


def test_json_verifies_and_tampering_is_detected(site) -> None:
    client, number, check, _ = site
    published = client.get(f"/receipts/{number}.json", params={"check": check}).json()
    assert set(published) == {"receipt", "signature", "key_id", "algorithm"}
    assert published["algorithm"] == "Ed25519"
    assert published["receipt"]["payer"] == {"name_masked": MASKED_NAME}
    ok = client.post("/v1/receipts/verify", json=published).json()
    assert ok["valid"] is True and ok["number"] == number and ok["reason"] == "e-seal valid"
    for path, value in (
        (("total", "fen"), 30_251),
        (("payer", "name_masked"), "李*四"),
        (("paid_at",), "2026-11-27T10:30:00+08:00"),
        (("items", 0, "quantity"), 2),
    ):
        tampered = copy.deepcopy(published)
        target = tampered["receipt"]
        for step in path[:-1]:
            target = target[step]
        target[path[-1]] = value
        answer = client.post("/v1/receipts/verify", json=tampered)
        assert answer.status_code == 200
        assert answer.json()["valid"] is False and answer.json()["number"] == number
    garbage = client.post("/v1/receipts/verify", json={"hello": "world"}).json()
    assert garbage["valid"] is False


def test_pdf_is_a_pdf_with_the_verification_link(site) -> None:
    client, number, check, _ = site
    answer = client.get(f"/receipts/{number}.pdf", params={"check": check})
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/pdf"
    assert answer.content.startswith(b"%PDF-")
    reader = PdfReader(io.BytesIO(answer.content))
    text = "".join("".join(p.extract_text().replace("\x00", "").split()) for p in reader.pages)
    assert number in text and check in text and MASKED_NAME in text
    assert FULL_NAME not in text
    assert f"{BASE}/receipts/{number}?check={check}" in text


def test_well_known_key_matches_the_signing_key(site) -> None:
    client, number, check, settings = site
    eseal = ESeal.from_settings(settings)
    pem = client.get("/.well-known/feishui-eseal.pem")
    assert pem.status_code == 200 and pem.text == eseal.public_pem()
    key = serialization.load_pem_public_key(pem.content)
    published = client.get(f"/receipts/{number}.json", params={"check": check}).json()
    assert key_id_for(key) == published["key_id"] == pem.headers["x-key-id"]
    by_id = client.get(f"/.well-known/feishui-eseal/{published['key_id']}.pem")
    assert by_id.text == pem.text
    assert client.get("/.well-known/feishui-eseal/0000000000000000.pem").status_code == 404


def test_cli_verifies_a_receipt_file_offline(site, tmp_path: Path, capsys) -> None:
    client, number, check, _ = site
    published = client.get(f"/receipts/{number}.json", params={"check": check}).json()
    key = tmp_path / "eseal.pem"
    key.write_text(client.get("/.well-known/feishui-eseal.pem").text)
    good = tmp_path / "receipt.json"
    good.write_text(json.dumps(published, ensure_ascii=False, indent=2), encoding="utf-8")
    assert cli.main(["receipt", "verify", str(good), "--public-key", str(key)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"valid: receipt {number} issued by ")

    published["receipt"]["total"]["fen"] += 1
    bad = tmp_path / "tampered.json"
    bad.write_text(json.dumps(published, ensure_ascii=False), encoding="utf-8")
    assert cli.main(["receipt", "verify", str(bad), "--public-key", str(key)]) == 1
    assert capsys.readouterr().out.startswith("INVALID: ")

    floaty = tmp_path / "float.json"
    floaty.write_text(good.read_text().replace('"fen": 30250', '"fen": 30250.0'))
    assert cli.main(["receipt", "verify", str(floaty), "--public-key", str(key)]) == 1
    assert (
        cli.main(["receipt", "verify", str(tmp_path / "missing.json"), "--public-key", str(key)])
        == 1
    )

    other = tmp_path / "other.pem"
    other.write_text(ESeal.from_pem(_fresh_key_pem()).public_pem())
    assert cli.main(["receipt", "verify", str(good), "--public-key", str(other)]) == 1
    assert "unknown e-seal key id" in capsys.readouterr().out


def _fresh_key_pem() -> str:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return (
        Ed25519PrivateKey.generate()
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )
