"""Personal data: ID numbers and names encrypted at rest, masked for display.

Encryption is AES-256-GCM with a key ring so keys can be rotated: new data is encrypted under
the primary key, old tokens stay readable under any key still in the ring, and
:meth:`KeyRing.needs_rotation` finds tokens to re-encrypt. Tokens look like::

    v1.<key_id>.<b64url nonce>.<b64url ciphertext+tag>

Pass ``aad`` (e.g. ``b"payer:42:id_number"``) to bind a token to its row and column, so a
ciphertext copied to another record fails to decrypt.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hashlib
import hmac
import os
import re
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from stdnum.cn import ric

from clearing.errors import ConfigurationError, FeishuiError, ValidationError

TOKEN_VERSION = "v1"  # noqa: S105 - a format tag, not a secret
KEY_BYTES = 32
NONCE_BYTES = 12
MIN_PEPPER_BYTES = 16
_KEY_ID = re.compile(r"[A-Za-z0-9_-]{1,32}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_ID_NUMBER = re.compile(r"[0-9]{17}[0-9X]")


class PiiError(FeishuiError):
    """Encrypted personal data cannot be read (unknown key, tampering, wrong aad)."""

    type = "pii-error"
    status = 500


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _b64url_encode(data: bytes) -> str:
    # base64.urlsafe_b64encode, without its two Python layers: this runs twice per sealed value.
    return binascii.b2a_base64(data, newline=False).translate(_URLSAFE).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    if not _B64URL.fullmatch(text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _decode_key(key_id: str, text: str) -> bytes:
    """Decode a standard or URL-safe base64 key; raise ConfigurationError (never echo it)."""
    std = text.strip().replace("-", "+").replace("_", "/")
    try:
        key = base64.b64decode(std + "=" * (-len(std) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigurationError(f"PII key {key_id!r} is not valid base64") from None
    if len(key) != KEY_BYTES:
        raise ConfigurationError(f"PII key {key_id!r} must be {KEY_BYTES} bytes")
    return key


class KeyRing:
    """AES-256-GCM keys by id; encrypts under the primary key, decrypts under any."""

    def __init__(self, keys: dict[str, bytes], primary: str) -> None:
        if not keys:
            raise ConfigurationError("PII key ring is empty")
        for key_id, key in keys.items():
            if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError("PII key ids must be 1-32 of [A-Za-z0-9_-]")
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ConfigurationError(f"PII key {key_id!r} must be {KEY_BYTES} bytes")
        if primary not in keys:
            raise ConfigurationError(f"primary PII key {primary!r} is not in the ring")
        self._keys = dict(keys)
        # One cipher per key, built once: AESGCM is stateless and safe to share across threads.
        self._ciphers = {key_id: AESGCM(key) for key_id, key in keys.items()}
        self.primary = primary

    def __repr__(self) -> str:
        return f"KeyRing(key_ids={list(self._keys)!r}, primary={self.primary!r})"

    @property
    def key_ids(self) -> tuple[str, ...]:
        """Ids of every key in the ring, primary first."""
        return (self.primary, *(k for k in self._keys if k != self.primary))

    @classmethod
    def from_setting(cls, value: str) -> KeyRing:
        """Parse ``"k2:base64key,k1:base64key"``; the first key is primary, all are readable."""
        if not isinstance(value, str) or not value.strip():
            raise ConfigurationError("PII key setting is empty")
        keys: dict[str, bytes] = {}
        for entry in value.split(","):
            key_id, sep, encoded = entry.strip().partition(":")
            key_id = key_id.strip()
            if not sep or not _KEY_ID.fullmatch(key_id):
                raise ConfigurationError("PII key setting must look like 'k2:<base64>,k1:<base64>'")
            if key_id in keys:
                raise ConfigurationError(f"PII key id {key_id!r} appears twice")
            keys[key_id] = _decode_key(key_id, encoded)
        primary = next(iter(keys))
        return cls(keys, primary)

    @staticmethod
    def generate_setting(key_id: str = "k1") -> str:
        """Return a setting entry ``"<key_id>:<base64 32 random bytes>"`` for a new key."""
        if not _KEY_ID.fullmatch(key_id):
            raise ConfigurationError("PII key ids must be 1-32 of [A-Za-z0-9_-]")
        return f"{key_id}:{base64.b64encode(AESGCM.generate_key(bit_length=256)).decode('ascii')}"

    def encrypt(self, plaintext: str, *, aad: bytes = b"") -> str:
        """Encrypt ``plaintext`` under the primary key with a fresh 12-byte random nonce."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.primary].encrypt(nonce, plaintext.encode("utf-8"), aad)
        return ".".join(
            (TOKEN_VERSION, self.primary, _b64url_encode(nonce), _b64url_encode(sealed))
        )

    def decrypt(self, token: str, *, aad: bytes = b"") -> str:
        """Return the plaintext of ``token``; raise PiiError if it cannot be authenticated."""
        key_id, nonce, sealed = self._parse(token)
        try:
            plain = self._ciphers[key_id].decrypt(nonce, sealed, aad)
        except InvalidTag:
            raise PiiError("encrypted data was tampered with or its aad does not match") from None
        return plain.decode("utf-8")

    def needs_rotation(self, token: str) -> bool:
        """Return whether ``token`` was encrypted under a key other than the primary one."""
        key_id, _, _ = self._parse(token)
        return key_id != self.primary

    def reencrypt(self, token: str, *, aad: bytes = b"") -> str:
        """Return ``token`` re-encrypted under the primary key (for rotation jobs)."""
        return self.encrypt(self.decrypt(token, aad=aad), aad=aad)

    def _parse(self, token: str) -> tuple[str, bytes, bytes]:
        parts = token.split(".") if isinstance(token, str) else []
        if len(parts) != 4 or parts[0] != TOKEN_VERSION:
            raise PiiError("encrypted data is not a v1 token")
        _, key_id, nonce_text, sealed_text = parts
        if key_id not in self._keys:
            raise PiiError(f"encrypted data uses unknown key id {key_id!r}")
        try:
            nonce, sealed = _b64url_decode(nonce_text), _b64url_decode(sealed_text)
        except (binascii.Error, ValueError):
            raise PiiError("encrypted data is not valid base64url") from None
        if len(nonce) != NONCE_BYTES or len(sealed) < 16:
            raise PiiError("encrypted data is truncated")
        return key_id, nonce, sealed


