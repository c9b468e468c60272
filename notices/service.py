"""Issuing and managing payment notices: create (one or a batch), read, list, cancel, expire.

Every function takes the caller's session and flushes; the edge commits. A department only
ever reaches its own notices: another department's notice is "not found". Issuing a notice
posts nothing to the ledger (docs/decisions/0002-notices-post-nothing-until-paid.md).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import Select, insert, select, update
from sqlalchemy.dialects import sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from clearing.errors import Conflict, NotFound, ValidationError
from clearing.money import format_fen
from clearing.pii import mask_id_number, mask_name
from notices import bulk, insert_pg
from notices.catalogue import Item, cached_items, may_use
from notices.codes import generate_code
from notices.departments import Principal
from notices.documents import NoticeDocument, NoticeLine
from notices.events import record_event
from notices.fees import (
    SHANGHAI,
    TRAFFIC_FINE_RULE,
    AmountDue,
    LateFeeRule,
    amount_due,
    business_date,
    rule_from_dict,
    rule_to_dict,
    traffic_fine_due_date,
)
from notices.models import Notice, NoticeItem
from notices.privacy import PayerVault
from notices.schemas import FieldError, ItemIn, NoticeCreate

#: Largest principal of one notice: 1,000,000.00 yuan; anything bigger is a typo.
MAX_PRINCIPAL_FEN = 100_000_000
#: Days after the due date a notice can still be paid, by kind (see docs/api.md).
EXPIRY_DAYS = {"traffic_fine": 90, "tuition": 30, "service_fee": 0}
MAX_DAYS_AHEAD = 2 * 365
MAX_DECISION_AGE_DAYS = 5 * 365
CODE_ATTEMPTS = 5
PAGE_LIMIT = 100


# ------------------------------------------------------------------------------ creating


@dataclass
class Prepared:
    """A validated, priced notice ready to insert (no code or ciphertext yet)."""

    request: NoticeCreate
    principal: int
    rule: LateFeeRule
    due_date: date
    expires_on: date
    lines: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Created:
    index: int
    id: int
    payment_code: str
    principal: int
    due_date: date


@dataclass(frozen=True)
class Rejected:
    index: int
    errors: list[FieldError]


@dataclass(frozen=True)
class Issued:
    """A notice just inserted by :func:`issue_notice`, with what its response needs."""

    id: int
    payment_code: str
    notice: Prepared
    payer_id_number_masked: str | None
    created_at: datetime


def today_in_shanghai() -> date:
    """Today's Asia/Shanghai calendar date."""
    return business_date(datetime.now(UTC))


def create_notice(
    session: Session,
    who: Principal,
    request: NoticeCreate,
    vault: PayerVault,
    *,
    today: date | None = None,
) -> Notice:
    """Issue one notice and return it as stored (see :func:`issue_notice`)."""
    issued = issue_notice(session, who, request, vault, today=today)
    return get_notice(session, who.department_id, issued.id)


def issue_notice(
    session: Session,
    who: Principal,
    request: NoticeCreate,
    vault: PayerVault,
    *,
    today: date | None = None,
) -> Issued:
    """Issue one notice; raise :class:`ValidationError` naming the offending field.

    The notice (a taken payment code inserts nothing, and a fresh code is drawn) and its
    lines: one statement on PostgreSQL (:mod:`notices.insert_pg`), two on SQLite. Nothing is
    read back: :class:`Issued` holds what was inserted.
    """
    today = today or today_in_shanghai()
    catalogue = cached_items(session, (item.item_code for item in request.items))
    prepared = prepare(request, who, catalogue, today)
    now = datetime.now(UTC)
    for _attempt in range(CODE_ATTEMPTS):
        code = generate_code(who.region_code, today.year)
        row = _notice_row(who, prepared, code, vault, now)
        notice_id = _insert_one(session, row, prepared)
        if notice_id is not None:
            return Issued(notice_id, code, prepared, row["payer_id_number_masked"], now)
    raise Conflict("could not allocate a unique payment code; retry the request")


def _insert_one(session: Session, row: dict[str, Any], p: Prepared) -> int | None:
    """Insert one notice row and its lines; its id, or None when its payment code is already
    taken (nothing is inserted then)."""
    session.flush()  # Core statements skip autoflush; the row may refer to pending rows
    if session.get_bind().dialect.name == "postgresql":
        return insert_pg.insert_notice(session, row, p.lines)
    notice_id: int | None = session.connection().execute(_SQLITE_INSERT_NOTICE, row).scalar()
    if notice_id is not None:
        lines = [{"notice_id": notice_id, **line} for line in p.lines]
        session.connection().execute(_INSERT_NOTICE_LINES, lines)
    return notice_id


