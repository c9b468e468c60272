"""Electronic receipts (非税收入电子缴款凭证): issue, sign, find, verify, render.

After a settling capture, :func:`issue_receipt` builds the receipt document (a JSON object with
a receipt number, a check code, the masked payer, the items and amounts in integer fen *and* as
display strings, the payment's time, channel and ids, and the issuer), serialises it canonically
(:func:`canonical_bytes`: sorted keys, no whitespace, UTF-8, no floats) and signs those bytes
with the platform e-seal, an Ed25519 key (:class:`ESeal`). Anyone can check a receipt:

- online, at ``{public_base_url}/receipts/{number}?check={code}`` (the PDF's QR code), or by
  posting its JSON to ``/v1/receipts/verify``;
- offline, with the published public key (``/.well-known/feishui-eseal.pem``) and
  :func:`verify_document` or the 10 lines of Python in ``docs/receipts.md``.

Keys are identified by ``key_id`` (the first 16 hex characters of SHA-256 of the raw 32-byte
public key) so that a rotated-out key can still verify the receipts it signed
(:class:`PublishedKeys`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import json
import math
import re
import secrets
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from fpdf import FPDF
from fpdf.enums import Align, XPos, YPos
from fpdf.fonts import FontFace
from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from clearing.errors import ConfigurationError, NotFound, ValidationError
from clearing.money import CNY, format_fen
from notices.codes import format_code
from notices.documents import (
    _FONT,
    _INK,
    _MARGIN,
    _MUTED,
    _RED,
    _RULE,
    _SHADE,
    KIND_LABELS,
    _bold,
    _collection_index,
    _paragraph,
    _wrap,
    cjk_font_path,
    official_header,
    particulars_table,
    qr_png,
    ruled_footer,
    section_heading,
)
from notices.fees import SHANGHAI
from notices.receipt_models import Receipt

VERSION = 1
DOCUMENT_TYPE = "feishui.receipt"
ALGORITHM = "Ed25519"
PLATFORM_NAME = "feishui 非税缴款平台"
#: No 0/O, 1/I/L: a check code is read off paper and typed in.
CHECK_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CHECK_LENGTH = 6
NUMBER_PREFIX = "FS"
NUMBER_PATTERN = re.compile(r"FS[0-9]{18}")
_RANDOM_DIGITS = 10
NUMBER_DRAWS = 8
"""Numbers drawn before giving up; a collision is one in 10^10 a day, two in a row never."""


# --------------------------------------------------------------------------- keys


def key_id_for(public_key: Ed25519PublicKey) -> str:
    """First 16 hex characters of SHA-256 of the raw 32-byte public key."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def public_key_pem(public_key: Ed25519PublicKey) -> str:
    """SubjectPublicKeyInfo PEM of ``public_key``."""
    return public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode()


def load_public_key(pem: str | bytes) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM; :class:`ValidationError` if it is anything else."""
    data = pem.encode() if isinstance(pem, str) else pem
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError as exc:
        raise ValidationError(f"not a PEM public key: {exc}", field="public_key") from None
    if not isinstance(key, Ed25519PublicKey):
        raise ValidationError("the public key is not an Ed25519 key", field="public_key")
    return key


class ESeal:
    """The platform's e-seal: an Ed25519 private key and its key id."""

    def __init__(self, private_key: Ed25519PrivateKey, key_id: str | None = None) -> None:
        expected = key_id_for(private_key.public_key())
        if key_id is not None and key_id != expected:
            raise ConfigurationError(
                f"e-seal key id {key_id!r} does not match the key ({expected})", field="eseal_key"
            )
        self.private_key = private_key
        self.key_id = expected

    @classmethod
    def from_pem(cls, pem: str) -> ESeal:
        return _eseal_from_pem(pem.strip())

    @classmethod
    def from_settings(cls, settings: Any) -> ESeal:
        """The key of ``settings.secret("eseal_key")``: PEM PKCS#8 text, or a path to a file."""
        value = settings.secret("eseal_key").strip()
        if not value.startswith("-----BEGIN"):
            path = Path(value).expanduser()
            if not path.is_file():
                raise ConfigurationError(
                    "FEISHUI_ESEAL_KEY is neither a PEM private key nor a path to one",
                    field="eseal_key",
                )
            value = path.read_text().strip()
        return cls.from_pem(value)

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.private_key.public_key()

    def public_pem(self) -> str:
        return public_key_pem(self.public_key)

    def sign(self, data: bytes) -> str:
        """Base64 (standard alphabet, padded) of the 64-byte Ed25519 signature of ``data``."""
        return base64.b64encode(self.private_key.sign(data)).decode("ascii")


