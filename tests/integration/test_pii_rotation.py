"""Rotating the personal-data key on SQLite and PostgreSQL: after the job, every payer token
is under the new key and every plaintext is unchanged."""

from __future__ import annotations

from sqlalchemy import select

from clearing.db import transaction
from clearing.pii import KeyRing
from clearing.pii_rotation import reencrypt_all
from notices.models import Notice
from notices.privacy import PayerVault, derive_pepper
from notices.service import create_notice
from tests.notice_factories import TODAY, department, fine, request, seed_catalogue, tuition

K1 = KeyRing.generate_setting("k1")
K2 = KeyRing.generate_setting("k2")


def vault(setting: str) -> PayerVault:
    return PayerVault(KeyRing.from_setting(setting), derive_pepper("s" * 32))


def plaintexts(session, v: PayerVault) -> dict[int, tuple]:
    out = {}
    for n in session.scalars(select(Notice).order_by(Notice.id)):
        code = n.payment_code
        out[n.id] = (
            v.open(code, "payer_name", n.payer_name_enc),
            n.payer_id_number_enc and v.open(code, "payer_id_number", n.payer_id_number_enc),
            n.payer_phone_enc and v.open(code, "payer_phone", n.payer_phone_enc),
        )
    return out


def key_ids(session) -> set[str]:
    tokens = session.execute(
        select(Notice.payer_name_enc, Notice.payer_id_number_enc, Notice.payer_phone_enc)
    ).all()
    return {t.split(".")[1] for row in tokens for t in row if t}


def test_rotate_k1_to_k2(db):
    old = vault(K1)
    with transaction(db.sessions) as s:
        seed_catalogue(s)
        who, _ = department(s)
        for i in range(5):
            create_notice(s, who, request(fine(f"R-{i}")), old, today=TODAY)
        school, _ = department(s, "成都七中", "school")
        create_notice(s, school, request(tuition("S-1")), old, today=TODAY)  # no ID, no phone
    with transaction(db.sessions) as s:
        before = plaintexts(s, old)
        updated_at = dict(s.execute(select(Notice.id, Notice.updated_at)).all())
    assert key_ids_of(db) == {"k1"}

    rotated = vault(f"{K2},{K1}")
    assert reencrypt_all(db.sessions, rotated.keyring, batch=2) == 6
    assert key_ids_of(db) == {"k2"}
    with transaction(db.sessions) as s:
        assert plaintexts(s, rotated) == before
        assert plaintexts(s, vault(K2)) == before  # k1 can now leave the ring
        assert dict(s.execute(select(Notice.id, Notice.updated_at)).all()) == updated_at
    assert reencrypt_all(db.sessions, rotated.keyring) == 0  # idempotent


def key_ids_of(db) -> set[str]:
    with transaction(db.sessions) as s:
        return key_ids(s)


def test_webhook_secrets_are_rotated_too(db, tmp_path):
    from clearing.config import Settings
    from notices import events
    from notices.event_models import DepartmentWebhook

    settings = Settings(var_dir=tmp_path, env="test", pii_keys=K1, secret_key="s" * 32)
    with transaction(db.sessions) as s:
        department(s)
        secret = events.set_webhook(s, "成都交警", "https://hooks.example.cn/x", settings=settings)
    ring = KeyRing.from_setting(f"{K2},{K1}")
    assert reencrypt_all(db.sessions, ring) == 0  # no notices; the secret is done first
    with transaction(db.sessions) as s:
        (hook,) = s.scalars(select(DepartmentWebhook))
        assert hook.secret_enc.startswith("v1.k2.")
        aad = f"department_webhook:{hook.department_id}:secret".encode()
        assert KeyRing.from_setting(K2).decrypt(hook.secret_enc, aad=aad) == secret


def test_the_cli_command_runs_the_job_with_the_process_settings(tmp_path, monkeypatch, capsys):
    from api import runtime
    from api.cli import main
    from clearing import config

    monkeypatch.setenv("FEISHUI_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("FEISHUI_SECRET_KEY", "s" * 32)
    for name in ("FEISHUI_DATABASE_URL", "FEISHUI_ENV", "FEISHUI_REDIS_URL"):
        monkeypatch.delenv(name, raising=False)

    def fresh(pii_keys: str):
        monkeypatch.setenv("FEISHUI_PII_KEYS", pii_keys)
        config.get_settings.cache_clear()
        runtime.get_runtime.cache_clear()

    fresh(K1)
    assert main(["db", "upgrade"]) == 0
    with transaction(runtime.get_runtime().sessions) as s:
        seed_catalogue(s)
        who, _ = department(s)
        create_notice(s, who, request(fine()), vault(K1), today=TODAY)
    runtime.get_runtime().engine.dispose()
    fresh(f"{K2},{K1}")
    try:
        capsys.readouterr()
        assert main(["db", "reencrypt-pii", "--batch", "10"]) == 0
        assert "re-encrypted 1 notice(s)" in capsys.readouterr().out
        with transaction(runtime.get_runtime().sessions) as s:
            assert key_ids(s) == {"k2"}
    finally:
        runtime.get_runtime().engine.dispose()
        config.get_settings.cache_clear()
        runtime.get_runtime.cache_clear()
