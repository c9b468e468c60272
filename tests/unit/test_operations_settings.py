"""The settings added for operations: read from the environment, and the e-seal's retired
public keys accepted by receipt verification."""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from clearing.config import Settings
from notices.receipts import ESeal, PublishedKeys


def pem(key: Ed25519PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def test_operations_settings_come_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("FEISHUI_API_RATE", "600/1m")
    monkeypatch.setenv("FEISHUI_LOG_LEVEL", "WARNING")
    monkeypatch.setenv("FEISHUI_LOG_JSON", "false")
    settings = Settings(var_dir=tmp_path)
    assert (settings.api_rate, settings.log_level, settings.log_json) == (
        "600/1m",
        "WARNING",
        False,
    )
    assert Settings(var_dir=tmp_path, _env_file=None).eseal_old_public_keys == ""


def test_receipts_signed_with_a_retired_eseal_key_still_verify(tmp_path):
    old, new = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    old_seal = ESeal.from_pem(pem(old))
    settings = Settings(
        var_dir=tmp_path,
        env="test",
        eseal_key=pem(new),
        eseal_old_public_keys=old_seal.public_pem(),
    )
    keys = PublishedKeys.from_settings(settings)
    assert keys.current == ESeal.from_pem(pem(new)).key_id
    assert old_seal.key_id in keys and len(keys) == 2
    without = PublishedKeys.from_settings(
        Settings(var_dir=tmp_path, env="test", eseal_key=pem(new))
    )
    assert old_seal.key_id not in without
