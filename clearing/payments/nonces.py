"""Replay protection for notifies: every nonce / notify id is recorded once, in the database.

Each check runs in its own short transaction, so a nonce is remembered even if the notify's own
processing later fails; a gateway's genuine retry carries a fresh nonce and timestamp.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session, sessionmaker

from clearing.db import transaction
from clearing.ledger.repository import upsert
from clearing.payments.models import NotifyNonce


class DbNonceStore:
    """A :class:`gateways.protocol.NonceStore` backed by the ``gateway_nonces`` table."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def seen_before(self, gateway: str, nonce: str) -> bool:
        with transaction(self.sessions) as session:
            stmt = (
                upsert(session, NotifyNonce)
                .values(gateway=gateway, nonce=nonce[:100], seen_at=datetime.now(UTC))
                .on_conflict_do_nothing(index_elements=["gateway", "nonce"])
                .returning(NotifyNonce.nonce)
            )
            # rowcount is not reliable for ORM inserts across drivers; RETURNING is.
            return session.execute(stmt).first() is None