# SQLite: one notice (a taken code inserts nothing), then its lines; prebuilt Core statements,
# compiled once and cached. PostgreSQL runs notices.insert_pg instead.
_SQLITE_INSERT_NOTICE = (
    sqlite.insert(Notice.__table__)
    .on_conflict_do_nothing(index_elements=["payment_code"])
    .returning(Notice.__table__.c.id)
)
_INSERT_NOTICE_LINES = insert(NoticeItem.__table__)


def create_batch(
    session: Session,
    who: Principal,
    requests: Sequence[NoticeCreate | list[FieldError]],
    vault: PayerVault,
    *,
    today: date | None = None,
) -> list[Created | Rejected]:
    """Issue the valid notices of a batch in this transaction; report the others by index.

    Each notice is checked on its own: one bad notice does not stop the others. Inserts are
    bulk (a few statements per thousand notices), with codes drawn and checked in advance.
    """
    today = today or today_in_shanghai()
    codes = {i.item_code for r in requests if isinstance(r, NoticeCreate) for i in r.items}
    catalogue = cached_items(session, codes)
    outcomes: list[Created | Rejected] = []
    ready: list[tuple[int, Prepared]] = []
    for index, request in enumerate(requests):
        if not isinstance(request, NoticeCreate):
            outcomes.append(Rejected(index, request))
            continue
        try:
            ready.append((index, prepare(request, who, catalogue, today)))
        except ValidationError as exc:
            outcomes.append(Rejected(index, [FieldError(field=exc.field, detail=exc.detail)]))
    if ready:
        outcomes.extend(_insert(session, who, ready, vault, today))
    return sorted(outcomes, key=lambda outcome: outcome.index)


def prepare(
    request: NoticeCreate, who: Principal, catalogue: dict[str, Item], today: date
) -> Prepared:
    """Check a notice against the catalogue and the calendar, and price it (pure)."""
    lines = [_line(n, item, request.kind, who, catalogue) for n, item in enumerate(request.items)]
    principal = sum(line["amount"] for line in lines)
    if principal > MAX_PRINCIPAL_FEN:
        raise ValidationError("the notice total exceeds 1000000.00", field="items")
    rule = _late_fee_rule(request.kind, lines, catalogue)
    due = _due_date(request, today)
    expires_on = _expires_on(request, due)
    return Prepared(request, principal, rule, due, expires_on, lines)


def _line(
    n: int, wanted: ItemIn, kind: str, who: Principal, catalogue: dict[str, Item]
) -> dict[str, Any]:
    item = catalogue.get(wanted.item_code)
    if item is None or not may_use(item, who.department_kind, who.department_name):
        raise ValidationError(
            f"unknown item code {wanted.item_code!r} (see GET /v1/catalogue)",
            field=f"items[{n}].item_code",
        )
    if item.kind != kind:
        raise ValidationError(
            f"item {item.code} is a {item.kind} item, not {kind}", field=f"items[{n}].item_code"
        )
    unit = _unit_amount(item, wanted.amount_fen, n)
    return {
        "line_no": n + 1,
        "catalogue_item_id": item.id,
        "item_code": item.code,
        "name_zh": item.name_zh,
        "name_en": item.name_en,
        "quantity": wanted.quantity,
        "unit_amount": unit,
        "amount": unit * wanted.quantity,
        "shares": item.shares,  # one object per item: JSON-encoded once per batch
        "revenue_code": item.revenue_code,
        "budget_level": item.budget_level,
    }


def _unit_amount(item: Item, given: int | None, n: int) -> int:
    """The unit price of line ``n`` (field names are only formatted for an error)."""
    if item.amount is not None:
        if given is not None and given != item.amount:
            raise ValidationError(
                f"item {item.code} has a fixed amount of {format_fen(item.amount)}; "
                "omit amount or send exactly that",
                field=f"items[{n}].amount",
            )
        return item.amount
    if given is None:
        raise ValidationError(
            f"item {item.code} has a variable amount: amount is required",
            field=f"items[{n}].amount",
        )
    if given > item.max_amount:
        raise ValidationError(
            f"amount exceeds the maximum of {format_fen(item.max_amount)} for item {item.code}",
            field=f"items[{n}].amount",
        )
    return given


