"""Reads and writes of ledger rows. Knows SQL; knows nothing of HTTP, gateways or files."""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    func,
    insert,
    select,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from clearing.db import owner_engine, pg_execute, pg_execute_on
from clearing.errors import ValidationError
from clearing.ledger import chart
from clearing.ledger.core import AccountType, Entry, Posting
from clearing.ledger.models import Account, ChainLink, JournalEntry
from clearing.ledger.models import Posting as PostingRow


@dataclass(frozen=True, slots=True)
class AccountRef:
    id: int
    code: str
    type: AccountType
    currency: str


# Accounts are never updated or deleted, so a committed account can be cached per engine.
_cache: weakref.WeakKeyDictionary[Engine, dict[str, AccountRef]] = weakref.WeakKeyDictionary()


def clear_account_cache() -> None:
    """Forget cached accounts (tests that wipe the database call this)."""
    _cache.clear()


_PG_SELECT_ACCOUNTS = (
    "SELECT id, code, type, currency FROM ledger_accounts WHERE code = ANY(%(codes)s::text[])"
)


def committed_accounts(conn: Connection, codes: Iterable[str]) -> dict[str, AccountRef] | None:
    """PostgreSQL, on a connection outside any transaction (:func:`clearing.db.pg_autocommit`):
    the accounts of ``codes`` from the engine's cache, the others read (committed, so cached in
    turn). None if one does not exist yet: only :meth:`LedgerRepository.accounts`, in a
    transaction, opens accounts."""
    cache = _cache.setdefault(owner_engine(conn.engine), {})
    wanted = set(codes)
    found = {code: cache[code] for code in wanted if code in cache}
    if len(found) < len(wanted):
        missing = sorted(wanted - found.keys())
        for id_, code, type_, currency in pg_execute_on(
            conn, _PG_SELECT_ACCOUNTS, {"codes": missing}
        ):
            found[code] = cache[code] = AccountRef(id_, code, AccountType(type_), currency)
    return found if len(found) == len(wanted) else None


def upsert(session: Session, model: type) -> postgresql.Insert | sqlite.Insert:
    """An INSERT that supports ON CONFLICT on both PostgreSQL and SQLite."""
    dialect = session.get_bind().dialect.name
    return (postgresql if dialect == "postgresql" else sqlite).insert(model)


# SQLite: the entry, then its postings (two prebuilt Core statements, compiled once and cached).
# PostgreSQL runs :data:`PG_ENTRY_CTES` instead.
_SQLITE_INSERT_ENTRY = (
    sqlite.insert(JournalEntry.__table__)
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(JournalEntry.__table__.c.id)
)
_INSERT_POSTINGS = insert(PostingRow.__table__)


def pg_entry_ctes(source: str | None = None) -> str:
    """PostgreSQL: an entry and its postings in one round trip, as two data-modifying CTEs for a
    ``WITH`` (parameters: :func:`pg_entry_params`). A replayed key inserts no entry, so no
    postings: ``new_entry`` is then empty. Other statements may add CTEs that use
    ``new_entry.id`` (the settling capture does: :mod:`clearing.payments.settle_pg`). Each
    posting's ``leg`` is its place in the arrays (``WITH ORDINALITY``, from 1) and
    ``entry_legs`` the entry's ``legs``. The balance trigger is deferred to the commit, and the
    postings' foreign key is checked at the end of the statement, after the entry.

    ``source``: the name of an earlier CTE; the entry is then inserted once per row of it (the
    settling capture's guard: no row, no entry, nothing at all)."""
    values = """%(idempotency_key)s, %(business_date)s, %(created_at)s, %(description)s,
        %(metadata)s, %(ref_type)s, %(ref_id)s, %(reverses_id)s, %(content_hash)s, %(legs)s"""
    rows = f"VALUES ({values})" if source is None else f"SELECT {values} FROM {source}"
    return f"""new_entry AS (
    INSERT INTO journal_entries (idempotency_key, business_date, created_at, description,
        metadata, ref_type, ref_id, reverses_id, content_hash, legs)
    {rows}
    ON CONFLICT (idempotency_key) DO NOTHING
    RETURNING id, legs
), new_postings AS (
    INSERT INTO postings (entry_id, leg, entry_legs, account_id, direction, amount, currency)
    SELECT new_entry.id, p.leg, new_entry.legs, p.account_id, p.direction, p.amount, p.currency
    FROM new_entry CROSS JOIN unnest(%(leg_account_id)s::bigint[], %(leg_direction)s::text[],
        %(leg_amount)s::bigint[], %(leg_currency)s::text[]) WITH ORDINALITY
        AS p (account_id, direction, amount, currency, leg)
    RETURNING entry_id
)"""


PG_ENTRY_CTES = pg_entry_ctes()
"""The entry CTEs of :func:`pg_entry_ctes` inserting one entry unconditionally."""