def mask_id_number(id_number: str) -> str:
    """Mask an ID number: 18+ chars keep the first 4 and last 4 ("5101**********1234").

    Shorter strings keep at most the first and last character and never reveal more than
    half of the characters.
    """
    text = id_number.strip()
    n = len(text)
    keep = 4 if n >= 18 else 1
    head = min(keep, n // 2)
    tail = min(keep, n // 2 - head)
    return text[:head] + "*" * (n - head - tail) + text[n - tail :]


def _is_wide(ch: str) -> bool:
    return unicodedata.east_asian_width(ch) in ("W", "F")


def _mask_word(word: str) -> str:
    return "*" if len(word) == 1 else word[0] + "*" * (len(word) - 1)


def mask_name(name: str) -> str:
    """Mask a personal name for display.

    Chinese names keep the first character and, from three characters on, the last:
    "张三" -> "张*", "张小三" -> "张*三", "欧阳小明" -> "欧**明"; one character -> "*".
    Other names keep the first letter of each word: "John Smith" -> "J*** S****", "Li" -> "L*".
    """
    text = name.strip()
    if not text:
        return ""
    if any(_is_wide(ch) for ch in text):
        text = "".join(text.split())
        if len(text) <= 2:
            return _mask_word(text)
        return text[0] + "*" * (len(text) - 2) + text[-1]
    return re.sub(r"\S+", lambda m: _mask_word(m.group(0)), text)


def compact_id_number(s: str) -> str:
    """An ID number without spaces or hyphens, in upper case (what is hashed and checked)."""
    return "".join(s.split()).replace("-", "").upper()


_compact_id = compact_id_number


def validate_id_number(s: str, *, field: str = "id_number") -> str:
    """Return a resident ID number normalised (no spaces, uppercase X) or raise ValidationError.

    Checks 18 characters, 17 ASCII digits, the ISO 7064 MOD 11-2 check character (computed by
    ``stdnum.cn.ric``) and the birth date. The 6-digit region code is not checked against
    stdnum's region table: that table lags new districts and would refuse genuine IDs.
    """
    if not isinstance(s, str):
        raise ValidationError("ID number must be a string", field=field)
    number = _compact_id(s)
    if len(number) != 18:
        raise ValidationError("ID number must be 18 characters", field=field)
    if not _ID_NUMBER.fullmatch(number):
        raise ValidationError("ID number must be 17 digits and a digit or X", field=field)
    if ric.calc_check_digit(number) != number[-1]:
        raise ValidationError(
            "ID number check character does not match: a character was probably mistyped",
            field=field,
        )
    if not _is_calendar_date(number[6:10], number[10:12], number[12:14]):
        raise ValidationError("ID number contains an invalid birth date", field=field)
    return number


def _is_calendar_date(year: str, month: str, day: str) -> bool:
    """``ric.get_birth_date`` without its costly re-cleaning of an already compact number."""
    try:
        datetime.date(int(year), int(month), int(day))
    except ValueError:
        return False
    return True


def hash_id_number(s: str, pepper: bytes) -> str:
    """Return HMAC-SHA256 hex of the normalised ID number, to look it up without decrypting.

    ``pepper`` is a secret kept outside the database (at least 16 bytes).
    """
    if not isinstance(pepper, bytes) or len(pepper) < MIN_PEPPER_BYTES:
        raise ConfigurationError(f"ID number pepper must be at least {MIN_PEPPER_BYTES} bytes")
    return hmac.new(pepper, _compact_id(s).encode("utf-8"), hashlib.sha256).hexdigest()
