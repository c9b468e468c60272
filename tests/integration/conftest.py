"""Fixtures shared by the integration tests."""

from __future__ import annotations

import pytest

from clearing.db import transaction
from tests.notice_factories import department, seed_catalogue


@pytest.fixture
def police(db):
    """The seeded catalogue and a police department; its principal (it issues traffic fines)."""
    with transaction(db.sessions) as s:
        seed_catalogue(s)
        who, _ = department(s)
    return who