_PG_INSERT_ENTRY = f"WITH {PG_ENTRY_CTES} SELECT id FROM new_entry"


def pg_entry_params(
    entry: Entry, created_at: datetime, content_hash: str, accounts: Mapping[str, AccountRef]
) -> dict[str, Any]:
    """The parameters of :data:`PG_ENTRY_CTES` for ``entry``."""
    from psycopg.types.json import Json  # the column is json; psycopg sends dicts as Json

    values = _entry_values(entry, created_at, content_hash)
    values["metadata"] = Json(values["metadata"])
    values["leg_account_id"] = [accounts[p.account].id for p in entry.postings]
    values["leg_direction"] = [p.direction.value for p in entry.postings]
    values["leg_amount"] = [p.amount for p in entry.postings]
    values["leg_currency"] = [p.currency for p in entry.postings]
    return values


def _entry_values(entry: Entry, created_at: datetime, content_hash: str) -> dict[str, Any]:
    return {
        "idempotency_key": entry.idempotency_key,
        "business_date": entry.business_date,
        "created_at": created_at,
        "description": entry.description,
        "metadata": dict(entry.metadata),
        "ref_type": entry.ref_type,
        "ref_id": entry.ref_id,
        "reverses_id": entry.reverses_id,
        "content_hash": content_hash,
        "legs": len(entry.postings),
    }


def posting_rows(
    entry: Entry, entry_id: int, accounts: Mapping[str, AccountRef]
) -> list[dict[str, Any]]:
    """The ``postings`` rows of ``entry``: ``leg`` is the place in ``entry.postings`` (from 1)."""
    legs = len(entry.postings)
    return [
        {
            "entry_id": entry_id,
            "leg": leg,
            "entry_legs": legs,
            "account_id": accounts[p.account].id,
            "direction": p.direction.value,
            "amount": p.amount,
            "currency": p.currency,
        }
        for leg, p in enumerate(entry.postings, 1)
    ]


def utcnow() -> datetime:
    return datetime.now(UTC)


