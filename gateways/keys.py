"""Where gateway keys live: ``<var_dir>/keys/<gateway>/``.

Each gateway directory holds two RSA key pairs, ``merchant_*.pem`` (ours) and ``gateway_*.pem``
(the gateway's, used by its simulator). Each side reads its own private key and only the other
side's *public* key. In development a missing pair is generated on first use (2048-bit, mode
0600); in production a missing file is a configuration error: install our private key and the
gateway's public key (from its merchant portal) under these names.
"""

from __future__ import annotations

import base64
import fcntl
import os
import secrets
from pathlib import Path
from typing import Literal

from clearing.config import Settings
from clearing.errors import ConfigurationError
from gateways import signing

Side = Literal["merchant", "gateway"]


def key_dir(settings: Settings, gateway: str) -> Path:
    return settings.var_dir / "keys" / gateway


def private_key(settings: Settings, gateway: str, side: Side) -> signing.PrivateKey:
    """``side``'s private key for ``gateway`` (generated in development when missing)."""
    path = _ensure(settings, gateway, f"{side}_private.pem", side)
    return signing.load_private_key(path.read_bytes())


def public_key(settings: Settings, gateway: str, side: Side) -> signing.PublicKey:
    """``side``'s public key for ``gateway`` (generated in development when missing)."""
    path = _ensure(settings, gateway, f"{side}_public.pem", side)
    return signing.load_public_key(path.read_bytes())


def api_v3_key(settings: Settings) -> bytes:
    """The WeChat Pay API v3 key (32 bytes), shared by the merchant and the gateway."""
    if settings.wechatpay_api_v3_key:
        key = settings.wechatpay_api_v3_key.encode("utf-8")
    else:
        path = _ensure(settings, "wechatpay", "api_v3.key", None)
        key = path.read_bytes().strip()
    if len(key) != 32:
        raise ConfigurationError(
            "the WeChat Pay API v3 key must be 32 bytes", field="wechatpay_api_v3_key"
        )
    return key


def _ensure(settings: Settings, gateway: str, filename: str, side: Side | None) -> Path:
    path = key_dir(settings, gateway) / filename
    if path.exists():
        return path
    if settings.env == "production":
        raise ConfigurationError(f"gateway key file {path} is missing", field="var_dir")
    path.parent.mkdir(parents=True, exist_ok=True)
    with _locked(path.parent):
        if not path.exists():
            _generate(path.parent, side)
    return path


class _locked:
    """An exclusive ``flock`` on the key directory, so two processes never race to generate."""

    def __init__(self, directory: Path) -> None:
        self._fd = os.open(directory / ".lock", os.O_CREAT | os.O_RDWR, 0o600)

    def __enter__(self) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self._fd, fcntl.LOCK_UN)
        os.close(self._fd)


def _generate(directory: Path, side: Side | None) -> None:
    if side is None:
        _write(directory / "api_v3.key", base64.b32encode(secrets.token_bytes(20)))
        return
    key = signing.generate_private_key()
    _write(directory / f"{side}_public.pem", signing.public_key_pem(key.public_key()))
    _write(directory / f"{side}_private.pem", signing.private_key_pem(key))


def _write(path: Path, data: bytes) -> None:
    """Write ``data`` with mode 0600, atomically (readers never see a half-written key)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
