"""The pure ledger core: frozen value types and the rules of double entry.

Nothing here touches a database, HTTP or a file format. Amounts are integer minor units (fen).
"""

from __future__ import annotations

import hashlib
import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from clearing.errors import Conflict, ValidationError

GENESIS_HASH = "0" * 64
MAX_AMOUNT = 10**15  # fen; far above any real payment, far below BIGINT overflow
MAX_LEGS = 32_767  # postings per entry: the database numbers them in a SMALLINT


class Direction(StrEnum):
    DEBIT = "D"
    CREDIT = "C"

    def opposite(self) -> Direction:
        return Direction.CREDIT if self is Direction.DEBIT else Direction.DEBIT


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    REVENUE = "revenue"
    EXPENSE = "expense"

    @property
    def debit_normal(self) -> bool:
        """Assets and expenses grow with debits; the others with credits."""
        return self in (AccountType.ASSET, AccountType.EXPENSE)


class UnbalancedEntry(ValidationError):
    type = "unbalanced-entry"


class IdempotencyConflict(Conflict):
    """The idempotency key was used before for an entry with different content."""

    type = "idempotency-conflict"


@dataclass(frozen=True, slots=True)
class Posting:
    """One leg of an entry: ``amount`` fen (> 0) debited or credited to ``account``."""

    account: str
    direction: Direction
    amount: int
    currency: str = "CNY"

    def __post_init__(self) -> None:
        if not self.account:
            raise ValidationError("a posting needs an account", field="account")
        if isinstance(self.amount, bool) or not isinstance(self.amount, int):
            raise ValidationError("posting amounts are integer fen", field="amount")
        if not 0 < self.amount <= MAX_AMOUNT:
            raise ValidationError(
                f"posting amount must be in 1..{MAX_AMOUNT} fen, got {self.amount}", field="amount"
            )
        object.__setattr__(self, "direction", Direction(self.direction))

    @classmethod
    def debit(cls, account: str, amount: int, currency: str = "CNY") -> Posting:
        return cls(account, Direction.DEBIT, amount, currency)

    @classmethod
    def credit(cls, account: str, amount: int, currency: str = "CNY") -> Posting:
        return cls(account, Direction.CREDIT, amount, currency)

    @property
    def signed(self) -> int:
        """Debit positive, credit negative."""
        return self.amount if self.direction is Direction.DEBIT else -self.amount

    def key(self) -> tuple[str, str, int, str]:
        return (self.account, self.direction.value, self.amount, self.currency)


def _freeze(metadata: Mapping[str, Any] | None) -> Mapping[str, Any]:
    """Metadata as it will read back from the database: a JSON round trip (tuples become lists),
    so that a retried post compares equal to the stored entry."""
    try:
        data = json.loads(json.dumps(dict(metadata or {}), sort_keys=True))
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"entry metadata must be JSON with string keys: {exc}", field="metadata"
        ) from None
    return MappingProxyType(data)


@dataclass(frozen=True, slots=True)
class Entry:
    """A journal entry to post: two or more postings whose debits equal credits per currency."""

    idempotency_key: str
    business_date: date
    description: str
    postings: tuple[Posting, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    ref_type: str | None = None
    ref_id: str | None = None
    reverses_id: int | None = None

    def __post_init__(self) -> None:
        if not self.idempotency_key or len(self.idempotency_key) > 200:
            raise ValidationError(
                "an entry needs an idempotency key of 1..200 characters", field="idempotency_key"
            )
        object.__setattr__(self, "postings", tuple(self.postings))
        object.__setattr__(self, "metadata", _freeze(self.metadata))
        if len(self.postings) > MAX_LEGS:
            raise ValidationError(
                f"an entry has at most {MAX_LEGS} postings, got {len(self.postings)}",
                field="postings",
            )
        ensure_balanced(self.postings)

    def differences(self, other: Entry) -> list[str]:
        """Fields in which ``other`` differs (to explain an idempotency conflict)."""
        names = ["business_date", "description", "ref_type", "ref_id", "reverses_id"]
        diffs = [n for n in names if getattr(self, n) != getattr(other, n)]
        if dict(self.metadata) != dict(other.metadata):
            diffs.append("metadata")
        if sorted(p.key() for p in self.postings) != sorted(p.key() for p in other.postings):
            diffs.append("postings")
        return diffs


def ensure_balanced(postings: Iterable[Posting]) -> None:
    """Raise :class:`UnbalancedEntry` unless there are 2+ postings and each currency nets to 0."""
    postings = list(postings)
    if len(postings) < 2:
        raise UnbalancedEntry(
            f"an entry needs at least two postings, got {len(postings)}", field="postings"
        )
    totals: dict[str, int] = defaultdict(int)
    for posting in postings:
        totals[posting.currency] += posting.signed
    for currency, diff in sorted(totals.items()):
        if diff:
            raise UnbalancedEntry(
                f"debits and credits differ by {diff} fen in {currency}", field="postings"
            )


def reversal(
    original: Entry,
    *,
    idempotency_key: str,
    business_date: date,
    original_id: int,
    description: str | None = None,
) -> Entry:
    """The entry that undoes ``original``: the same postings in the opposite direction."""
    return Entry(
        idempotency_key=idempotency_key,
        business_date=business_date,
        description=description or f"Reversal of entry {original_id}: {original.description}",
        postings=tuple(
            Posting(p.account, p.direction.opposite(), p.amount, p.currency)
            for p in original.postings
        ),
        metadata={"reversal_of": original_id},
        ref_type=original.ref_type,
        ref_id=original.ref_id,
        reverses_id=original_id,
    )


def utc_iso(moment: datetime) -> str:
    """Microsecond UTC timestamp; naive datetimes (SQLite) are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def canonical_bytes(entry: Entry, created_at: datetime) -> bytes:
    """The canonical serialisation hashed into the chain: sorted keys, sorted postings, UTF-8."""
    doc = {
        "idempotency_key": entry.idempotency_key,
        "business_date": entry.business_date.isoformat(),
        "created_at": utc_iso(created_at),
        "description": entry.description,
        "metadata": dict(entry.metadata),
        "ref": [entry.ref_type, entry.ref_id],
        "reverses_id": entry.reverses_id,
        "postings": sorted(list(p.key()) for p in entry.postings),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def content_hash(entry: Entry, created_at: datetime) -> str:
    return hashlib.sha256(canonical_bytes(entry, created_at)).hexdigest()


def chain_hash(seq: int, prev_hash: str, entry_content_hash: str) -> str:
    """Hash of one link: binds the sequence number, the previous link and the entry's content."""
    return hashlib.sha256(f"{seq}|{prev_hash}|{entry_content_hash}".encode()).hexdigest()


def balance(account_type: AccountType, debits: int, credits: int) -> int:
    """The balance in the account's normal direction (positive for a normal balance)."""
    return debits - credits if account_type.debit_normal else credits - debits
