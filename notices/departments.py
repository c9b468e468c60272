"""Departments, their API keys and authentication of the department API.

A key is shown once when issued; the database keeps its public prefix (to find the row) and a
hash of its secret (compared in constant time, :mod:`clearing.apikeys`). A revoked key never
authenticates again.

The API authenticates through :func:`authenticate_cached`, which remembers a looked-up key
(its hash, scopes and department; never the secret) for :data:`KEY_CACHE_TTL_SECONDS`. A key
revoked in this process is refused at once; one revoked by another process (``feishui
department revoke-key``) is refused by every API process within that bound.
"""

from __future__ import annotations

import re
import threading
import time
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from clearing.apikeys import hash_secret, issue_key, parse_key, verify_secret
from clearing.db import run_in_transaction
from clearing.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError
from notices.models import DEPARTMENT_KINDS, ApiKey, Department

SCOPES = ("notices:read", "notices:write", "refunds:write")
DEFAULT_SCOPES = ("notices:read", "notices:write")
_REGION = re.compile(r"[0-9]{6}")
#: How long a process trusts a key it looked up (see the module docstring).
KEY_CACHE_TTL_SECONDS = 5.0
_KEY_CACHE_MAX = 10_000


@dataclass(frozen=True)
class Principal:
    """Who is calling: a department, through one of its keys, with that key's scopes."""

    department_id: int
    department_name: str
    department_kind: str
    region_code: str
    key_prefix: str
    scopes: frozenset[str]

    def require(self, scope: str) -> None:
        """Raise :class:`Forbidden` unless the key has ``scope``."""
        if scope not in self.scopes:
            raise Forbidden(f"this API key lacks the {scope!r} scope")


@dataclass(frozen=True)
class NewKey:
    """A freshly issued key: ``full`` is shown once and never stored."""

    department: str
    prefix: str
    full: str
    scopes: tuple[str, ...]


def check_scopes(scopes: Iterable[str]) -> tuple[str, ...]:
    """Return ``scopes`` de-duplicated in canonical order; unknown ones are a ValidationError."""
    wanted = set(scopes)
    unknown = wanted - set(SCOPES)
    if unknown or not wanted:
        raise ValidationError(
            f"scopes must be among {', '.join(SCOPES)}; got {', '.join(sorted(unknown)) or 'none'}",
            field="scopes",
        )
    return tuple(s for s in SCOPES if s in wanted)


