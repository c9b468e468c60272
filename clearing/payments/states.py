"""Payment-attempt states and the only transitions allowed between them.

``duplicate`` is a success that arrived after another attempt had already settled the notice (two
tabs, two gateways): the money moved all the same, so it is captured to ``refunds_payable`` and
refunded automatically. Money states (``succeeded``, ``duplicate``) are final. Every other state can
still become a money state, because nothing a gateway says it collected is ever dropped (a notify
for an attempt that expired on our side at midnight still captures).
"""

from __future__ import annotations

from enum import StrEnum

from clearing.errors import Conflict


class AttemptState(StrEnum):
    CREATED = "created"
    REDIRECTED = "redirected"
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    DUPLICATE = "duplicate"
    FAILED = "failed"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


S = AttemptState
MONEY = frozenset({S.SUCCEEDED, S.DUPLICATE})
OPEN = frozenset({S.CREATED, S.REDIRECTED, S.PENDING})

TRANSITIONS: dict[AttemptState, frozenset[AttemptState]] = {
    S.CREATED: frozenset({S.REDIRECTED, S.FAILED, S.CANCELLED, S.EXPIRED, *MONEY}),
    S.REDIRECTED: frozenset({S.PENDING, S.FAILED, S.CANCELLED, S.EXPIRED, *MONEY}),
    S.PENDING: frozenset({S.FAILED, S.EXPIRED, S.CANCELLED, *MONEY}),
    S.FAILED: MONEY,
    S.EXPIRED: MONEY,
    S.CANCELLED: MONEY,
    S.SUCCEEDED: frozenset(),
    S.DUPLICATE: frozenset(),
}


class IllegalTransition(Conflict):
    type = "illegal-transition"


def ensure_transition(current: str, target: AttemptState) -> None:
    """Raise unless ``current -> target`` is in the table."""
    if target not in TRANSITIONS[AttemptState(current)]:
        raise IllegalTransition(f"a payment attempt cannot go from {current} to {target}")
