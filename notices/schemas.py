"""Request and response models of the department API (pydantic v2).

Requests check shape only (types, lengths, formats; unknown fields are refused); rules that
need the catalogue or today's date live in :mod:`notices.service`. Money travels as strings of
yuan with two decimals ("200.00") and is parsed strictly into integer fen.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    field_validator,
)
from pydantic import ValidationError as PydanticValidationError

from clearing.errors import FeishuiError
from clearing.money import format_fen, parse_fen
from clearing.pii import validate_id_number

NoticeKind = Literal["traffic_fine", "tuition", "service_fee"]
NoticeStatus = Literal["unpaid", "paid", "cancelled", "expired", "refunded"]
MAX_BATCH = 10_000
MAX_ITEMS = 50
MAX_METADATA_KEYS = 15
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_PHONE = re.compile(r"\+?[0-9][0-9 -]{4,19}")


def _iso_date(value: Any) -> Any:
    """Only ``YYYY-MM-DD`` strings (or dates) are dates: no timestamps, no datetimes."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _DATE.fullmatch(value):
        raise ValueError("dates must be strings like 2026-11-01")
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value} is not a calendar date") from None


IsoDate = Annotated[date, BeforeValidator(_iso_date)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]


def _feishui_to_value_error(exc: FeishuiError) -> ValueError:
    return ValueError(exc.detail)


class Strict(BaseModel):
    """Refuses unknown fields so that a typo is an error, not a silently ignored value."""

    model_config = ConfigDict(extra="forbid")