def create_department(
    session: Session,
    name: str,
    region_code: str,
    kind: str = "agency",
    scopes: Iterable[str] = DEFAULT_SCOPES,
) -> NewKey:
    """Create a department and its first API key."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ValidationError("department name must be 1-200 characters", field="name")
    if not _REGION.fullmatch(region_code):
        raise ValidationError("region must be a 6-digit region code", field="region")
    if kind not in DEPARTMENT_KINDS:
        raise ValidationError(f"kind must be one of {', '.join(DEPARTMENT_KINDS)}", field="kind")
    if session.scalar(select(Department.id).where(Department.name == name)):
        raise Conflict(f"department {name!r} already exists", field="name")
    department = Department(
        name=name, kind=kind, region_code=region_code, created_at=datetime.now(UTC)
    )
    session.add(department)
    session.flush()
    return _issue(session, department, check_scopes(scopes))


def add_key(session: Session, name: str, scopes: Iterable[str] = DEFAULT_SCOPES) -> NewKey:
    """Issue another key for the department called ``name`` (e.g. to rotate keys)."""
    department = session.scalar(select(Department).where(Department.name == name))
    if department is None:
        raise NotFound(f"no department {name!r}", field="name")
    return _issue(session, department, check_scopes(scopes))


def _issue(session: Session, department: Department, scopes: tuple[str, ...]) -> NewKey:
    issued = issue_key("live")
    session.add(
        ApiKey(
            department_id=department.id,
            prefix=issued.prefix,
            secret_hash=hash_secret(issued.secret),
            scopes=" ".join(scopes),
            created_at=datetime.now(UTC),
        )
    )
    session.flush()
    return NewKey(department.name, issued.prefix, issued.full, scopes)


def revoke_key(session: Session, prefix: str) -> ApiKey:
    """Revoke the key with ``prefix``; revoking twice is harmless."""
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        raise NotFound(f"no API key with prefix {prefix!r}", field="prefix")
    if key.revoked_at is None:
        key.revoked_at = datetime.now(UTC)
        session.flush()
    _forget_key(session, prefix)
    return key


def list_departments(session: Session) -> list[Department]:
    """Every department, by name."""
    return list(session.scalars(select(Department).order_by(Department.name)))


def authenticate(session: Session, bearer: str | None) -> Principal:
    """Return the principal of a ``Bearer`` key; raise :class:`Unauthorized` otherwise.

    The same error is given for a malformed, unknown, wrong or revoked key, so a caller learns
    nothing about which keys exist.
    """
    prefix, secret = _parse_bearer(bearer)
    return _verified(_lookup(session, prefix), secret)


def authenticate_cached(sessions: sessionmaker[Session], bearer: str | None) -> Principal:
    """:func:`authenticate`, trusting a key looked up in the last few seconds.

    The secret is still hashed and compared in constant time on every call; only the row is
    remembered (see the module docstring for how soon a revocation applies).
    """
    who = authenticate_from_cache(sessions, bearer)
    if who is not None:
        return who
    prefix, secret = _parse_bearer(bearer)
    known = run_in_transaction(sessions, lambda session: _lookup(session, prefix))
    _remember(_key_cache(sessions), prefix, known)
    return _verified(known, secret)


def authenticate_from_cache(
    sessions: sessionmaker[Session], bearer: str | None
) -> Principal | None:
    """:func:`authenticate_cached` without I/O: None when the key must be looked up first."""
    prefix, secret = _parse_bearer(bearer)
    known = _key_cache(sessions).get(prefix)
    if known is None or time.monotonic() - known.loaded_at > KEY_CACHE_TTL_SECONDS:
        return None
    return _verified(known, secret)


@dataclass(frozen=True, slots=True)
class _KnownKey:
    """A key row as authentication needs it: the hash of the secret, never the secret."""

    secret_hash: str
    revoked: bool
    principal: Principal
    loaded_at: float


def _parse_bearer(bearer: str | None) -> tuple[str, str]:
    if not bearer:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    try:
        return parse_key(bearer)
    except ValidationError:
        raise Unauthorized("the API key is invalid or revoked") from None


def _lookup(session: Session, prefix: str) -> _KnownKey | None:
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if key is None:
        return None
    dept = key.department
    who = Principal(
        dept.id, dept.name, dept.kind, dept.region_code, key.prefix, frozenset(key.scopes.split())
    )
    return _KnownKey(key.secret_hash, key.revoked_at is not None, who, time.monotonic())


def _verified(known: _KnownKey | None, secret: str) -> Principal:
    stored = known.secret_hash if known is not None else ""
    if not verify_secret(secret, stored) or known is None or known.revoked:
        raise Unauthorized("the API key is invalid or revoked")
    return known.principal


# Per session factory (one per runtime), so that two databases never share keys.
_key_caches: weakref.WeakKeyDictionary[sessionmaker[Session], dict[str, _KnownKey]] = (
    weakref.WeakKeyDictionary()
)
_key_caches_lock = threading.Lock()


def _key_cache(sessions: sessionmaker[Session]) -> dict[str, _KnownKey]:
    with _key_caches_lock:
        return _key_caches.setdefault(sessions, {})


def _remember(cache: dict[str, _KnownKey], prefix: str, known: _KnownKey | None) -> None:
    """Cache a key that exists; unknown prefixes are not cached (they would fill the cache)."""
    if known is None:
        cache.pop(prefix, None)
        return
    if len(cache) >= _KEY_CACHE_MAX:
        cache.clear()
    cache[prefix] = known


def forget_cached_keys(prefix: str | None = None) -> None:
    """Drop the cached key ``prefix`` (every key when None) from every cache of this process."""
    with _key_caches_lock:
        for cache in _key_caches.values():
            if prefix is None:
                cache.clear()
            else:
                cache.pop(prefix, None)


def _forget_key(session: Session, prefix: str) -> None:
    """Forget ``prefix`` now, and again once ``session`` commits (a lookup may race the commit)."""
    forget_cached_keys(prefix)
    event.listen(session, "after_commit", lambda _session: forget_cached_keys(prefix), once=True)
