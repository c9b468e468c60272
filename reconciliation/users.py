"""Finance users (officers, auditors, admins), their API tokens and their web sessions.

A token looks like ``fsu_<8 hex prefix>_<43 url-safe chars>`` (API) or
``fss_<prefix>_<secret>`` (a web session, in the ``fs_session`` cookie). Only the prefix (to find
the row) and a SHA-256 of the 256-bit secret are stored (:mod:`clearing.apikeys` explains why a
fast hash is right for random secrets); the secret is compared in constant time. Passwords are
scrypt-hashed. A disabled user, an expired session and a revoked token never authenticate.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from clearing.apikeys import hash_password, hash_secret, verify_password, verify_secret
from clearing.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError
from reconciliation.models import ROLES, User, UserToken

API_SCHEME = "fsu"
SESSION_SCHEME = "fss"
SESSION_HOURS = 8
WRITE_ROLES = frozenset({"finance_officer", "admin"})
_USERNAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")
_TOKEN = re.compile(r"(fsu|fss)_([0-9a-f]{8})_([A-Za-z0-9_-]{43})")
#: Compared against when the user is unknown, so a login takes as long either way.
_DUMMY_HASH = hash_password("not-a-real-password")


@dataclass(frozen=True)
class FinanceUser:
    """Who is calling the finance API: a user, through an API token or a web session."""

    id: int
    username: str
    display_name: str
    role: str
    via: str
    """``api`` or ``session``."""

    @property
    def can_write(self) -> bool:
        return self.role in WRITE_ROLES

    def require_write(self) -> None:
        """Raise :class:`Forbidden` for a read-only (auditor) user."""
        if not self.can_write:
            raise Forbidden(f"the {self.role} role is read-only")


@dataclass(frozen=True)
class IssuedToken:
    prefix: str
    full: str
    expires_at: datetime | None

    def __repr__(self) -> str:
        return f"IssuedToken(prefix={self.prefix!r}, full='***')"


def _now() -> datetime:
    return datetime.now(UTC)


def create_user(
    session: Session, username: str, role: str, password: str, display_name: str | None = None
) -> User:
    """Create a user; the password is stored scrypt-hashed."""
    if not _USERNAME.fullmatch(username or ""):
        raise ValidationError(
            "username must be 2-64 of a-z 0-9 . _ -, starting with a letter", field="username"
        )
    if role not in ROLES:
        raise ValidationError(f"role must be one of {', '.join(ROLES)}", field="role")
    if len(password or "") < 10:
        raise ValidationError("password must be at least 10 characters", field="password")
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise Conflict(f"user {username!r} already exists", field="username")
    user = User(
        username=username,
        display_name=(display_name or username)[:100],
        role=role,
        password_hash=hash_password(password),
        active=True,
        created_at=_now(),
    )
    session.add(user)
    session.flush()
    return user


def get_user(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == username))
    if user is None:
        raise NotFound(f"no user {username!r}", field="username")
    return user


def disable_user(session: Session, username: str) -> User:
    """Disable a user and revoke every token and session they hold."""
    user = get_user(session, username)
    user.active = False
    session.execute(
        update(UserToken)
        .where(UserToken.user_id == user.id, UserToken.revoked_at.is_(None))
        .values(revoked_at=_now())
    )
    session.flush()
    return user


def _issue(session: Session, user: User, kind: str, expires_at: datetime | None) -> IssuedToken:
    scheme = API_SCHEME if kind == "api" else SESSION_SCHEME
    prefix, secret = secrets.token_hex(4), secrets.token_urlsafe(32)
    session.add(
        UserToken(
            user_id=user.id,
            kind=kind,
            prefix=prefix,
            secret_hash=hash_secret(secret),
            created_at=_now(),
            expires_at=expires_at,
        )
    )
    session.flush()
    return IssuedToken(prefix, f"{scheme}_{prefix}_{secret}", expires_at)


def issue_api_token(session: Session, username: str) -> IssuedToken:
    """A new API token for scripts; shown once."""
    user = get_user(session, username)
    if not user.active:
        raise Conflict(f"user {username!r} is disabled")
    return _issue(session, user, "api", None)


def login(session: Session, username: str, password: str) -> tuple[User, IssuedToken]:
    """Check the password and open an 8-hour web session (401 on any failure, same message)."""
    user = session.scalar(select(User).where(User.username == username))
    ok = verify_password(password, user.password_hash if user else _DUMMY_HASH)
    if user is None or not ok or not user.active:
        raise Unauthorized("wrong user name or password")
    return user, _issue(session, user, "session", _now() + timedelta(hours=SESSION_HOURS))


def authenticate(session: Session, token: str | None, *, kind: str) -> FinanceUser:
    """The user of an API token (``kind="api"``) or session token; :class:`Unauthorized` else."""
    match = _TOKEN.fullmatch(token or "")
    scheme = API_SCHEME if kind == "api" else SESSION_SCHEME
    if match is None or match.group(1) != scheme:
        raise Unauthorized("a finance user token or session is required")
    row = session.scalar(select(UserToken).where(UserToken.prefix == match.group(2)))
    if not verify_secret(match.group(3), row.secret_hash if row else "") or row is None:
        raise Unauthorized("the token is invalid, expired or revoked")
    user = session.get(User, row.user_id)
    if not _usable(row, kind) or user is None or not user.active:
        raise Unauthorized("the token is invalid, expired or revoked")
    return FinanceUser(user.id, user.username, user.display_name, user.role, kind)


def _usable(row: UserToken, kind: str) -> bool:
    if row.kind != kind or row.revoked_at is not None:
        return False
    if row.expires_at is None:
        return True
    expires = row.expires_at if row.expires_at.tzinfo else row.expires_at.replace(tzinfo=UTC)
    return expires > _now()


def logout(session: Session, token: str | None) -> None:
    """Revoke a web session (a no-op for an unknown or malformed token)."""
    match = _TOKEN.fullmatch(token or "")
    if match is None:
        return
    row = session.scalar(select(UserToken).where(UserToken.prefix == match.group(2)))
    if row is not None and verify_secret(match.group(3), row.secret_hash):
        row.revoked_at = row.revoked_at or _now()
        session.flush()
