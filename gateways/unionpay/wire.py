"""UnionPay's wire format (version 5.1.0, signMethod 01): field names, signatures, codes.

Signature: take every non-empty field except ``signature``, sort by key, join ``k=v&k=v``;
take the lower-case hex SHA-256 of that string; sign *the hex string's bytes* with
SHA256withRSA (PKCS#1 v1.5); base64. In code: ``sign(key, sha256_hex(canonical).encode())``.
``certId`` names the signing key (a certificate serial in decimal).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from gateways import signing
from gateways.options import SHANGHAI

VERSION = "5.1.0"
FRONT_PATH = "/gateway/api/frontTransReq.do"
QUERY_PATH = "/gateway/api/queryTrans.do"
BACK_PATH = "/gateway/api/backTransReq.do"
BILL_PATH = "/_bill/{day}"

TXN_PAYMENT = "01"
TXN_REFUND = "04"
TXN_QUERY = "00"
CURRENCY_CNY = "156"
TIME_FORMAT = "%Y%m%d%H%M%S"

SUCCESS = "00"
NOT_FOUND = "34"
PROCESSING = ("03", "04", "05")
DECLINED = "01"
# Simulator extension: the payer abandoned the order (real UnionPay keeps no record of an
# abandoned front transaction and answers 34 once it has expired).
CLOSED = "CL"


def txn_time(moment: datetime) -> str:
    """``yyyyMMddHHmmss`` in Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).strftime(TIME_FORMAT)


def parse_txn_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=SHANGHAI)


def cert_id(key: signing.PublicKey) -> str:
    """The decimal serial that names ``key`` in ``certId``."""
    return str(int(signing.key_serial(key)[:16], 16))


def sign_base(fields: Mapping[str, str]) -> bytes:
    canonical = signing.canonical_string(fields, ("signature",))
    return signing.sha256_hex(canonical).encode("ascii")


def sign_fields(
    fields: Mapping[str, str], key: signing.PrivateKey, cert: str | None = None
) -> dict[str, str]:
    """``fields`` with ``certId`` (``cert``, default derived from the key) and ``signature``."""
    signed = {**fields, "certId": cert or cert_id(key.public_key())}
    return {**signed, "signature": signing.sign(key, sign_base(signed))}


def verify_fields(
    fields: Mapping[str, str], key: signing.PublicKey, cert: str | None = None
) -> bool:
    """True if ``fields`` name ``key`` in ``certId`` and carry its valid ``signature``."""
    if fields.get("certId") != (cert or cert_id(key)):
        return False
    return signing.verify(key, sign_base(fields), fields.get("signature"))


def fen(text: str) -> int:
    """A ``txnAmt``: a plain string of decimal digits of fen."""
    if not text.isascii() or not text.isdigit() or (len(text) > 1 and text[0] == "0"):
        raise ValueError(f"txnAmt must be digits of fen, got {text!r}")
    return int(text)
