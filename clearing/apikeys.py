"""API keys and passwords, stored only as hashes.

An API key looks like ``fs_live_ab12cd34_<43 chars>``: a public 8-hex-digit prefix to find
the row, and a 256-bit random secret of which only a hash is stored. The full key is shown
once, when issued.

API key secrets are hashed with plain SHA-256. Slow hashes (bcrypt, scrypt) exist to make
guessing *low-entropy* human passwords expensive; a 256-bit random secret cannot be guessed
however fast the hash, so a fast hash loses nothing and keeps every authenticated request
cheap. Human passwords are different and use scrypt (:func:`hash_password`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

from clearing.errors import ValidationError

KEY_SCHEME = "fs"
SECRET_HASH_SCHEME = "sha256"  # noqa: S105 - a scheme name, not a secret
_ENV = re.compile(r"[a-z][a-z0-9]{0,15}")
_PREFIX = re.compile(r"[0-9a-f]{8}")
_SECRET = re.compile(r"[A-Za-z0-9_-]{43}")
_HEX64 = re.compile(r"[0-9a-f]{64}")

SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_SALT_BYTES = 16
SCRYPT_DKLEN = 32
_SCRYPT_MAXMEM = 64 * 1024 * 1024


@dataclass(frozen=True)
class IssuedKey:
    """A newly issued API key. Store ``prefix`` and ``hash_secret(secret)``; show ``full`` once."""

    prefix: str
    secret: str
    full: str

    def __repr__(self) -> str:
        return f"IssuedKey(prefix={self.prefix!r}, secret='***', full='***')"


def issue_key(env: str = "live") -> IssuedKey:
    """Return a new random API key for environment ``env`` (e.g. "live", "test")."""
    if not _ENV.fullmatch(env):
        raise ValidationError("env must be lowercase letters and digits", field="env")
    prefix = secrets.token_hex(4)
    secret = secrets.token_urlsafe(32)
    return IssuedKey(prefix, secret, f"{KEY_SCHEME}_{env}_{prefix}_{secret}")


def parse_key(full: str) -> tuple[str, str]:
    """Split a full API key into ``(prefix, secret)``; raise ValidationError if malformed.

    The error message never repeats the key.
    """
    parts = full.strip().split("_", 3) if isinstance(full, str) else []
    if (
        len(parts) != 4
        or parts[0] != KEY_SCHEME
        or not _ENV.fullmatch(parts[1])
        or not _PREFIX.fullmatch(parts[2])
        or not _SECRET.fullmatch(parts[3])
    ):
        raise ValidationError("API key is malformed", field="api_key")
    return parts[2], parts[3]


def hash_secret(secret: str) -> str:
    """Return ``"sha256$<hex>"`` of an API key secret (see the module docstring for why)."""
    return f"{SECRET_HASH_SCHEME}${hashlib.sha256(secret.encode('utf-8')).hexdigest()}"


def verify_secret(secret: str, stored_hash: str) -> bool:
    """Return whether ``secret`` matches ``stored_hash``, in constant time.

    An empty or unrecognised stored hash, or an empty secret, is never a match.
    """
    if not isinstance(secret, str) or not isinstance(stored_hash, str):
        return False
    if not secret or not stored_hash:
        return False
    scheme, sep, digest = stored_hash.partition("$")
    if not sep or scheme != SECRET_HASH_SCHEME or not _HEX64.fullmatch(digest):
        return False
    return hmac.compare_digest(hash_secret(secret).encode("ascii"), stored_hash.encode("ascii"))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_SCRYPT_MAXMEM, dklen=dklen
    )


def hash_password(password: str) -> str:
    """Return ``"scrypt$n$r$p$salt_b64$hash_b64"`` for a human user's password."""
    if not password:
        raise ValidationError("password must not be empty", field="password")
    salt = secrets.token_bytes(SCRYPT_SALT_BYTES)
    derived = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, SCRYPT_DKLEN)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(derived)}"


def _parse_password_hash(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """Return ``(n, r, p, salt, hash)`` or None when ``stored`` is malformed or unsafe to run."""
    parts = stored.split("$") if isinstance(stored, str) else []
    if len(parts) != 6 or parts[0] != "scrypt":
        return None
    if not all(x.isascii() and x.isdigit() for x in parts[1:4]):
        return None
    n, r, p = (int(x) for x in parts[1:4])
    # Bound the cost so a tampered row cannot make a login burn unbounded memory or CPU.
    if not (2 <= n <= 2**20 and n & (n - 1) == 0 and 1 <= r <= 32 and 1 <= p <= 16):
        return None
    try:
        salt = base64.b64decode(parts[4], validate=True)
        expected = base64.b64decode(parts[5], validate=True)
    except (binascii.Error, ValueError):
        return None
    if not salt or not 16 <= len(expected) <= 64:
        return None
    return n, r, p, salt, expected


def verify_password(password: str, stored: str) -> bool:
    """Return whether ``password`` matches a hash from :func:`hash_password` (constant time)."""
    parsed = _parse_password_hash(stored)
    if not isinstance(password, str) or not password or parsed is None:
        return False
    n, r, p, salt, expected = parsed
    try:
        derived = _scrypt(password, salt, n, r, p, len(expected))
    except (ValueError, MemoryError):
        return False
    return hmac.compare_digest(derived, expected)


def password_needs_rehash(stored: str) -> bool:
    """Return whether ``stored`` uses other scrypt parameters than the current ones."""
    parsed = _parse_password_hash(stored)
    if parsed is None:
        return True
    n, r, p, salt, expected = parsed
    return (n, r, p, len(salt), len(expected)) != (
        SCRYPT_N,
        SCRYPT_R,
        SCRYPT_P,
        SCRYPT_SALT_BYTES,
        SCRYPT_DKLEN,
    )
