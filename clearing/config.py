"""Settings, read from the environment with the prefix ``FEISHUI_`` (pydantic-settings).

Development runs on the embedded default (a SQLite file under ``./var/``, jobs in-process) and
generates its own development secrets under ``./var/dev-secrets.json`` so that a fresh clone works
with no configuration. Production (``FEISHUI_ENV=production``) refuses to start when a secret is
missing, empty, or one of those generated development values, and names the setting.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import secrets
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from clearing.errors import ConfigurationError

#: Secrets the process needs; each is checked in production.
SECRET_SETTINGS = ("secret_key", "pii_keys", "eseal_key")


class Settings(BaseSettings):
    """All of feishui's configuration. See the README's configuration table."""

    model_config = SettingsConfigDict(env_prefix="FEISHUI_", extra="ignore")

    env: Literal["development", "test", "production"] = "development"
    var_dir: Path = Path("var")
    database_url: str = ""
    redis_url: str | None = None
    #: Signs CSRF tokens and session cookies.
    secret_key: str = ""
    #: Key ring for personal data: "k2:<base64 32 bytes>,k1:<...>", the first one encrypts.
    pii_keys: str = ""
    #: PEM (PKCS#8) of the Ed25519 e-seal private key, or a path to it.
    eseal_key: str = ""
    region_code: str = "510000"
    public_base_url: str = "http://127.0.0.1:8000"
    sql_echo: bool = False
    #: Per-gateway options (alipay, wechatpay, unionpay): base_url (default
    #: ``{public_base_url}/sim/<name>``), merchant_id, appid, fee_rate. See docs/gateways.md.
    gateway_options: dict[str, dict[str, str]] = Field(default_factory=dict)
    #: WeChat Pay API v3 key (32 ASCII characters); development generates one under var/keys/.
    wechatpay_api_v3_key: str = ""
    #: PEM text of retired e-seal public keys (one or more blocks): receipts they signed still
    #: verify after the e-seal key is rotated. Public keys, not secrets.
    eseal_old_public_keys: str = ""
    #: Per-API-key request rate, "<requests>/<period>" such as "100/1s" or "600/1m"; empty
    #: disables the limit. Each API process limits on its own.
    api_rate: str = "100/1s"
    #: Root log level, and JSON lines (true) or plain text (false) on stderr.
    log_level: str = "INFO"
    log_json: bool = True
    dev_secrets: dict[str, str] = Field(default_factory=dict, exclude=True)

    def effective_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file under ``var_dir``."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.var_dir / 'feishui.db').as_posix()}"

    def secret(self, name: str) -> str:
        """A secret's value: the setting, or in development a generated, persisted one."""
        value = getattr(self, name)
        if value:
            return value
        if self.env == "production":
            raise ConfigurationError(f"FEISHUI_{name.upper()} is not set", field=name)
        return self._dev_secret(name)

    def _dev_secret(self, name: str) -> str:
        path = self.var_dir / "dev-secrets.json"
        stored = json.loads(path.read_text()) if path.exists() else {}
        if name in stored:
            return stored[name]
        # Why the lock and the atomic replace: several processes (gunicorn workers) start at
        # once; without them one reads a half-written file, or two generate different secrets.
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.with_suffix(".lock"), os.O_CREAT | os.O_RDWR, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            stored = json.loads(path.read_text()) if path.exists() else {}
            if name not in stored:
                stored[name] = _generate(name)
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(stored, indent=2))
                os.chmod(tmp, 0o600)
                os.replace(tmp, path)
            return stored[name]
        finally:
            os.close(fd)

    def check_production(self) -> None:
        """Refuse unsafe production settings, naming each one."""
        if self.env != "production":
            return
        problems = [
            f"FEISHUI_{n.upper()} is missing or empty"
            for n in SECRET_SETTINGS
            if not getattr(self, n).strip()
        ]
        problems += [
            f"FEISHUI_{n.upper()} is a development default"
            for n in SECRET_SETTINGS
            if getattr(self, n) and getattr(self, n) in _known_dev_values(self)
        ]
        if not self.database_url:
            problems.append("FEISHUI_DATABASE_URL is not set (production does not use SQLite)")
        if problems:
            raise ConfigurationError("refusing to start in production: " + "; ".join(problems))


def _generate(name: str) -> str:
    if name == "pii_keys":
        return "dev1:" + base64.b64encode(secrets.token_bytes(32)).decode()
    if name == "eseal_key":
        from cryptography.hazmat.primitives import serialization
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
    return secrets.token_urlsafe(32)


def _known_dev_values(settings: Settings) -> set[str]:
    path = settings.var_dir / "dev-secrets.json"
    values = set(json.loads(path.read_text()).values()) if path.exists() else set()
    return values | {"change-me", "changeme", "secret", "dev", "test"}


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own ``Settings``)."""
    return Settings()