@lru_cache(maxsize=8)
def _eseal_from_pem(pem: str) -> ESeal:
    try:
        key = serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ConfigurationError(
            f"FEISHUI_ESEAL_KEY is not a usable PEM key: {exc}", field="eseal_key"
        ) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError("FEISHUI_ESEAL_KEY must be an Ed25519 key", field="eseal_key")
    return ESeal(key)


class PublishedKeys(Mapping[str, Ed25519PublicKey]):
    """The public keys receipts are verified with, by key id: the current e-seal's and any
    retired ones (so that receipts signed before a key rotation still verify)."""

    def __init__(
        self, keys: Mapping[str, Ed25519PublicKey] | None = None, current: str | None = None
    ) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {}
        for key_id, key in (keys or {}).items():
            if key_id != key_id_for(key):
                raise ValidationError(f"key id {key_id!r} does not match its key", field="key_id")
            self._keys[key_id] = key
        self.current = current

    @classmethod
    def from_settings(cls, settings: Any) -> PublishedKeys:
        """The current e-seal's public key, plus ``settings.eseal_old_public_keys`` if set
        (PEM text holding one or more public keys, a list of them, or a key id -> PEM dict)."""
        eseal = ESeal.from_settings(settings)
        keys = cls({eseal.key_id: eseal.public_key}, current=eseal.key_id)
        old = getattr(settings, "eseal_old_public_keys", None)
        if isinstance(old, Mapping):
            old = list(old.values())
        if isinstance(old, str):
            old = re.findall(
                r"-----BEGIN PUBLIC KEY-----.+?-----END PUBLIC KEY-----", old, flags=re.S
            )
        for pem in old or ():
            keys.add(load_public_key(pem))
        return keys

    @classmethod
    def from_pem(cls, pem: str | bytes) -> PublishedKeys:
        key = load_public_key(pem)
        return cls({key_id_for(key): key}, current=key_id_for(key))

    def add(self, key: Ed25519PublicKey) -> str:
        key_id = key_id_for(key)
        self._keys[key_id] = key
        return key_id

    def pem(self, key_id: str) -> str:
        return public_key_pem(self._keys[key_id])

    def __getitem__(self, key_id: str) -> Ed25519PublicKey:
        return self._keys[key_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


# --------------------------------------------------------------------------- canonical form


def _refuse_floats(value: Any) -> None:
    """Refuse floats and non-string keys anywhere in ``value``: a walk without paths (every
    receipt runs it), then, only for a refused document, the walk that names the place."""
    stack = [value]
    while stack:
        item = stack.pop()
        kind = type(item)
        if kind is dict:
            if not all(type(key) is str for key in item):
                break
            stack.extend(item.values())
        elif kind is list or kind is tuple:
            stack.extend(item)
        elif isinstance(item, float | dict | list | tuple):  # a subclass: the careful walk
            break
    else:
        return
    _refuse_floats_at(value, "$")


def _refuse_floats_at(value: Any, path: str) -> None:
    if isinstance(value, float):
        raise ValidationError(f"{path}: floats are not allowed in a receipt", field="receipt")
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                raise ValidationError(f"{path}: keys must be strings", field="receipt")
            _refuse_floats_at(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            _refuse_floats_at(item, f"{path}[{index}]")


def canonical_bytes(doc: Mapping[str, Any]) -> bytes:
    """The bytes that are signed: JSON with sorted keys, no whitespace, non-ASCII characters as
    themselves, encoded as UTF-8. Integers only (amounts are fen); floats are refused."""
    _refuse_floats(doc)
    return json.dumps(
        doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode("utf-8")


def payload_digest(doc: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(doc)).hexdigest()


def _amount(fen: int) -> dict[str, Any]:
    return {"fen": fen, "display": format_fen(fen)}


def _aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; they are UTC."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def shanghai_iso(moment: datetime) -> str:
    """ISO 8601 in Asia/Shanghai with its offset, e.g. ``2026-11-28T10:00:00+08:00``."""
    return _aware(moment).astimezone(SHANGHAI).isoformat(timespec="seconds")


class ReceiptItem(Protocol):
    """A notice line as a receipt shows it (an ORM ``NoticeItem`` or a capture's view)."""

    @property
    def line_no(self) -> int: ...
    @property
    def item_code(self) -> str: ...
    @property
    def name_zh(self) -> str: ...
    @property
    def name_en(self) -> str: ...
    @property
    def quantity(self) -> int: ...
    @property
    def unit_amount(self) -> int: ...
    @property
    def amount(self) -> int: ...


class ReceiptDepartment(Protocol):
    @property
    def name(self) -> str: ...
    @property
    def region_code(self) -> str: ...


class ReceiptNotice(Protocol):
    """What a receipt needs of the notice (an ORM ``Notice`` or a capture's view)."""

    @property
    def id(self) -> int: ...
    @property
    def kind(self) -> str: ...
    @property
    def payment_code(self) -> str: ...
    @property
    def payer_name_masked(self) -> str: ...
    @property
    def department(self) -> ReceiptDepartment: ...
    @property
    def items(self) -> Sequence[ReceiptItem]: ...


class ReceiptAttempt(Protocol):
    """What a receipt needs of the settling attempt (an ORM ``PaymentAttempt`` or a view)."""

    @property
    def id(self) -> int: ...
    @property
    def notice_id(self) -> int: ...
    @property
    def order_id(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def gateway(self) -> str: ...
    @property
    def channel(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def principal(self) -> int: ...
    @property
    def late_fee(self) -> int: ...
    @property
    def gateway_txn_id(self) -> str | None: ...
    @property
    def paid_at(self) -> datetime | None: ...


def build_document(
    notice: ReceiptNotice,
    attempt: ReceiptAttempt,
    *,
    number: str,
    check_code: str,
    key_id: str,
    issued_at: datetime,
) -> dict[str, Any]:
    """The receipt document of ``attempt`` settling ``notice`` (before signing)."""
    items = [
        {
            "line_no": item.line_no,
            "code": item.item_code,
            "name_zh": item.name_zh,
            "name_en": item.name_en,
            "quantity": item.quantity,
            "unit_amount": _amount(item.unit_amount),
            "amount": _amount(item.amount),
        }
        for item in notice.items
    ]
    if sum(item.amount for item in notice.items) != attempt.principal:
        raise ValidationError(
            f"notice {notice.id}: items add up to "
            f"{format_fen(sum(i.amount for i in notice.items))}, the payment's principal is "
            f"{format_fen(attempt.principal)}; no receipt is issued for wrong figures",
            field="principal",
        )
    if attempt.principal + attempt.late_fee != attempt.amount:
        raise ValidationError(
            f"attempt {attempt.order_id}: amount is not principal + late fee", field="amount"
        )
    zh, en = KIND_LABELS.get(notice.kind, (notice.kind, notice.kind))
    return {
        "type": DOCUMENT_TYPE,
        "version": VERSION,
        "number": number,
        "check_code": check_code,
        "issuer": {
            "platform": PLATFORM_NAME,
            "department": notice.department.name,
            "region_code": notice.department.region_code,
        },
        "payer": {"name_masked": notice.payer_name_masked},
        "payment_code": notice.payment_code,
        "kind": {"code": notice.kind, "name_zh": zh, "name_en": en},
        "items": items,
        "principal": _amount(attempt.principal),
        "late_fee": _amount(attempt.late_fee),
        "total": _amount(attempt.amount),
        "currency": CNY,
        "paid_at": shanghai_iso(attempt.paid_at or issued_at),
        "issued_at": shanghai_iso(issued_at),
        "payment": {
            "channel": attempt.channel,
            "gateway": attempt.gateway,
            "gateway_txn_id": attempt.gateway_txn_id or "",
            "order_id": attempt.order_id,
        },
        "key_id": key_id,
        "algorithm": ALGORITHM,
    }


# --------------------------------------------------------------------------- issue & find


def new_check_code() -> str:
    """``CHECK_LENGTH`` symbols of ``CHECK_ALPHABET``, uniformly at random from the system's
    CSPRNG: one number below 31**6, written in base 31 (``secrets.choice`` per symbol costs a
    read of the system's random source each)."""
    base = len(CHECK_ALPHABET)
    draw = secrets.randbelow(base**CHECK_LENGTH)
    symbols = []
    for _ in range(CHECK_LENGTH):
        draw, digit = divmod(draw, base)
        symbols.append(CHECK_ALPHABET[digit])
    return "".join(symbols)


def new_number(issued_at: datetime) -> str:
    day = _aware(issued_at).astimezone(SHANGHAI).strftime("%Y%m%d")
    return f"{NUMBER_PREFIX}{day}{secrets.randbelow(10**_RANDOM_DIGITS):0{_RANDOM_DIGITS}d}"


def default_eseal() -> ESeal:
    from clearing.config import get_settings

    return ESeal.from_settings(get_settings())


@dataclass(frozen=True, slots=True)
class IssuedReceipt:
    """The receipt just inserted by :func:`insert_receipt`."""

    id: int
    number: str
    check_code: str


def issue_receipt(
    session: Session,
    notice: ReceiptNotice,
    attempt: ReceiptAttempt,
    eseal: ESeal | None = None,
    now: datetime | None = None,
) -> Receipt:
    """Issue, sign and store the receipt of ``attempt`` settling ``notice``.

    Idempotent: the notice's existing receipt is returned if it has one (a notice is settled
    once; the database's UNIQUE ``notice_id`` backs this). Call it in the capture transaction,
    after the attempt is ``succeeded`` and the notice ``paid``. ``eseal`` defaults to the
    process settings' key, ``now`` to the current time. The capture itself, which knows there
    is no receipt yet, calls :func:`insert_receipt`.
    """
    existing = session.scalars(select(Receipt).where(Receipt.notice_id == notice.id)).one_or_none()
    if existing is not None:
        return existing
    issued = insert_receipt(session, notice, attempt, eseal, now)
    receipt = session.get(Receipt, issued.id)
    assert receipt is not None  # inserted just now, in this transaction
    return receipt


def insert_receipt(
    session: Session,
    notice: ReceiptNotice,
    attempt: ReceiptAttempt,
    eseal: ESeal | None = None,
    now: datetime | None = None,
) -> IssuedReceipt:
    """Sign and insert the receipt of ``attempt`` settling ``notice``, without looking for an
    existing one: the caller knows there is none (it holds the notice's lock and saw it unpaid;
    the UNIQUE ``notice_id`` refuses a second receipt all the same).

    The number is random; instead of checking it first, the INSERT skips a number already in use
    (``ON CONFLICT (number) DO NOTHING``) and another one is drawn, signed and inserted.
    """
    eseal = eseal or default_eseal()
    now = _aware(now or datetime.now(UTC))
    stmt = _insert_statement(session.get_bind().dialect.name)
    for _ in range(NUMBER_DRAWS):
        values = signed_receipt_row(notice, attempt, eseal, now)
        receipt_id = session.execute(stmt, values).scalar()
        if receipt_id is not None:
            return IssuedReceipt(receipt_id, values["number"], values["check_code"])
    raise RuntimeError("could not draw an unused receipt number")  # 10^10 a day: never


def _check_settling(notice: ReceiptNotice, attempt: ReceiptAttempt) -> None:
    if attempt.notice_id != notice.id:
        raise ValidationError(
            f"attempt {attempt.order_id} is not for notice {notice.id}", field="attempt"
        )
    if attempt.state != "succeeded":
        raise ValidationError(
            f"attempt {attempt.order_id} is {attempt.state}; only the settling, succeeded "
            "attempt gets a receipt",
            field="attempt",
        )


def signed_receipt_row(
    notice: ReceiptNotice, attempt: ReceiptAttempt, eseal: ESeal, now: datetime
) -> dict[str, Any]:
    """The ``receipts`` row of ``attempt`` settling ``notice``: a newly drawn number, signed with
    ``eseal``. Whoever inserts it must skip a number already in use and draw again
    (:func:`insert_receipt` does)."""
    return signed_receipt(notice, attempt, eseal, now)[0]


def signed_receipt(
    notice: ReceiptNotice, attempt: ReceiptAttempt, eseal: ESeal, now: datetime
) -> tuple[dict[str, Any], bytes]:
    """:func:`signed_receipt_row`, and the canonical bytes it signed (the payload's JSON, for a
    caller that sends it to the database as it is instead of encoding the payload again)."""
    _check_settling(notice, attempt)
    now = _aware(now)
    doc = build_document(
        notice,
        attempt,
        number=new_number(now),
        check_code=new_check_code(),
        key_id=eseal.key_id,
        issued_at=now,
    )
    data = canonical_bytes(doc)
    row = {
        "number": doc["number"],
        "check_code": doc["check_code"],
        "notice_id": notice.id,
        "attempt_id": attempt.id,
        "payload": doc,
        "payload_sha256": hashlib.sha256(data).hexdigest(),
        "signature": eseal.sign(data),
        "key_id": eseal.key_id,
        "issued_at": now,
    }
    return row, data


@lru_cache(maxsize=4)
def _insert_statement(dialect: str) -> Any:
    """INSERT ... ON CONFLICT (number) DO NOTHING RETURNING id, built once per dialect. Only a
    number in use is skipped: any other conflict (a second receipt of the notice) still raises."""
    table = Receipt.__table__
    module = postgresql if dialect == "postgresql" else sqlite
    return (
        module.insert(table).on_conflict_do_nothing(index_elements=["number"]).returning(table.c.id)
    )


_DUMMY_CHECK = "Z" * CHECK_LENGTH


def find_receipt(session: Session, number: str, check_code: str | None) -> Receipt:
    """The receipt with ``number`` whose check code is ``check_code``.

    :class:`NotFound` (one message) whether the number is unknown or the code wrong, and the
    code is compared in constant time, so the answer does not reveal which.
    """
    number = (number or "").strip().upper()
    code = (check_code or "").strip().upper()
    receipt = None
    if NUMBER_PATTERN.fullmatch(number):
        receipt = session.scalars(select(Receipt).where(Receipt.number == number)).one_or_none()
    expected = receipt.check_code if receipt is not None else _DUMMY_CHECK
    matches = hmac.compare_digest(code.encode(), expected.encode())
    if receipt is None or not matches or not code:
        raise NotFound("no receipt with this number and check code")
    return receipt


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    """The published form of a receipt: what ``.json`` serves and ``verify`` accepts."""
    return {
        "receipt": receipt.payload,
        "signature": receipt.signature,
        "key_id": receipt.key_id,
        "algorithm": ALGORITHM,
    }


def verify_url(base_url: str, receipt: Receipt) -> str:
    return f"{base_url.rstrip('/')}/receipts/{receipt.number}?check={receipt.check_code}"


def signature_fingerprint(signature_b64: str) -> str:
    """A short, printable fingerprint of a signature: 16 hex of its SHA-256, in groups of 4."""
    digest = hashlib.sha256(signature_b64.encode("ascii")).hexdigest()[:16].upper()
    return " ".join(digest[i : i + 4] for i in range(0, 16, 4))


# --------------------------------------------------------------------------- verify


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    reason: str
    number: str | None = None
    issuer: str | None = None
    key_id: str | None = None

    def __bool__(self) -> bool:
        return self.ok


def verify_document(
    doc: Any, signature_b64: Any, keys: Mapping[str, Ed25519PublicKey]
) -> VerifyResult:
    """Check that ``signature_b64`` is the e-seal's signature of ``doc``'s canonical bytes,
    made with a key in ``keys`` (key id -> public key). Never raises on bad input."""
    if not isinstance(doc, dict):
        return VerifyResult(False, "the receipt is not a JSON object")
    number = doc.get("number") if isinstance(doc.get("number"), str) else None
    key_id = doc.get("key_id")
    if doc.get("type") != DOCUMENT_TYPE or doc.get("version") != VERSION:
        return VerifyResult(False, "not a feishui receipt of a supported version", number)
    if doc.get("algorithm") != ALGORITHM:
        return VerifyResult(False, "unsupported signature algorithm", number)
    if not isinstance(key_id, str) or key_id not in keys:
        return VerifyResult(False, f"unknown e-seal key id {key_id!r}", number)
    if not isinstance(signature_b64, str):
        return VerifyResult(False, "the signature is missing", number, key_id=key_id)
    try:
        signature = base64.b64decode(signature_b64.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return VerifyResult(False, "the signature is not base64", number, key_id=key_id)
    if len(signature) != 64:
        return VerifyResult(False, "the signature is not 64 bytes", number, key_id=key_id)
    try:
        data = canonical_bytes(doc)
    except (ValidationError, ValueError, TypeError) as exc:
        detail = exc.detail if isinstance(exc, ValidationError) else str(exc)
        return VerifyResult(False, f"the receipt is not canonical JSON: {detail}", number)
    try:
        keys[key_id].verify(signature, data)
    except InvalidSignature:
        return VerifyResult(
            False,
            "the signature does not match the receipt (altered, or not sealed by this key)",
            number,
            key_id=key_id,
        )
    issuer = doc.get("issuer") if isinstance(doc.get("issuer"), dict) else {}
    return VerifyResult(True, "e-seal valid", number, issuer.get("department"), key_id)


def verify_published(published: Any, keys: Mapping[str, Ed25519PublicKey]) -> VerifyResult:
    """Verify the published form (:func:`receipt_json`)."""
    if not isinstance(published, dict) or not isinstance(published.get("receipt"), dict):
        return VerifyResult(False, "expected an object with 'receipt' and 'signature'")
    doc = published["receipt"]
    outer = published.get("key_id")
    if outer is not None and outer != doc.get("key_id"):
        return VerifyResult(
            False,
            "the key id outside the receipt differs from the one inside",
            doc.get("number") if isinstance(doc.get("number"), str) else None,
        )
    algorithm = published.get("algorithm", ALGORITHM)
    if algorithm != ALGORITHM:
        return VerifyResult(False, f"unsupported signature algorithm {algorithm!r}")
    return verify_document(doc, published.get("signature"), keys)


def verify_receipt(receipt: Receipt, keys: Mapping[str, Ed25519PublicKey]) -> VerifyResult:
    """Verify a stored receipt (its payload digest too)."""
    result = verify_document(receipt.payload, receipt.signature, keys)
    if result.ok and payload_digest(receipt.payload) != receipt.payload_sha256:
        return VerifyResult(False, "the stored payload digest does not match", receipt.number)
    return result


def verify_receipt_file(
    path: str | Path, public_key_pem: str | Path | None = None, settings: Any = None
) -> VerifyResult:
    """Verify a receipt JSON file (as served at ``/receipts/{number}.json``) offline.

    The key: the PEM file ``public_key_pem`` if given, else the published keys of ``settings``
    (default: the process settings).
    """
    if public_key_pem is not None:
        keys: Mapping[str, Ed25519PublicKey] = PublishedKeys.from_pem(
            Path(public_key_pem).read_bytes()
        )
    else:
        if settings is None:
            from clearing.config import get_settings

            settings = get_settings()
        keys = PublishedKeys.from_settings(settings)
    try:
        published = json.loads(
            Path(path).read_text(encoding="utf-8"), parse_float=_no_float, parse_constant=_no_float
        )
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return VerifyResult(False, f"cannot read the receipt file: {exc}")
    return verify_published(published, keys)


def _no_float(text: str) -> Any:
    raise ValueError(f"non-integer number {text} (amounts are integer fen)")


# --------------------------------------------------------------------------- PDF

_QR = 34.0


class _ReceiptPDF(FPDF):
    footer_text = ""

    def footer(self) -> None:
        ruled_footer(self, self.footer_text, top=-18, size=8, line_height=4)


def render_receipt_pdf(receipt: Receipt, verify_url: str) -> bytes:
    """An A4 PDF of ``receipt``: every field, a red e-seal stamp, the QR code of
    ``verify_url``, the key id and a fingerprint of the signature."""
    doc = receipt.payload
    font = cjk_font_path()
    pdf = _ReceiptPDF(orientation="portrait", unit="mm", format="A4")
    pdf.set_title(f"非税收入电子缴款凭证 / Electronic Receipt {doc['number']}")
    pdf.set_subject(doc["issuer"]["department"])
    pdf.set_creator("feishui")
    pdf.set_creation_date(_aware(receipt.issued_at))
    pdf.set_margins(_MARGIN, _MARGIN, _MARGIN)
    pdf.set_auto_page_break(auto=True, margin=24)
    pdf.add_font(_FONT, fname=str(font), collection_font_number=_collection_index(font))
    pdf.footer_text = (
        f"本凭证由 {PLATFORM_NAME} 以电子签章（Ed25519）签发，可扫码或访问上方链接核验真伪。\n"
        "Sealed electronically (Ed25519); verify it by scanning the QR code or with the "
        "published key (/.well-known/feishui-eseal.pem)."
    )
    pdf.add_page()
    _receipt_header(pdf, doc)
    _receipt_particulars(pdf, doc)
    _receipt_items(pdf, doc)
    totals_top = pdf.get_y()
    _receipt_totals(pdf, doc)
    _stamp(pdf, pdf.w - _MARGIN - 32, totals_top + 2)
    _verification(pdf, receipt, verify_url)
    return bytes(pdf.output())


def _receipt_header(pdf: FPDF, doc: dict[str, Any]) -> None:
    official_header(
        pdf,
        doc["issuer"]["department"],
        ("非税收入电子缴款凭证", "Electronic Receipt"),
        size=21,
        spacing=2,
        facts=(f"票据号码 No.：{doc['number']}", f"校验码 Check code：{doc['check_code']}"),
    )
    pdf.ln(3)


def _receipt_particulars(pdf: FPDF, doc: dict[str, Any]) -> None:
    payment = doc["payment"]
    rows = [
        ("开票单位", "Issuer", f"{doc['issuer']['platform']}"),
        ("执收单位", "Department", doc["issuer"]["department"]),
        ("缴款人", "Payer", doc["payer"]["name_masked"]),
        ("缴款码", "Payment code", format_code(doc["payment_code"])),
        ("业务类型", "Kind", f"{doc['kind']['name_zh']} / {doc['kind']['name_en']}"),
        ("缴款时间", "Paid at", doc["paid_at"]),
        ("支付方式", "Paid via", f"{payment['gateway']} · {payment['channel']}"),
        ("交易流水号", "Transaction", payment["gateway_txn_id"] or "—"),
        ("订单号", "Order", payment["order_id"]),
        ("开具时间", "Issued at", doc["issued_at"]),
    ]
    particulars_table(pdf, rows, label_width=42.0, line_height=5.2, padding_v=1.2)


def _receipt_items(pdf: FPDF, doc: dict[str, Any]) -> None:
    section_heading(pdf, "缴款项目  Items")
    pdf.set_draw_color(*_RULE)
    heading = FontFace(color=_INK, fill_color=_SHADE, size_pt=9)
    name_width, pad = pdf.w - 2 * _MARGIN - 100, 2.0
    with pdf.table(
        col_widths=(10, 30, name_width, 16, 44),
        headings_style=heading,
        borders_layout="SINGLE_TOP_LINE",
        line_height=5.2,
        padding=(1.4, pad),
        text_align=("CENTER", "LEFT", "LEFT", "RIGHT", "RIGHT"),
    ) as table:
        header = table.row()
        for title in ("#", "编码 Code", "项目 Item", "数量 Qty", "金额（元）Amount"):
            header.cell(title)
        for item in doc["items"]:
            row = table.row()
            row.cell(str(item["line_no"]), v_align="M")
            row.cell(item["code"], v_align="M")
            name = f"{item['name_zh']}\n{item['name_en']}"
            row.cell("\n".join(_wrap(pdf, name, name_width - 2 * pad - 1)))
            row.cell(str(item["quantity"]), v_align="M")
            row.cell(format_fen(item["amount"]["fen"]), v_align="M")
    y = pdf.get_y()
    pdf.set_draw_color(*_INK)
    pdf.line(_MARGIN, y, pdf.w - _MARGIN, y)
    pdf.ln(2)


def _receipt_totals(pdf: FPDF, doc: dict[str, Any]) -> None:
    width = pdf.w - 2 * _MARGIN - 70  # the stamp sits on the right
    rows = [
        ("本金 Principal", doc["principal"]["fen"], 10),
        ("滞纳金 Late fee", doc["late_fee"]["fen"], 10),
        ("实缴金额合计 Total paid", doc["total"]["fen"], 14),
    ]
    pdf.set_text_color(*_INK)
    for label, fen, size in rows:
        pdf.set_font(_FONT, size=10)
        pdf.cell(width - 55, 7.5, label, align=Align.R)
        pdf.set_font(_FONT, size=size)
        _bold(pdf, size > 10)
        pdf.cell(
            55,
            7.5,
            f"¥ {format_fen(fen)}  {doc['currency']}",
            align=Align.R,
            new_x=XPos.LMARGIN,
            new_y=YPos.NEXT,
        )
        _bold(pdf, False)
    pdf.ln(6)


def _stamp(pdf: FPDF, cx: float, cy: float) -> None:
    """A red round seal: two rings, the platform's name around the top, a star, 电子签章."""
    radius = 19.0
    pdf.set_draw_color(*_RED)
    pdf.set_fill_color(*_RED)
    pdf.set_text_color(*_RED)
    pdf.set_line_width(1.1)
    pdf.circle(cx, cy + radius, radius)
    pdf.set_line_width(0.3)
    pdf.circle(cx, cy + radius, radius - 1.6)
    pdf.star(cx, cy + radius, 2.2, 5.6, 5, style="F")
    text = "非税缴款平台电子签章专用"
    pdf.set_font(_FONT, size=8.5)
    span = 220.0  # degrees of the arc the text covers, centred on the top
    step = span / max(len(text) - 1, 1)
    for index, char in enumerate(text):
        angle = -span / 2 + index * step  # 0 = top, clockwise positive
        rad = math.radians(angle)
        r_text = radius - 5.2
        x = cx + r_text * math.sin(rad)
        y = cy + radius - r_text * math.cos(rad)
        w = pdf.get_string_width(char)
        with pdf.rotation(-angle, x, y):
            pdf.text(x - w / 2, y + 1.2, char)
    pdf.set_font(_FONT, size=7)
    label = "feishui"
    pdf.text(cx - pdf.get_string_width(label) / 2, cy + radius + 10, label)
    pdf.set_line_width(0.2)
    pdf.set_fill_color(255)
    pdf.set_text_color(*_INK)


def _verification(pdf: FPDF, receipt: Receipt, url: str) -> None:
    width = pdf.w - 2 * _MARGIN
    text_width = width - _QR - 12
    height = _QR + 14
    limit = pdf.h - 25
    if pdf.get_y() + height > limit:
        pdf.add_page()
    top = max(pdf.get_y(), limit - height)
    pdf.set_draw_color(*_RULE)
    pdf.set_dash_pattern(dash=1, gap=1)
    pdf.line(_MARGIN, top, pdf.w - _MARGIN, top)
    pdf.set_dash_pattern()
    top += 4
    qr_x = pdf.w - _MARGIN - _QR - 2
    pdf.image(io.BytesIO(qr_png(url)), x=qr_x, y=top, w=_QR, h=_QR)
    pdf.set_xy(_MARGIN, top + 1)
    pdf.set_text_color(*_INK)
    pdf.set_font(_FONT, size=11)
    _bold(pdf, True)
    pdf.cell(text_width, 6, "扫码验真  Scan to verify", new_x=XPos.LMARGIN, new_y=YPos.NEXT)
    _bold(pdf, False)
    pdf.ln(1)
    pdf.set_font(_FONT, size=8.5)
    lines = [
        (_INK, "凭票据号码和校验码在线核验，或用公布的公钥离线核验签名。"),
        (
            _MUTED,
            "Verify online with the number and check code, or offline with the "
            "published public key.",
        ),
        (_INK, url),
        (_MUTED, f"签章密钥 Key id：{receipt.key_id}  ·  算法 Algorithm：{ALGORITHM}"),
        (_MUTED, f"签名指纹 Signature fingerprint：{signature_fingerprint(receipt.signature)}"),
        (_MUTED, f"内容摘要 SHA-256：{receipt.payload_sha256[:32]}…"),
    ]
    for color, text in lines:
        pdf.set_text_color(*color)
        pdf.set_x(_MARGIN)
        _paragraph(pdf, text, text_width, 4.4)