def _late_fee_rule(
    kind: str, lines: list[dict[str, Any]], catalogue: dict[str, Item]
) -> LateFeeRule:
    if kind == "traffic_fine":
        return TRAFFIC_FINE_RULE  # statutory (Administrative Penalty Law art. 72)
    rules = {catalogue[line["item_code"]].rule for line in lines}
    if len(rules) > 1:
        raise ValidationError(
            "items with different late-fee rules cannot share a notice", field="items"
        )
    return rules.pop()


def _due_date(request: NoticeCreate, today: date) -> date:
    if request.kind == "traffic_fine":
        return _traffic_fine_due(request, today)
    if request.decision_date is not None:
        raise ValidationError("decision_date is only for traffic fines", field="decision_date")
    if request.due_date is None:
        raise ValidationError(f"due_date is required for {request.kind} notices", field="due_date")
    if request.due_date < today:
        raise ValidationError("due_date is in the past", field="due_date")
    _not_too_far(request.due_date, today, "due_date")
    return request.due_date


def _traffic_fine_due(request: NoticeCreate, today: date) -> date:
    decision = request.decision_date
    if decision is None:
        raise ValidationError("decision_date is required for traffic fines", field="decision_date")
    if decision > today:
        raise ValidationError("decision_date is in the future", field="decision_date")
    if (today - decision).days > MAX_DECISION_AGE_DAYS:
        raise ValidationError("decision_date is more than 5 years ago", field="decision_date")
    due = request.due_date or traffic_fine_due_date(decision)
    if due < decision:
        raise ValidationError("due_date is before decision_date", field="due_date")
    _not_too_far(due, today, "due_date")
    return due


def _not_too_far(value: date, today: date, name: str) -> None:
    if (value - today).days > MAX_DAYS_AHEAD:
        raise ValidationError(f"{name} is more than 2 years ahead", field=name)


def _expires_on(request: NoticeCreate, due: date) -> date:
    if request.expires_on is None:
        return due + timedelta(days=EXPIRY_DAYS[request.kind])
    if request.expires_on < due:
        raise ValidationError("expires_on is before the due date", field="expires_on")
    if (request.expires_on - due).days > MAX_DAYS_AHEAD:
        raise ValidationError(
            "expires_on is more than 2 years after the due date", field="expires_on"
        )
    return request.expires_on


def _insert(
    session: Session,
    who: Principal,
    ready: list[tuple[int, Prepared]],
    vault: PayerVault,
    today: date,
) -> list[Created]:
    """Insert notices and their lines in bulk; draw fresh codes if one was taken meanwhile."""
    now = datetime.now(UTC)
    for _attempt in range(CODE_ATTEMPTS):
        codes = _free_codes(session, who.region_code, today.year, len(ready))
        try:
            with session.begin_nested():
                ids = _insert_notices(session, who, ready, codes, vault, now)
        except IntegrityError as exc:
            if "payment_code" not in str(exc.orig):
                raise
            continue  # another transaction took one of the codes since we checked
        _insert_lines(session, ids, [p for _, p in ready])
        return [
            Created(index, id_, code, p.principal, p.due_date)
            for (index, p), id_, code in zip(ready, ids, codes, strict=True)
        ]
    raise Conflict("could not allocate unique payment codes; retry the request")


def _insert_notices(
    session: Session,
    who: Principal,
    ready: list[tuple[int, Prepared]],
    codes: list[str],
    vault: PayerVault,
    now: datetime,
) -> list[int]:
    ids = bulk.allocate_ids(session, Notice.__table__, len(ready))
    rows = [
        _notice_row(who, p, code, vault, now, id_=id_)
        for id_, (_, p), code in zip(ids, ready, codes, strict=True)
    ]
    bulk.insert_rows(session, Notice.__table__, rows)
    return ids


def _free_codes(session: Session, region: str, year: int, count: int) -> list[str]:
    """``count`` distinct codes, none already used (checked in chunks)."""
    codes: list[str] = []
    while len(codes) < count:
        fresh = list(dict.fromkeys(generate_code(region, year) for _ in range(count - len(codes))))
        fresh = [code for code in fresh if code not in codes]
        taken = _taken(session, fresh)
        codes.extend(code for code in fresh if code not in taken)
    return codes


def _taken(session: Session, codes: list[str]) -> set[str]:
    return bulk.existing_values(session, Notice.__table__.c.payment_code, codes)


