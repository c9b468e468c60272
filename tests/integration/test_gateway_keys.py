"""Gateway keys on disk, and the registry that builds adapters from configuration."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from clearing.config import Settings
from clearing.errors import ConfigurationError
from gateways import keys, signing
from gateways.alipay.adapter import AlipayGateway
from gateways.nonces import MemoryNonceStore
from gateways.protocol import PaymentGateway
from gateways.registry import build_gateways
from tests.e2e.gateway_harness import generate_pems, install_keys


@pytest.fixture(scope="module")
def pems() -> dict[str, dict[str, bytes]]:
    return generate_pems()


def test_development_keys_are_generated_once_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, env="development")
    public = keys.public_key(settings, "alipay", "gateway")
    private = keys.private_key(settings, "alipay", "gateway")
    assert signing.verify(public, b"x", signing.sign(private, b"x"))
    assert private.key_size == 2048
    directory = tmp_path / "keys" / "alipay"
    for name in ("gateway_private.pem", "gateway_public.pem"):
        assert stat.S_IMODE((directory / name).stat().st_mode) == 0o600
    assert not (directory / "merchant_private.pem").exists()  # generated only when asked for
    again = keys.public_key(settings, "alipay", "gateway")
    assert signing.key_serial(again) == signing.key_serial(public)


def test_api_v3_key_is_32_bytes_and_stable(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path)
    key = keys.api_v3_key(settings)
    assert len(key) == 32 and keys.api_v3_key(settings) == key
    configured = Settings(var_dir=tmp_path, wechatpay_api_v3_key="k" * 32)
    assert keys.api_v3_key(configured) == b"k" * 32
    with pytest.raises(ConfigurationError):
        keys.api_v3_key(Settings(var_dir=tmp_path, wechatpay_api_v3_key="short"))


def test_production_never_generates_keys(tmp_path: Path) -> None:
    settings = Settings(var_dir=tmp_path, env="production")
    with pytest.raises(ConfigurationError, match=r"merchant_private\.pem"):
        keys.private_key(settings, "unionpay", "merchant")
    with pytest.raises(ConfigurationError):
        keys.api_v3_key(settings)
    assert not (tmp_path / "keys" / "unionpay").exists()


def test_registry_builds_every_gateway_pointing_at_the_simulators(
    tmp_path: Path, pems: dict[str, dict[str, bytes]]
) -> None:
    install_keys(tmp_path, pems)
    settings = Settings(var_dir=tmp_path, public_base_url="http://127.0.0.1:8000")
    gateways = build_gateways(settings, nonce_store=MemoryNonceStore())
    assert sorted(gateways) == ["alipay", "unionpay", "wechatpay"]
    for name, gateway in gateways.items():
        assert isinstance(gateway, PaymentGateway) and gateway.name == name
        assert gateway.base_url == f"http://127.0.0.1:8000/sim/{name}"  # type: ignore[attr-defined]


def test_registry_follows_configuration(tmp_path: Path, pems: dict[str, dict[str, bytes]]) -> None:
    install_keys(tmp_path, pems)
    settings = Settings(
        var_dir=tmp_path,
        gateway_options={
            "alipay": {"base_url": "https://openapi.alipay.com/", "merchant_id": "2021004"},
            "unionpay": {"enabled": "false"},
        },
    )
    gateways = build_gateways(settings, nonce_store=MemoryNonceStore())
    assert sorted(gateways) == ["alipay", "wechatpay"]
    alipay = gateways["alipay"]
    assert isinstance(alipay, AlipayGateway)
    assert (alipay.endpoint, alipay.app_id) == ("https://openapi.alipay.com/gateway.do", "2021004")
