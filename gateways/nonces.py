"""Replay protection for notifies: an in-memory :class:`~gateways.protocol.NonceStore`.

The platform passes a database-backed store (a unique key on gateway and nonce); this one is for
tests and single-process development.
"""

from __future__ import annotations

import threading


class MemoryNonceStore:
    """Remembers every (gateway, nonce) pair it is shown, for the life of the process."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def seen_before(self, gateway: str, nonce: str) -> bool:
        """Record ``nonce``; True if it had been recorded already."""
        with self._lock:
            if (gateway, nonce) in self._seen:
                return True
            self._seen.add((gateway, nonce))
            return False
