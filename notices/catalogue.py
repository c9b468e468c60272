"""The catalogue of items departments bill for: standard prices, late-fee rules, treasury shares.

Who may use an item: every department whose kind is in ``department_kinds``, plus the
departments named in ``department_names`` whatever their kind. Disabled items stay in the table
(notices already issued refer to them) but can no longer be put on a new notice.

Notice creation reads items through a per-process cache (:func:`cached_items`). Items are never
changed once added, only disabled, so the cache can only be wrong about one thing: an item
disabled in *another* process (``feishui catalogue disable``) stays usable on new notices for at
most :data:`CACHE_TTL_SECONDS`. A change made in this process, and a newly added item, are seen
at once.
"""

from __future__ import annotations

import json
import re
import threading
import time
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session

from clearing.errors import Conflict, NotFound, ValidationError
from clearing.money import format_fen, parse_fen
from clearing.split import validate_shares
from notices.fees import NO_LATE_FEE, LateFeeRule, rule_from_dict, rule_to_dict
from notices.models import BUDGET_LEVELS, DEPARTMENT_KINDS, NOTICE_KINDS, CatalogueItem

SEED_PATH = Path(__file__).with_name("seed_catalogue.json")
VARIABLE = "variable"
#: Default ceiling of a variable item's unit price: 1,000,000.00 yuan.
DEFAULT_MAX_AMOUNT_FEN = 100_000_000
_CODE = re.compile(r"[A-Z0-9][A-Z0-9-]{1,31}")
#: 政府收支分类科目: 类 (3 digits), then 款, 项, 目 (2 digits each).
_REVENUE_CODE = re.compile(r"[0-9]{3}(?:[0-9]{2}){0,3}")
#: How long a process trusts its cached copy of an item (see the module docstring).
CACHE_TTL_SECONDS = 5.0


@dataclass(frozen=True)
class ItemSpec:
    """A catalogue item as configured (seed file or CLI), validated on construction."""

    code: str
    name_zh: str
    name_en: str
    kind: str
    amount_fen: int | None
    shares: Mapping[str, int]
    revenue_code: str
    budget_level: str
    department_kinds: tuple[str, ...] = ()
    department_names: tuple[str, ...] = ()
    late_fee_rule: LateFeeRule = NO_LATE_FEE
    max_amount_fen: int = DEFAULT_MAX_AMOUNT_FEN

    def __post_init__(self) -> None:
        _check_text(self)
        _check_choices(self)
        validate_shares(self.shares)
        if self.amount_fen is not None and not 0 < self.amount_fen <= self.max_amount_fen:
            raise ValidationError("amount must be positive and at most max_amount", field="amount")
        if not self.department_kinds and not self.department_names:
            raise ValidationError(
                "an item needs department_kinds or department_names", field="department_kinds"
            )


def _check_text(spec: ItemSpec) -> None:
    if not _CODE.fullmatch(spec.code):
        raise ValidationError("item code must be 2-32 of A-Z, 0-9 and '-'", field="code")
    for name in ("name_zh", "name_en"):
        value = getattr(spec, name)
        if not value.strip() or len(value) > 200:
            raise ValidationError(f"{name} must be 1-200 characters", field=name)
    if not _REVENUE_CODE.fullmatch(spec.revenue_code):
        raise ValidationError(
            "revenue_code must be a 3, 5, 7 or 9-digit classification code", field="revenue_code"
        )


def _check_choices(spec: ItemSpec) -> None:
    if spec.kind not in NOTICE_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(NOTICE_KINDS)}", field="kind")
    if spec.budget_level not in BUDGET_LEVELS:
        raise ValidationError(
            f"budget_level must be one of {', '.join(BUDGET_LEVELS)}", field="budget_level"
        )
    unknown = set(spec.department_kinds) - set(DEPARTMENT_KINDS)
    if unknown:
        raise ValidationError(
            f"unknown department kinds: {', '.join(sorted(unknown))}", field="department_kinds"
        )


