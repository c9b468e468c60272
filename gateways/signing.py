"""RSA helpers shared by every gateway: keys, PEM, SHA256withRSA (PKCS#1 v1.5), canonical strings.

Signatures travel as standard base64. Verification never raises on malformed input: it answers
False, and the caller turns that into a :class:`~gateways.protocol.VerificationError`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Mapping
from functools import lru_cache

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

PrivateKey = rsa.RSAPrivateKey
PublicKey = rsa.RSAPublicKey

KEY_BITS = 2048


def generate_private_key() -> PrivateKey:
    """A fresh 2048-bit RSA key (public exponent 65537)."""
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def private_key_pem(key: PrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted (the file mode protects it)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key_pem(key: PublicKey) -> bytes:
    """SubjectPublicKeyInfo PEM."""
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@lru_cache(maxsize=64)
def load_private_key(pem: bytes) -> PrivateKey:
    """Parse (and validate) a PEM private key; cached by content, as validation is slow."""
    key = serialization.load_pem_private_key(pem, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("not an RSA private key")
    return key


@lru_cache(maxsize=64)
def load_public_key(pem: bytes) -> PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("not an RSA public key")
    return key


def sign(key: PrivateKey, data: bytes) -> str:
    """Base64 SHA256withRSA (PKCS#1 v1.5) signature of ``data``."""
    signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def verify(key: PublicKey, data: bytes, signature_b64: str | None) -> bool:
    """True only when ``signature_b64`` is a valid base64 SHA256withRSA signature of ``data``."""
    if not signature_b64:
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def canonical_string(params: Mapping[str, str], exclude: Iterable[str] = ()) -> str:
    """``k=v&k=v`` of ``params`` sorted by key, leaving out ``exclude`` and empty values.

    Values are used raw (not URL-encoded), as Alipay and UnionPay sign them.
    """
    skip = set(exclude)
    return "&".join(
        f"{key}={params[key]}" for key in sorted(params) if key not in skip and params[key] != ""
    )


def sha256_hex(text: str) -> str:
    """Lower-case hex SHA-256 of the UTF-8 bytes of ``text``."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def key_serial(key: PublicKey) -> str:
    """A stable 40-hex-digit serial for a public key (stands in for a certificate serial)."""
    der = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(der).hexdigest()[:40].upper()