def _notice_row(
    who: Principal,
    p: Prepared,
    code: str,
    vault: PayerVault,
    now: datetime,
    *,
    id_: int | None = None,
) -> dict[str, Any]:
    """The columns of a new notice (with its id when given); payer data sealed under ``code``."""
    request, payer = p.request, p.request.payer
    id_number, phone = payer.id_number, payer.phone
    row = {
        "department_id": who.department_id,
        "payment_code": code,
        "kind": request.kind,
        "status": "unpaid",
        "principal": p.principal,
        "late_fee_rule": _rule_dict(p.rule),
        "decision_date": request.decision_date,
        "due_date": p.due_date,
        "expires_on": p.expires_on,
        "reference": request.reference,
        "description": request.description,
        "payer_name_enc": vault.seal(code, "payer_name", payer.name),
        "payer_name_masked": mask_name(payer.name),
        "payer_id_number_enc": id_number and vault.seal(code, "payer_id_number", id_number),
        "payer_id_number_masked": id_number and mask_id_number(id_number),
        "payer_id_number_hash": id_number and vault.id_number_hash(id_number),
        "payer_phone_enc": phone and vault.seal(code, "payer_phone", phone),
        "return_url": request.return_url,
        "metadata": request.metadata,
        "created_at": now,
        "updated_at": now,
    }
    if id_ is not None:
        row["id"] = id_  # set here rather than copying the row into a new dict in a batch
    return row


@lru_cache(maxsize=64)
def _rule_dict(rule: LateFeeRule) -> dict[str, Any]:
    """``rule_to_dict(rule)``, one shared object per rule (so a batch encodes it once).

    Shared: never mutate the result.
    """
    return rule_to_dict(rule)


def _insert_lines(session: Session, ids: list[int], prepared: list[Prepared]) -> None:
    line_count = sum(len(p.lines) for p in prepared)
    line_ids = iter(bulk.allocate_ids(session, NoticeItem.__table__, line_count))
    rows = [
        {"id": next(line_ids), "notice_id": id_, **line}
        for id_, p in zip(ids, prepared, strict=True)
        for line in p.lines
    ]
    bulk.insert_rows(session, NoticeItem.__table__, rows)


# ------------------------------------------------------------------------------ reading


@dataclass(frozen=True)
class NoticeFilter:
    """Filters of the notice list; dates are Asia/Shanghai calendar days, bounds inclusive."""

    status: str | None = None
    kind: str | None = None
    reference: str | None = None
    created_from: date | None = None
    created_to: date | None = None
    due_from: date | None = None
    due_to: date | None = None


@dataclass(frozen=True)
class Page:
    notices: list[Notice]
    next_cursor: str | None


def get_notice(session: Session, department_id: int, notice_id: int) -> Notice:
    """The department's notice ``notice_id``; another department's is :class:`NotFound`."""
    notice = session.scalar(
        select(Notice).where(Notice.id == notice_id, Notice.department_id == department_id)
    )
    if notice is None:
        raise NotFound(f"no notice {notice_id}")
    return notice


def list_notices(
    session: Session,
    department_id: int,
    filters: NoticeFilter,
    *,
    limit: int = PAGE_LIMIT,
    cursor: str | None = None,
) -> Page:
    """A page of the department's notices, newest first, in a stable order (by id).

    ``cursor`` is the opaque ``next_cursor`` of the previous page.
    """
    if not 1 <= limit <= PAGE_LIMIT:
        raise ValidationError(f"limit must be 1-{PAGE_LIMIT}", field="limit")
    query = _filtered(select(Notice).where(Notice.department_id == department_id), filters)
    if cursor is not None:
        query = query.where(Notice.id < decode_cursor(cursor))
    notices = list(session.scalars(query.order_by(Notice.id.desc()).limit(limit + 1)))
    more = len(notices) > limit
    notices = notices[:limit]
    return Page(notices, encode_cursor(notices[-1].id) if more else None)


def _filtered(query: Select[tuple[Notice]], f: NoticeFilter) -> Select[tuple[Notice]]:
    if f.status is not None:
        query = query.where(Notice.status == f.status)
    if f.kind is not None:
        query = query.where(Notice.kind == f.kind)
    if f.reference is not None:
        query = query.where(Notice.reference == f.reference)
    if f.created_from is not None:
        query = query.where(Notice.created_at >= _start_of(f.created_from))
    if f.created_to is not None:
        query = query.where(Notice.created_at < _start_of(f.created_to + timedelta(days=1)))
    if f.due_from is not None:
        query = query.where(Notice.due_date >= f.due_from)
    if f.due_to is not None:
        query = query.where(Notice.due_date <= f.due_to)
    return query


