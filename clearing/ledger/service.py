"""The ledger service: post (idempotently), reverse, read balances, seal and verify the chain.

Concurrency design (docs/decisions/0001-ledger-concurrency.md): the write path takes no lock on
any account and updates no balance row, so a busy account (every payment touches the same gateway
clearing account) is not a hot row. Balances are sums of postings. The hash chain is appended by a
separate sealer in commit order, so it does not serialise writers either.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from clearing.errors import Conflict, FeishuiError, NotFound
from clearing.ledger import core
from clearing.ledger.core import AccountType, Entry, IdempotencyConflict
from clearing.ledger.repository import (
    AccountRef,
    LedgerRepository,
    committed_accounts,
    pg_entry_params,
    to_core,
    utcnow,
)


@dataclass(frozen=True, slots=True)
class PostedEntry:
    id: int
    created_at: datetime
    entry: Entry
    replayed: bool = False
    """True when the idempotency key existed and the stored entry was returned."""


@dataclass(frozen=True, slots=True)
class PreparedEntry:
    """An entry ready to insert (:meth:`LedgerService.prepare`)."""

    entry: Entry
    created_at: datetime
    content_hash: str
    accounts: dict[str, AccountRef]

    def pg_params(self) -> dict[str, Any]:
        """The parameters of :data:`~clearing.ledger.repository.PG_ENTRY_CTES`."""
        return pg_entry_params(self.entry, self.created_at, self.content_hash, self.accounts)


@dataclass(frozen=True, slots=True)
class AccountBalance:
    code: str
    type: AccountType
    currency: str
    debits: int
    credits: int

    @property
    def balance(self) -> int:
        """Fen in the account's normal direction."""
        return core.balance(self.type, self.debits, self.credits)


@dataclass(frozen=True, slots=True)
class VerifyReport:
    entries: int = 0
    sealed: int = 0
    unsealed: int = 0
    failures: list[tuple[int, str]] = field(default_factory=list)
    """(entry id, reason) for every entry that does not verify; the first is the earliest."""

    @property
    def ok(self) -> bool:
        return not self.failures