class LedgerRepository:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._opened_here: set[str] = set()

    # accounts -----------------------------------------------------------------------------
    def accounts(
        self, codes: Iterable[str] | Mapping[str, str], currency: str = "CNY"
    ) -> dict[str, AccountRef]:
        """Resolve account codes to accounts, opening chart-of-accounts kinds on first use, in
        the currency given per code (a mapping) or in ``currency``."""
        currencies = dict(codes) if isinstance(codes, Mapping) else dict.fromkeys(codes, currency)
        cache = _cache.setdefault(self.session.get_bind(), {})  # type: ignore[arg-type]
        wanted = set(currencies)
        found = {c: cache[c] for c in wanted if c in cache}
        missing = wanted - found.keys()
        if missing:
            existing = self._select(missing)
            if missing - existing.keys():
                self._open({c: currencies[c] for c in missing - existing.keys()})
                existing = self._select(missing)
            for code, ref in existing.items():
                found[code] = ref
                if code not in self._opened_here:  # never cache what may still roll back
                    cache[code] = ref
        return found

    def open_account(
        self, code: str, account_type: AccountType, currency: str, name: str
    ) -> AccountRef:
        stmt = (
            upsert(self.session, Account)
            .values(
                code=code,
                type=account_type.value,
                currency=currency,
                name=name,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["code"])
            .returning(Account.id)
        )
        if self.session.execute(stmt).first() is not None:
            self._opened_here.add(code)
        ref = self._select([code])[code]
        if (ref.type, ref.currency) != (account_type, currency):
            raise ValidationError(
                f"account {code} exists as {ref.type} in {ref.currency}", field="account"
            )
        return ref

    def _open(self, currencies: Mapping[str, str]) -> None:
        for code in sorted(currencies):
            account_type, name = chart.classify(code)
            self.open_account(code, account_type, currencies[code], name)

    def _select(self, codes: Iterable[str]) -> dict[str, AccountRef]:
        rows = self.session.execute(
            select(Account.id, Account.code, Account.type, Account.currency).where(
                Account.code.in_(list(codes))
            )
        )
        return {r.code: AccountRef(r.id, r.code, AccountType(r.type), r.currency) for r in rows}

    # entries ------------------------------------------------------------------------------
    def insert_entry(
        self, entry: Entry, created_at: datetime, content_hash: str, accounts: dict[str, AccountRef]
    ) -> int | None:
        """Insert the entry and its postings; ``None`` when the idempotency key already exists.

        PostgreSQL inserts both in one statement (:data:`PG_ENTRY_CTES`) on the driver;
        SQLite runs two prebuilt Core statements (compiled once and cached)."""
        if self.session.get_bind().dialect.name == "postgresql":
            params = pg_entry_params(entry, created_at, content_hash, accounts)
            rows = pg_execute(self.session, _PG_INSERT_ENTRY, params)
            return rows[0][0] if rows else None
        entry_id = self.session.execute(
            _SQLITE_INSERT_ENTRY, _entry_values(entry, created_at, content_hash)
        ).scalar()
        if entry_id is None:
            return None
        self.session.execute(_INSERT_POSTINGS, posting_rows(entry, entry_id, accounts))
        return entry_id

    def entry_by_key(self, key: str) -> JournalEntry | None:
        return self.session.scalars(
            select(JournalEntry).where(JournalEntry.idempotency_key == key)
        ).one_or_none()

    def entry(self, entry_id: int) -> JournalEntry | None:
        return self.session.get(JournalEntry, entry_id)

    def reversal_of(self, entry_id: int) -> JournalEntry | None:
        return self.session.scalars(
            select(JournalEntry).where(JournalEntry.reverses_id == entry_id)
        ).one_or_none()

    def entries_for(self, ref_type: str, ref_id: str) -> Sequence[JournalEntry]:
        return self.session.scalars(
            select(JournalEntry)
            .where(JournalEntry.ref_type == ref_type, JournalEntry.ref_id == ref_id)
            .order_by(JournalEntry.id)
        ).all()

    # balances -----------------------------------------------------------------------------
    def totals(
        self,
        *,
        as_of: date | None = None,
        at: datetime | None = None,
        codes: Sequence[str] | None = None,
    ) -> list[tuple[str, str, str, int, int]]:
        """(code, type, currency, debits, credits) per account, optionally up to a date/moment."""
        cond = [JournalEntry.id == PostingRow.entry_id]
        if as_of is not None:
            cond.append(JournalEntry.business_date <= as_of)
        if at is not None:
            cond.append(JournalEntry.created_at <= at)
        legs = (
            select(PostingRow.account_id, PostingRow.direction, PostingRow.amount)
            .join(JournalEntry, and_(*cond))
            .subquery()
        )
        debit = func.coalesce(func.sum(case((legs.c.direction == "D", legs.c.amount), else_=0)), 0)
        credit = func.coalesce(func.sum(case((legs.c.direction == "C", legs.c.amount), else_=0)), 0)
        stmt = (
            select(Account.code, Account.type, Account.currency, debit, credit)
            .outerjoin(legs, legs.c.account_id == Account.id)
            .group_by(Account.id, Account.code, Account.type, Account.currency)
            .order_by(Account.code)
        )
        if codes is not None:
            stmt = stmt.where(Account.code.in_(list(codes)))
        return [(r[0], r[1], r[2], int(r[3]), int(r[4])) for r in self.session.execute(stmt)]

    # chain --------------------------------------------------------------------------------
    def chain_head(self) -> ChainLink | None:
        return self.session.scalars(
            select(ChainLink).order_by(ChainLink.seq.desc()).limit(1)
        ).one_or_none()

    def unsealed(self, limit: int) -> list[tuple[int, str]]:
        sealed = select(ChainLink.entry_id).where(ChainLink.entry_id == JournalEntry.id)
        rows = self.session.execute(
            select(JournalEntry.id, JournalEntry.content_hash)
            .where(~sealed.exists())
            .order_by(JournalEntry.id)
            .limit(limit)
        )
        return [(r[0], r[1]) for r in rows]

    def count_unsealed(self) -> int:
        sealed = select(ChainLink.entry_id).where(ChainLink.entry_id == JournalEntry.id)
        return (
            self.session.scalar(
                select(func.count()).where(~sealed.exists()).select_from(JournalEntry)
            )
            or 0
        )

    def lock_chain(self) -> None:
        """Serialise sealers. SQLite's BEGIN IMMEDIATE already does; PostgreSQL takes a lock."""
        if self.session.get_bind().dialect.name == "postgresql":
            self.session.execute(select(func.pg_advisory_xact_lock(7_401_746_551)))

    def append_links(self, links: list[dict]) -> None:
        if links:
            self.session.execute(insert(ChainLink), links)

    def chain_page(self, after_seq: int, limit: int) -> Sequence[ChainLink]:
        return self.session.scalars(
            select(ChainLink).where(ChainLink.seq > after_seq).order_by(ChainLink.seq).limit(limit)
        ).all()

    def entries_by_ids(self, ids: Sequence[int]) -> dict[int, JournalEntry]:
        rows = self.session.scalars(select(JournalEntry).where(JournalEntry.id.in_(ids))).all()
        return {r.id: r for r in rows}


def to_core(row: JournalEntry) -> Entry:
    """Rebuild the pure entry from stored rows (raises if the rows are no longer balanced)."""
    return Entry(
        idempotency_key=row.idempotency_key,
        business_date=row.business_date,
        description=row.description,
        postings=tuple(
            Posting(p.account.code, p.direction, p.amount, p.currency)  # type: ignore[arg-type]
            for p in row.postings
        ),
        metadata=row.metadata_ or {},
        ref_type=row.ref_type,
        ref_id=row.ref_id,
        reverses_id=row.reverses_id,
    )