def spec_from_dict(data: Mapping[str, Any]) -> ItemSpec:
    """Build an :class:`ItemSpec` from its JSON form (see ``seed_catalogue.json``)."""
    try:
        amount = data["amount"]
        return ItemSpec(
            code=data["code"],
            name_zh=data["name_zh"],
            name_en=data["name_en"],
            kind=data["kind"],
            amount_fen=None if amount == VARIABLE else parse_fen(amount, field="amount"),
            shares=dict(data["shares"]),
            revenue_code=data["revenue_code"],
            budget_level=data["budget_level"],
            department_kinds=tuple(data.get("department_kinds", ())),
            department_names=tuple(data.get("department_names", ())),
            late_fee_rule=rule_from_dict(data.get("late_fee_rule", {"kind": "none"})),
            max_amount_fen=parse_fen(data.get("max_amount", format_fen(DEFAULT_MAX_AMOUNT_FEN))),
        )
    except KeyError as exc:
        raise ValidationError(f"catalogue item is missing {exc.args[0]!r}") from None


def load_seed(path: Path = SEED_PATH) -> list[ItemSpec]:
    """Read and validate a catalogue file: a JSON object with an ``items`` list."""
    data = json.loads(path.read_text(encoding="utf-8"))
    return [spec_from_dict(item) for item in data["items"]]


def _row(spec: ItemSpec, now: datetime) -> CatalogueItem:
    return CatalogueItem(
        code=spec.code,
        name_zh=spec.name_zh,
        name_en=spec.name_en,
        kind=spec.kind,
        amount=spec.amount_fen,
        max_amount=spec.max_amount_fen,
        late_fee_rule=rule_to_dict(spec.late_fee_rule),
        shares=dict(spec.shares),
        revenue_code=spec.revenue_code,
        budget_level=spec.budget_level,
        department_kinds=list(spec.department_kinds),
        department_names=list(spec.department_names),
        active=True,
        created_at=now,
    )


def add_item(session: Session, spec: ItemSpec) -> CatalogueItem:
    """Add a new item; an existing code is a :class:`Conflict` (items are never overwritten)."""
    if session.scalar(select(CatalogueItem.id).where(CatalogueItem.code == spec.code)):
        raise Conflict(f"catalogue item {spec.code} already exists", field="code")
    item = _row(spec, datetime.now(UTC))
    session.add(item)
    session.flush()
    _changed(session)
    return item


def seed(session: Session, specs: Iterable[ItemSpec]) -> tuple[int, int]:
    """Add the items whose codes are not in the catalogue yet; return ``(added, skipped)``."""
    existing = set(session.scalars(select(CatalogueItem.code)))
    specs = list(specs)
    now = datetime.now(UTC)
    new = [_row(spec, now) for spec in specs if spec.code not in existing]
    session.add_all(new)
    session.flush()
    _changed(session)
    return len(new), len(specs) - len(new)


def disable_item(session: Session, code: str) -> CatalogueItem:
    """Stop ``code`` being used on new notices (issued notices are unaffected)."""
    item = session.scalar(select(CatalogueItem).where(CatalogueItem.code == code))
    if item is None:
        raise NotFound(f"no catalogue item {code}", field="code")
    item.active = False
    session.flush()
    _changed(session)
    return item


def list_items(session: Session, *, include_disabled: bool = False) -> list[CatalogueItem]:
    """Every item ordered by code, active ones only unless ``include_disabled``."""
    query = select(CatalogueItem).order_by(CatalogueItem.code)
    if not include_disabled:
        query = query.where(CatalogueItem.active.is_(True))
    return list(session.scalars(query))


def may_use(item: CatalogueItem | Item, department_kind: str, department_name: str) -> bool:
    """Whether a department of this kind and name may bill for ``item``."""
    return department_kind in item.department_kinds or department_name in item.department_names


