"""WeChat Pay API v3's wire format: the signed Authorization header, signed answers and
notifies, and the AES-256-GCM resource of a notify.

- Request: ``Authorization: WECHATPAY2-SHA256-RSA2048 mchid="..",nonce_str="..",
  signature="..",timestamp="..",serial_no=".."``; the signature (merchant key) is over
  ``METHOD\\nPATH_WITH_QUERY\\nTIMESTAMP\\nNONCE\\nBODY\\n``.
- Answers and notifies: headers ``Wechatpay-Timestamp``, ``Wechatpay-Nonce``,
  ``Wechatpay-Serial``, ``Wechatpay-Signature`` (gateway key) over ``TIMESTAMP\\nNONCE\\nBODY\\n``.
- A notify's ``resource`` is AEAD_AES_256_GCM under the API v3 key: ``ciphertext`` is base64 of
  the ciphertext followed by the 16-byte tag; ``nonce`` is 12 ASCII characters.
"""

from __future__ import annotations

import base64
import re
import secrets
import string
from collections.abc import Mapping
from datetime import datetime

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateways import signing
from gateways.options import SHANGHAI

SCHEMA = "WECHATPAY2-SHA256-RSA2048"
NATIVE_PATH = "/v3/pay/transactions/native"
QUERY_PATH = "/v3/pay/transactions/out-trade-no/{out_trade_no}"
REFUND_PATH = "/v3/refund/domestic/refunds"
BILL_PATH = "/v3/bill/tradebill"

TIMESTAMP = "wechatpay-timestamp"
NONCE = "wechatpay-nonce"
SERIAL = "wechatpay-serial"
SIGNATURE = "wechatpay-signature"

# trade_state values
SUCCESS = "SUCCESS"
REFUND = "REFUND"
NOTPAY = "NOTPAY"
USERPAYING = "USERPAYING"
CLOSED = "CLOSED"
REVOKED = "REVOKED"
PAYERROR = "PAYERROR"

_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')
_ALPHABET = string.ascii_letters + string.digits


def nonce(length: int = 32) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def rfc3339(moment: datetime) -> str:
    """``2026-11-27T10:05:00+08:00``."""
    return moment.astimezone(SHANGHAI).isoformat(timespec="seconds")


def request_message(method: str, path: str, timestamp: str, nonce_str: str, body: str) -> bytes:
    return f"{method}\n{path}\n{timestamp}\n{nonce_str}\n{body}\n".encode()


def response_message(timestamp: str, nonce_str: str, body: bytes) -> bytes:
    return f"{timestamp}\n{nonce_str}\n".encode() + body + b"\n"


def authorization(
    mchid: str,
    serial: str,
    key: signing.PrivateKey,
    method: str,
    path: str,
    body: str,
    timestamp: str,
) -> str:
    """The ``Authorization`` header of a merchant request."""
    nonce_str = nonce()
    signature = signing.sign(key, request_message(method, path, timestamp, nonce_str, body))
    return (
        f'{SCHEMA} mchid="{mchid}",nonce_str="{nonce_str}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial}"'
    )


def parse_authorization(header: str) -> dict[str, str] | None:
    """The parameters of an ``Authorization`` header, or None if it is not this schema."""
    schema, _, rest = header.partition(" ")
    if schema != SCHEMA:
        return None
    return dict(_AUTH_PARAM.findall(rest))


def signed_headers(
    key: signing.PrivateKey, serial: str, body: bytes, timestamp: str
) -> dict[str, str]:
    """The ``Wechatpay-*`` headers of an answer or a notify with ``body``."""
    nonce_str = nonce()
    signature = signing.sign(key, response_message(timestamp, nonce_str, body))
    return {
        "Wechatpay-Timestamp": timestamp,
        "Wechatpay-Nonce": nonce_str,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature": signature,
        "Wechatpay-Signature-Type": SCHEMA,
    }


def verify_headers(key: signing.PublicKey, headers: Mapping[str, str], body: bytes) -> bool:
    """True if the ``Wechatpay-*`` headers (lower-cased names) sign ``body``."""
    message = response_message(headers.get(TIMESTAMP, ""), headers.get(NONCE, ""), body)
    return signing.verify(key, message, headers.get(SIGNATURE))


def encrypt(api_v3_key: bytes, plaintext: bytes, associated_data: str) -> dict[str, str]:
    """A notify ``resource``: AEAD_AES_256_GCM with a fresh 12-character nonce."""
    nonce_str = nonce(12)
    sealed = AESGCM(api_v3_key).encrypt(nonce_str.encode(), plaintext, associated_data.encode())
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "ciphertext": base64.b64encode(sealed).decode(),
        "nonce": nonce_str,
        "associated_data": associated_data,
        "original_type": "transaction",
    }


def decrypt(api_v3_key: bytes, resource: Mapping[str, str]) -> bytes:
    """Open a notify ``resource``; raises InvalidTag / ValueError when it is not genuine."""
    if resource.get("algorithm") != "AEAD_AES_256_GCM":
        raise ValueError(f"unknown algorithm {resource.get('algorithm')!r}")
    sealed = base64.b64decode(resource["ciphertext"], validate=True)
    aad = resource.get("associated_data", "").encode()
    return AESGCM(api_v3_key).decrypt(resource["nonce"].encode(), sealed, aad)
