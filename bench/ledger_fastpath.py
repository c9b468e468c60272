"""Prototype faster posting paths, for measurement only (nothing in clearing/ uses this).

Both keep the ledger's semantics: the caller's ``Entry`` (validated on construction), accounts
resolved through the same per-engine cache, the currency check, the content hash, the
idempotency key with ON CONFLICT DO NOTHING (a replay falls back to ``LedgerService._replay``),
and the database's deferred balance triggers, which still fire at commit. What changes is how the
rows reach PostgreSQL: one precompiled statement, a data-modifying CTE that inserts the entry and
all its postings in a single round trip, sent through the session's own psycopg connection
(inside the caller's transaction) instead of two ORM-enabled INSERT constructs built per call.

* :class:`CoreLedgerService` -- ``LedgerService`` whose repository builds its two INSERTs once,
  against the Core tables, and passes the values as parameters (the smallest change to
  ``repository.insert_entry``: no ORM bulk-insert path, no per-call ``.values()`` and cache key);
* :func:`lean_post` -- drop-in for ``LedgerService(session).post(entry)``;
* :func:`one_round_trip_post` -- the same statement on an autocommit psycopg connection, where it
  is the whole transaction (one round trip per entry): the floor for a standalone post.
"""

from __future__ import annotations

import json

from sqlalchemy import insert
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from clearing.ledger import core
from clearing.ledger.core import Entry
from clearing.ledger.models import JournalEntry
from clearing.ledger.models import Posting as PostingRow
from clearing.ledger.repository import (
    AccountRef,
    LedgerRepository,
    _entry_values,
    posting_rows,
    utcnow,
)
from clearing.ledger.service import LedgerService, PostedEntry

_ENTRIES, _POSTINGS = JournalEntry.__table__, PostingRow.__table__
INSERT_ENTRY = (
    postgresql.insert(_ENTRIES)
    .on_conflict_do_nothing(index_elements=["idempotency_key"])
    .returning(_ENTRIES.c.id)
)
INSERT_POSTINGS = insert(_POSTINGS)


class CoreRepository(LedgerRepository):
    def insert_entry(
        self,
        entry: Entry,
        created_at,
        content_hash: str,  # type: ignore[no-untyped-def]
        accounts: dict[str, AccountRef],
    ) -> int | None:
        entry_id = self.session.execute(
            INSERT_ENTRY, _entry_values(entry, created_at, content_hash)
        ).scalar()
        if entry_id is None:
            return None
        self.session.execute(INSERT_POSTINGS, posting_rows(entry, entry_id, accounts))
        return entry_id


class CoreLedgerService(LedgerService):
    def __init__(self, session: Session) -> None:
        self.repo = CoreRepository(session)


POST_SQL = """
WITH e AS (
  INSERT INTO journal_entries (idempotency_key, business_date, created_at, description,
                               metadata, ref_type, ref_id, reverses_id, content_hash, legs)
  VALUES (%s, %s, %s, %s, %s::json, %s, %s, %s, %s, %s)
  ON CONFLICT (idempotency_key) DO NOTHING
  RETURNING id, legs
), p AS (
  INSERT INTO postings (entry_id, leg, entry_legs, account_id, direction, amount, currency)
  SELECT e.id, l.n, e.legs, l.account_id, l.direction, l.amount, l.currency
  FROM e, unnest(%s::bigint[], %s::varchar[], %s::bigint[], %s::varchar[])
          WITH ORDINALITY AS l(account_id, direction, amount, currency, n)
  ORDER BY l.n
)
SELECT id FROM e
"""


def _params(entry: Entry, accounts: dict[str, AccountRef], created_at, content_hash: str):  # type: ignore[no-untyped-def]
    ps = entry.postings
    return (
        entry.idempotency_key,
        entry.business_date,
        created_at,
        entry.description,
        json.dumps(dict(entry.metadata)),
        entry.ref_type,
        entry.ref_id,
        entry.reverses_id,
        content_hash,
        len(ps),
        [accounts[p.account].id for p in ps],
        [p.direction.value for p in ps],
        [p.amount for p in ps],
        [p.currency for p in ps],
    )


def _prepare(service: LedgerService, entry: Entry):  # type: ignore[no-untyped-def]
    accounts = service.repo.accounts(p.account for p in entry.postings)
    service._check_currencies(entry, accounts)
    if entry.reverses_id is not None:
        service._check_reversible(entry.reverses_id)
    created_at = utcnow()
    return accounts, created_at, core.content_hash(entry, created_at)


def lean_post(session: Session, entry: Entry) -> PostedEntry:
    """``LedgerService.post`` with one INSERT ... CTE on the session's driver connection."""
    service = LedgerService(session)
    accounts, created_at, digest = _prepare(service, entry)
    dbapi = session.connection().connection.driver_connection
    with dbapi.cursor() as cur:
        cur.execute(POST_SQL, _params(entry, accounts, created_at, digest))
        row = cur.fetchone()
    if row is not None:
        return PostedEntry(row[0], created_at, entry)
    return service._replay(entry)


def one_round_trip_post(conn, session: Session, entry: Entry) -> PostedEntry | None:  # type: ignore[no-untyped-def]
    """The CTE as its own transaction on autocommit psycopg connection ``conn``; ``session`` is
    only used (read-only) to resolve accounts through the shared cache. None on a replay."""
    service = LedgerService(session)
    accounts, created_at, digest = _prepare(service, entry)
    with conn.cursor() as cur:
        cur.execute(POST_SQL, _params(entry, accounts, created_at, digest))
        row = cur.fetchone()
    return PostedEntry(row[0], created_at, entry) if row is not None else None


def warm(session: Session, codes: list[str]) -> None:
    LedgerRepository(session).accounts(codes)