def usable_items(
    session: Session, department_kind: str, department_name: str
) -> list[CatalogueItem]:
    """The active items a department may put on its notices, ordered by code."""
    return [item for item in list_items(session) if may_use(item, department_kind, department_name)]


def items_by_code(session: Session, codes: Iterable[str]) -> dict[str, CatalogueItem]:
    """Active items among ``codes``, by code (unknown or disabled codes are simply absent)."""
    wanted = sorted(set(codes))
    if not wanted:
        return {}
    query = select(CatalogueItem).where(
        CatalogueItem.code.in_(wanted), CatalogueItem.active.is_(True)
    )
    return {item.code: item for item in session.scalars(query)}


def item_rule(item: CatalogueItem) -> LateFeeRule:
    """The item's late-fee rule."""
    return rule_from_dict(item.late_fee_rule)


# ------------------------------------------------------------------------------ cache


@dataclass(frozen=True, slots=True)
class Item:
    """An active item as notice creation sees it: a frozen copy, safe to share across requests."""

    id: int
    code: str
    name_zh: str
    name_en: str
    kind: str
    amount: int | None
    """Standard unit price in integer fen; None when variable."""
    max_amount: int
    """Largest unit price in integer fen of a variable item."""
    rule: LateFeeRule
    shares: Mapping[str, int]
    revenue_code: str
    budget_level: str
    department_kinds: frozenset[str]
    department_names: frozenset[str]

    @classmethod
    def from_row(cls, row: CatalogueItem) -> Item:
        """The frozen copy of a catalogue row."""
        return cls(
            row.id,
            row.code,
            row.name_zh,
            row.name_en,
            row.kind,
            row.amount,
            row.max_amount,
            item_rule(row),
            dict(row.shares),
            row.revenue_code,
            row.budget_level,
            frozenset(row.department_kinds),
            frozenset(row.department_names),
        )


@dataclass(frozen=True, slots=True)
class _Cached:
    item: Item
    loaded_at: float


# Per engine, so that two databases in one process (tests, tools) never share items.
_cache: weakref.WeakKeyDictionary[Engine, dict[str, _Cached]] = weakref.WeakKeyDictionary()
_cache_lock = threading.Lock()
_CHANGED = "notices.catalogue.changed"


def invalidate_cache() -> None:
    """Forget every cached item."""
    with _cache_lock:
        _cache.clear()


def _changed(session: Session) -> None:
    """Forget cached items now and when ``session`` commits; never cache what it reads."""
    invalidate_cache()
    if not session.info.get(_CHANGED):
        session.info[_CHANGED] = True
        event.listen(session, "after_commit", lambda _session: invalidate_cache())


def cached_items(session: Session, codes: Iterable[str]) -> dict[str, Item]:
    """Active items among ``codes``, by code, from the cache when fresh (see module docstring).

    Codes missing from the cache, or cached more than :data:`CACHE_TTL_SECONDS` ago, are read
    from the database in one query. Unknown and disabled codes are simply absent.
    """
    wanted, now = set(codes), time.monotonic()
    cache = _engine_cache(session)
    found: dict[str, Item] = {}
    for code in wanted:
        hit = cache.get(code)
        if hit is None or now - hit.loaded_at > CACHE_TTL_SECONDS:
            return _load(session, cache, wanted, now)
        found[code] = hit.item
    return found


def _engine_cache(session: Session) -> dict[str, _Cached]:
    engine = session.get_bind()
    with _cache_lock:
        return _cache.setdefault(engine, {})  # type: ignore[arg-type]


def _load(
    session: Session, cache: dict[str, _Cached], wanted: set[str], now: float
) -> dict[str, Item]:
    items = {code: Item.from_row(row) for code, row in items_by_code(session, wanted).items()}
    if not session.info.get(_CHANGED):  # never cache what this transaction may yet undo
        for code in wanted:
            cache.pop(code, None)
        cache.update((code, _Cached(item, now)) for code, item in items.items())
    return items