class LedgerService:
    """Everything that moves money goes through :meth:`post`. Flushes; never commits."""

    def __init__(self, session: Session) -> None:
        self.repo = LedgerRepository(session)

    def post(self, entry: Entry) -> PostedEntry:
        """Post ``entry`` once. The same key and content returns the original; other content
        under the same key raises :class:`IdempotencyConflict` naming the difference."""
        accounts = self._accounts(entry)
        if entry.reverses_id is not None:
            if self.repo.entry_by_key(entry.idempotency_key) is not None:
                return self._replay(entry)  # a retried reversal
            self._check_reversible(entry.reverses_id)
        prepared = self._prepared(entry, accounts)
        entry_id = self.repo.insert_entry(
            entry, prepared.created_at, prepared.content_hash, prepared.accounts
        )
        if entry_id is not None:
            return PostedEntry(entry_id, prepared.created_at, entry)
        return self._replay(entry)

    def prepare(self, entry: Entry) -> PreparedEntry:
        """What :meth:`post` does before its INSERT: the accounts resolved (opened on first use),
        their currencies checked, the creation time and content hash fixed. For a caller that
        inserts the entry together with its own writes in one statement (PostgreSQL:
        :meth:`PreparedEntry.pg_params` with :data:`~clearing.ledger.repository.PG_ENTRY_CTES`);
        a replayed key must then go through :meth:`post`. Not for reversals."""
        if entry.reverses_id is not None:
            raise ValueError("a reversal is posted with post() or reverse(), never prepared")
        return self._prepared(entry, self._accounts(entry))

    @classmethod
    def prepare_committed(cls, conn: Connection, entry: Entry) -> PreparedEntry | None:
        """:meth:`prepare` without a session or a transaction (PostgreSQL, the optimistic
        capture): None if an account of ``entry`` does not exist yet (the caller then takes the
        ordinary path, which opens it)."""
        if entry.reverses_id is not None:
            raise ValueError("a reversal is posted with post() or reverse(), never prepared")
        accounts = committed_accounts(conn, {p.account for p in entry.postings})
        if accounts is None:
            return None
        cls._check_currencies(entry, accounts)
        return cls._prepared(entry, accounts)

    @staticmethod
    def _prepared(entry: Entry, accounts: dict[str, AccountRef]) -> PreparedEntry:
        created_at = utcnow()
        return PreparedEntry(entry, created_at, core.content_hash(entry, created_at), accounts)

    def _accounts(self, entry: Entry) -> dict[str, AccountRef]:
        accounts = self.repo.accounts({p.account: p.currency for p in entry.postings})
        self._check_currencies(entry, accounts)
        return accounts

    def reverse(
        self,
        entry_id: int,
        *,
        idempotency_key: str,
        business_date: date,
        description: str | None = None,
    ) -> PostedEntry:
        """Post the reversal of entry ``entry_id`` (once; reversing a reversal is allowed,
        reversing the same entry twice is not)."""
        row = self.repo.entry(entry_id)
        if row is None:
            raise NotFound(f"journal entry {entry_id} does not exist")
        return self.post(
            core.reversal(
                to_core(row),
                idempotency_key=idempotency_key,
                business_date=business_date,
                original_id=entry_id,
                description=description,
            )
        )

    def _replay(self, entry: Entry) -> PostedEntry:
        row = self.repo.entry_by_key(entry.idempotency_key)
        if row is None:  # pragma: no cover - the conflicting row vanished: impossible, append-only
            raise Conflict(f"idempotency key {entry.idempotency_key!r} is in use")
        stored = to_core(row)
        diffs = stored.differences(entry)
        if diffs:
            raise IdempotencyConflict(
                f"idempotency key {entry.idempotency_key!r} was used for entry {row.id} "
                f"with a different {', '.join(diffs)}",
                field=diffs[0],
            )
        return PostedEntry(row.id, row.created_at, stored, replayed=True)

    @staticmethod
    def _check_currencies(entry: Entry, accounts: dict) -> None:
        for p in entry.postings:
            if accounts[p.account].currency != p.currency:
                raise core.UnbalancedEntry(
                    f"account {p.account} is in {accounts[p.account].currency}, "
                    f"the posting in {p.currency}",
                    field="postings",
                )

    def _check_reversible(self, entry_id: int) -> None:
        if self.repo.entry(entry_id) is None:
            raise NotFound(f"journal entry {entry_id} does not exist")
        existing = self.repo.reversal_of(entry_id)
        if existing is not None:
            raise Conflict(f"journal entry {entry_id} was already reversed by entry {existing.id}")

    # reads --------------------------------------------------------------------------------
    def balances(
        self,
        *,
        as_of: date | None = None,
        at: datetime | None = None,
        codes: Sequence[str] | None = None,
    ) -> list[AccountBalance]:
        """Every account's debits, credits and balance up to a business date and/or moment."""
        return [
            AccountBalance(code, AccountType(t), cur, d, c)
            for code, t, cur, d, c in self.repo.totals(as_of=as_of, at=at, codes=codes)
        ]

    def balance(self, code: str, *, as_of: date | None = None, at: datetime | None = None) -> int:
        """One account's balance in fen, in its normal direction (0 for an unknown account)."""
        rows = self.balances(as_of=as_of, at=at, codes=[code])
        return rows[0].balance if rows else 0

    def trial_balance(self, *, as_of: date | None = None) -> TrialBalance:
        return TrialBalance(self.balances(as_of=as_of))

    # chain --------------------------------------------------------------------------------
    def seal(self, limit: int = 50_000) -> int:
        """Append committed, unsealed entries to the hash chain; returns how many."""
        self.repo.lock_chain()
        head = self.repo.chain_head()
        seq, prev = (head.seq, head.hash) if head else (0, core.GENESIS_HASH)
        links = []
        for entry_id, content in self.repo.unsealed(limit):
            seq += 1
            link_hash = core.chain_hash(seq, prev, content)
            links.append(
                {
                    "seq": seq,
                    "entry_id": entry_id,
                    "prev_hash": prev,
                    "hash": link_hash,
                    "sealed_at": utcnow(),
                }
            )
            prev = link_hash
        self.repo.append_links(links)
        return len(links)

    def verify(self, page: int = 2_000) -> VerifyReport:
        """Check every link of the chain, every entry's content hash and balance, and that the
        trial balance nets to zero. Reports each failing entry; the chain is read in pages."""
        failures: list[tuple[int, str]] = []
        prev, expected_seq, sealed, after = core.GENESIS_HASH, 1, 0, 0
        while links := self.repo.chain_page(after, page):
            rows = self.repo.entries_by_ids([link.entry_id for link in links])
            for link in links:
                reason = _link_problem(link, expected_seq, prev, rows.get(link.entry_id))
                if reason:
                    failures.append((link.entry_id, reason))
                prev, expected_seq, sealed = link.hash, link.seq + 1, sealed + 1
            after = links[-1].seq
        unsealed = self.repo.count_unsealed()
        failures += self._verify_totals()
        return VerifyReport(
            entries=sealed + unsealed, sealed=sealed, unsealed=unsealed, failures=failures
        )

    def _verify_totals(self) -> list[tuple[int, str]]:
        net: dict[str, int] = defaultdict(int)
        for b in self.balances():
            net[b.currency] += b.debits - b.credits
        return [
            (0, f"trial balance does not net to zero in {cur}: {diff} fen")
            for cur, diff in sorted(net.items())
            if diff
        ]


def _link_problem(link, seq: int, prev: str, row) -> str | None:  # type: ignore[no-untyped-def]
    if link.seq != seq:
        return f"chain sequence jumps from {seq - 1} to {link.seq}"
    if link.prev_hash != prev:
        return f"link {link.seq} does not point to the previous link"
    if row is None:
        return f"link {link.seq} names an entry that does not exist"
    if core.chain_hash(link.seq, prev, row.content_hash) != link.hash:
        return f"link {link.seq} hash does not match"
    try:
        entry = to_core(row)
    except FeishuiError as exc:
        return f"entry {row.id} is invalid: {exc.detail}"
    if core.content_hash(entry, row.created_at) != row.content_hash:
        return f"entry {row.id} content does not match its hash (altered after posting)"
    for p in row.postings:
        if p.account.currency != p.currency:
            return f"entry {row.id} posts {p.currency} to {p.account.code} ({p.account.currency})"
    return None


@dataclass(frozen=True, slots=True)
class TrialBalance:
    rows: list[AccountBalance]

    def totals(self) -> dict[str, tuple[int, int]]:
        """(debit balances, credit balances) per currency; equal in a balanced ledger."""
        out: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        for r in self.rows:
            net = r.debits - r.credits
            out[r.currency][0 if net > 0 else 1] += abs(net)
        return {cur: (d, c) for cur, (d, c) in sorted(out.items())}

    @property
    def balanced(self) -> bool:
        return all(d == c for d, c in self.totals().values())