def _start_of(day: date) -> datetime:
    """The UTC moment an Asia/Shanghai calendar day begins."""
    return datetime.combine(day, time(), SHANGHAI).astimezone(UTC)


def encode_cursor(notice_id: int) -> str:
    """An opaque cursor for "notices older than ``notice_id``"."""
    return base64.urlsafe_b64encode(f"n1:{notice_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The notice id in a cursor from :func:`encode_cursor`; anything else is a 422."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, number = text.partition(":")
        if prefix == "n1" and number.isdigit():
            return int(number)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        pass
    raise ValidationError("cursor is not one this API returned", field="cursor")


def notice_amount_due(notice: Notice, on: date | None = None) -> AmountDue:
    """Principal, late fee and total owed when paying on business date ``on`` (default today)."""
    rule = rule_from_dict(notice.late_fee_rule)
    return amount_due(notice.principal, notice.due_date, on or today_in_shanghai(), rule)


# ------------------------------------------------------------------------------ changing


def cancel_notice(session: Session, department_id: int, notice_id: int) -> Notice:
    """Cancel an unpaid notice; any other status is a :class:`Conflict`.

    A single conditional UPDATE, so a payment being captured at the same moment cannot be
    overwritten: whichever commits first wins and the other sees the new status.
    """
    result = session.execute(
        update(Notice)
        .where(
            Notice.id == notice_id, Notice.department_id == department_id, Notice.status == "unpaid"
        )
        .values(status="cancelled", updated_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    notice = get_notice(session, department_id, notice_id)
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise Conflict(
            f"notice {notice_id} is {notice.status}; only an unpaid notice can be cancelled",
            field="status",
        )
    session.refresh(notice)
    return notice


def expire_notices(session: Session, as_of: date) -> int:
    """Mark unpaid notices whose ``expires_on`` is before ``as_of`` expired; return how many.

    Idempotent: a second run on the same day finds nothing left to expire.
    """
    now = datetime.now(UTC)
    expired = list(
        session.scalars(
            update(Notice)
            .where(Notice.status == "unpaid", Notice.expires_on < as_of)
            .values(status="expired", updated_at=now)
            .returning(Notice.id)
            .execution_options(synchronize_session=False)
        )
    )
    for start in range(0, len(expired), 500):
        chunk = expired[start : start + 500]
        for notice in session.scalars(select(Notice).where(Notice.id.in_(chunk))):
            record_event(
                session, notice, "notice.expired", {"expired_on": as_of.isoformat()}, now=now
            )
    return len(expired)


# ------------------------------------------------------------------------------ documents


def pay_url(public_base_url: str, notice: Notice) -> str:
    """The public pay page of a notice (what the QR code encodes)."""
    return f"{public_base_url.rstrip('/')}/pay/{notice.payment_code}"


def notice_document(notice: Notice, public_base_url: str) -> NoticeDocument:
    """What the printable notice shows: masked payer name, lines, total, due date, QR link."""
    lines = tuple(NoticeLine(i.name_zh, i.name_en, i.quantity, i.amount) for i in notice.items)
    return NoticeDocument(
        payment_code=notice.payment_code,
        department_name=notice.department.name,
        kind=notice.kind,
        payer_name_masked=notice.payer_name_masked,
        reference=notice.reference,
        description=notice.description,
        lines=lines,
        principal_fen=notice.principal,
        due_date=notice.due_date,
        issued_on=business_date(aware(notice.created_at)),
        pay_url=pay_url(public_base_url, notice),
        late_fee_note=late_fee_note(rule_from_dict(notice.late_fee_rule)),
    )


def late_fee_note(rule: LateFeeRule) -> str | None:
    """A bilingual sentence describing a late-fee rule, or None when there is none."""
    if rule.kind == "none" or rule.basis_points_per_day == 0:
        return None
    rate, cap = _percent(rule.basis_points_per_day), _percent(rule.cap_bp_of_principal)
    return (
        f"逾期每日加收本金的{rate}，累计不超过本金的{cap}。"
        f"A late fee of {rate} of the amount is added per day overdue, "
        f"up to {cap} of the amount."
    )


def _percent(basis_points: int) -> str:
    """``300 -> "3%"``, ``250 -> "2.5%"``, in integer arithmetic."""
    whole, frac = divmod(basis_points, 100)
    return f"{whole}.{frac:02d}".rstrip("0").rstrip(".") + "%"


def aware(moment: datetime) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive UTC values)."""
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
