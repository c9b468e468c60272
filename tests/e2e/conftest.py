"""Fixtures for the end-to-end gateway tests: RSA keys generated once per session."""

from __future__ import annotations

import pytest

from tests.e2e.gateway_harness import generate_pems


@pytest.fixture(scope="session")
def gateway_pems() -> dict[str, dict[str, bytes]]:
    """Two 2048-bit key pairs per gateway, generated once (keygen costs ~50-100 ms each)."""
    return generate_pems()
