"""Electronic receipts (电子缴款凭证): one per settled notice, signed with the platform e-seal.

The table is append-only in the database itself (triggers refuse UPDATE and DELETE, see
migration 0004): a receipt, once issued and published, is never changed. ``payload`` is the
canonical document exactly as signed (:mod:`notices.receipts`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, DateTime, ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from clearing.db import Base
from clearing.ledger.models import BigId


class Receipt(Base):
    __tablename__ = "receipts"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    number: Mapped[str] = mapped_column(String(32), unique=True)
    """``FS`` + Asia/Shanghai issue date ``yyyymmdd`` + 10 random digits (not guessable)."""
    check_code: Mapped[str] = mapped_column(String(8))
    """6 random characters of :data:`notices.receipts.CHECK_ALPHABET`; needed to look it up."""
    notice_id: Mapped[int] = mapped_column(BigId, ForeignKey("notices.id"), unique=True)
    """A notice is settled once, so it has at most one receipt."""
    attempt_id: Mapped[int] = mapped_column(BigId, ForeignKey("payment_attempts.id"), unique=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The signed document as a dict; its canonical bytes are what the signature covers."""
    payload_sha256: Mapped[str] = mapped_column(String(64))
    """Hex SHA-256 of the canonical bytes of ``payload``."""
    signature: Mapped[str] = mapped_column(String(128))
    """Base64 Ed25519 signature of the canonical bytes."""
    key_id: Mapped[str] = mapped_column(String(32))
    """The e-seal key: first 16 hex characters of SHA-256 of its raw public key."""
    issued_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