class PayerIn(Strict):
    name: Annotated[Text, StringConstraints(max_length=100)]
    id_number: str | None = Field(None, description="18-character resident ID number")
    phone: str | None = Field(None, max_length=20)

    @field_validator("id_number")
    @classmethod
    def _id_number(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return validate_id_number(value)
        except FeishuiError as exc:
            raise _feishui_to_value_error(exc) from None

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        if value is not None and not _PHONE.fullmatch(value):
            raise ValueError("phone must be 5-20 digits, optionally with +, spaces or hyphens")
        return value


class ItemIn(Strict):
    item_code: Annotated[str, StringConstraints(min_length=1, max_length=32)]
    amount: str | None = Field(
        None,
        description='Unit price in yuan ("1200.00"); required for variable items only',
        examples=["200.00"],
    )
    quantity: int = Field(1, ge=1, le=1000, strict=True)

    @field_validator("amount")
    @classmethod
    def _amount(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            fen = parse_fen(value)
        except FeishuiError as exc:
            raise _feishui_to_value_error(exc) from None
        if fen <= 0:
            raise ValueError("amount must be greater than 0.00")
        return value

    @property
    def amount_fen(self) -> int | None:
        """The unit price in fen, or None when not given."""
        return None if self.amount is None else parse_fen(self.amount)


def _metadata(value: dict[str, str]) -> dict[str, str]:
    if len(value) > MAX_METADATA_KEYS:
        raise ValueError(f"metadata holds at most {MAX_METADATA_KEYS} keys")
    for key, item in value.items():
        if not 1 <= len(key) <= 40:
            raise ValueError("metadata keys must be 1-40 characters")
        if len(item) > 500:
            raise ValueError(f"metadata value of {key!r} exceeds 500 characters")
    return value


class NoticeCreate(Strict):
    """A notice to issue. Traffic fines give ``decision_date``; other kinds give ``due_date``."""

    kind: NoticeKind
    payer: PayerIn
    items: list[ItemIn] = Field(min_length=1, max_length=MAX_ITEMS)
    decision_date: IsoDate | None = Field(
        None, description="Traffic fines: date of the penalty decision; due = decision + 15 days"
    )
    due_date: IsoDate | None = None
    expires_on: IsoDate | None = Field(
        None, description="Last day the notice can be paid (default depends on the kind)"
    )
    reference: Annotated[Text, StringConstraints(max_length=64)]
    description: Annotated[Text, StringConstraints(max_length=500)]
    return_url: str | None = Field(None, max_length=500)
    metadata: dict[str, str] = Field(default_factory=dict)

    @field_validator("return_url")
    @classmethod
    def _return_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("https", "http") or not parts.netloc:
            raise ValueError("return_url must be an absolute http(s) URL")
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata(cls, value: dict[str, str]) -> dict[str, str]:
        return _metadata(value)


class BatchCreate(Strict):
    """Up to 10,000 notices; each is validated on its own (see docs/api.md)."""

    notices: list[Any] = Field(
        min_length=1,
        max_length=MAX_BATCH,
        description="1-10,000 notices, each shaped like the body of POST /v1/notices",
    )


class FieldError(BaseModel):
    field: str | None
    detail: str


def field_path(loc: Iterable[str | int]) -> str:
    """``("items", 0, "amount") -> "items[0].amount"``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


def describe_errors(errors: Sequence[Any]) -> list[FieldError]:
    """Turn pydantic error dicts into ``{field, detail}`` pairs with readable messages."""
    described = []
    for error in errors:
        message = str(error.get("msg", "invalid"))
        message = message.removeprefix("Value error, ")
        if error.get("type") == "extra_forbidden":
            message = "unknown field"
        described.append(FieldError(field=field_path(error.get("loc", ())) or None, detail=message))
    return described


def parse_batch_entry(raw: Any) -> NoticeCreate | list[FieldError]:
    """Validate one notice of a batch; return it, or the problems found."""
    try:
        return NoticeCreate.model_validate(raw)
    except PydanticValidationError as exc:
        return describe_errors(exc.errors())


_NOTICE_LIST = TypeAdapter(list[NoticeCreate])


def parse_batch(raws: list[Any]) -> list[NoticeCreate | list[FieldError]]:
    """Validate every notice of a batch: each one, or the problems found in it, by index.

    The whole list is validated in one call; only when some entry fails is each entry
    validated on its own, to tell the good ones from the bad.
    """
    try:
        return list(_NOTICE_LIST.validate_python(raws))
    except PydanticValidationError:
        return [parse_batch_entry(raw) for raw in raws]


# ------------------------------------------------------------------------------ responses


class PayerOut(BaseModel):
    name: str = Field(description="Full name, shown only to the department that owns the notice")
    id_number: str | None = Field(None, description="Always masked, e.g. 5101**********1234")
    phone: str | None = None


class ItemOut(BaseModel):
    item_code: str
    name_zh: str
    name_en: str
    quantity: int
    unit_amount: str
    amount: str


class Links(BaseModel):
    self: str
    pay: str
    qr_code: str
    document: str


class NoticeOut(BaseModel):
    id: int
    payment_code: str
    kind: NoticeKind
    status: NoticeStatus
    amount: str = Field(description="Principal in yuan, without late fees")
    amount_due: str = Field(description="Principal plus late fee if paid today (Asia/Shanghai)")
    currency: Literal["CNY"] = "CNY"
    decision_date: date | None
    due_date: date
    expires_on: date
    reference: str
    description: str
    payer: PayerOut
    items: list[ItemOut]
    return_url: str | None
    metadata: dict[str, str]
    created_at: datetime
    links: Links


class NoticePage(BaseModel):
    data: list[NoticeOut]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at end")


class AmountDueOut(BaseModel):
    notice_id: int
    status: NoticeStatus
    on: date
    due_date: date
    days_overdue: int
    principal: str
    late_fee: str
    total: str


class BatchResult(BaseModel):
    index: int
    result: Literal["created", "rejected"]
    id: int | None = None
    payment_code: str | None = None
    amount: str | None = None
    due_date: date | None = None
    errors: list[FieldError] | None = None


class BatchOut(BaseModel):
    created: int
    rejected: int
    results: list[BatchResult]


class CatalogueItemOut(BaseModel):
    item_code: str
    name_zh: str
    name_en: str
    kind: NoticeKind
    amount: str = Field(description='Standard unit price in yuan, or "variable"')


class CatalogueOut(BaseModel):
    data: list[CatalogueItemOut]


def yuan(fen: int) -> str:
    """Integer fen as a yuan string with two decimals."""
    return format_fen(fen)
