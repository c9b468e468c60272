"""Departments, their API keys and authentication of the department API.

A key is shown once when issued; the database keeps its public prefix (to find the row) and a
hash of its secret (compared in constant time, :mod:`clearing.apikeys`). A revoked key never
authenticates again.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from clearing.apikeys import hash_secret, issue_key, parse_key, verify_secret
from clearing.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError
from notices.models import DEPARTMENT_KINDS, ApiKey, Department

SCOPES = ("notices:read", "notices:write", "refunds:write")
DEFAULT_SCOPES = ("notices:read", "notices:write")
_REGION = re.compile(r"[0-9]{6}")


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
    return key


def list_departments(session: Session) -> list[Department]:
    """Every department, by name."""
    return list(session.scalars(select(Department).order_by(Department.name)))


def authenticate(session: Session, bearer: str | None) -> Principal:
    """Return the principal of a ``Bearer`` key; raise :class:`Unauthorized` otherwise.

    The same error is given for a malformed, unknown, wrong or revoked key, so a caller learns
    nothing about which keys exist.
    """
    if not bearer:
        raise Unauthorized("an API key is required: send 'Authorization: Bearer <key>'")
    try:
        prefix, secret = parse_key(bearer)
    except ValidationError:
        raise Unauthorized("the API key is invalid or revoked") from None
    key = session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    stored = key.secret_hash if key is not None else ""
    if not verify_secret(secret, stored) or key is None or key.revoked_at is not None:
        raise Unauthorized("the API key is invalid or revoked")
    dept = key.department
    return Principal(
        dept.id, dept.name, dept.kind, dept.region_code, key.prefix, frozenset(key.scopes.split())
    )
