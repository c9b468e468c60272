"""Payers' personal data on notices: sealed at rest, bound to the notice, hashed for look-ups.

Each value is encrypted with the PII key ring under the aad ``notice:<payment code>:<column>``,
so a ciphertext copied onto another notice or into another column does not decrypt. ID numbers
also get an HMAC (pepper derived from the secret key, never stored) to find a payer's notices.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field
from typing import Any

from clearing.config import Settings
from clearing.pii import MIN_PEPPER_BYTES, KeyRing, compact_id_number, hash_id_number

_PEPPER_LABEL = b"feishui/notices/id-number-pepper/v1"


@dataclass(frozen=True)
class PayerVault:
    """Encrypts, decrypts and hashes payers' personal data."""

    keyring: KeyRing
    pepper: bytes = field(repr=False)  # a secret: never in a repr, a log line or a traceback
    # HMAC keyed with the pepper, built once and copied per hash (keying it costs as much as
    # the hash); None when the pepper is unusable, so that hashing raises as it always did.
    _keyed: Any = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.pepper, bytes) and len(self.pepper) >= MIN_PEPPER_BYTES:
            object.__setattr__(self, "_keyed", hmac.new(self.pepper, digestmod=hashlib.sha256))

    @classmethod
    def from_settings(cls, settings: Settings) -> PayerVault:
        """The vault for these settings (``pii_keys`` and a pepper derived from ``secret_key``)."""
        keyring = KeyRing.from_setting(settings.secret("pii_keys"))
        return cls(keyring, derive_pepper(settings.secret("secret_key")))

    def seal(self, payment_code: str, column: str, value: str) -> str:
        """Encrypt ``value`` for ``column`` of the notice with ``payment_code``."""
        return self.keyring.encrypt(value, aad=_aad(payment_code, column))

    def open(self, payment_code: str, column: str, token: str) -> str:
        """Decrypt a value sealed by :meth:`seal` for the same notice and column."""
        return self.keyring.decrypt(token, aad=_aad(payment_code, column))

    def id_number_hash(self, id_number: str) -> str:
        """HMAC of a normalised ID number, for look-ups without decrypting
        (:func:`clearing.pii.hash_id_number`)."""
        if self._keyed is None:
            return hash_id_number(id_number, self.pepper)
        mac = self._keyed.copy()
        mac.update(compact_id_number(id_number).encode("utf-8"))
        return mac.hexdigest()


def derive_pepper(secret_key: str) -> bytes:
    """A 32-byte pepper for ID-number hashes, derived from (never equal to) the secret key."""
    return hmac.new(secret_key.encode("utf-8"), _PEPPER_LABEL, hashlib.sha256).digest()


def _aad(payment_code: str, column: str) -> bytes:
    return f"notice:{payment_code}:{column}".encode("ascii")
