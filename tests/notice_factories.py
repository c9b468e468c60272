"""Plain keyword-default factories for the notices feature."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from sqlalchemy.orm import Session

from clearing.pii import KeyRing
from notices import catalogue, departments
from notices.departments import Principal
from notices.privacy import PayerVault, derive_pepper
from notices.schemas import NoticeCreate

ID_NUMBER = "11010519491231002X"


def vault() -> PayerVault:
    """A vault with a fresh random key."""
    return PayerVault(KeyRing.from_setting(KeyRing.generate_setting("t1")), derive_pepper("s" * 32))


def fine(
    reference: str = "R-1",
    *,
    item_code: str = "TF-RED-LIGHT",
    decision_date: str = "2026-10-17",
    **kw: Any,
) -> dict[str, Any]:
    """The JSON of a traffic fine notice."""
    body: dict[str, Any] = {
        "kind": "traffic_fine",
        "payer": {"name": "张小三", "id_number": ID_NUMBER, "phone": "13800138000"},
        "items": [{"item_code": item_code}],
        "decision_date": decision_date,
        "reference": reference,
        "description": "闯红灯 川A12345",
    }
    body.update(kw)
    return body


def tuition(reference: str = "S-1", *, due_in_days: int = 30, **kw: Any) -> dict[str, Any]:
    """The JSON of a tuition notice due in ``due_in_days`` days (from the real today)."""
    from notices.service import today_in_shanghai

    body: dict[str, Any] = {
        "kind": "tuition",
        "payer": {"name": "李四"},
        "items": [
            {"item_code": "EDU-TUITION", "amount": "4800.00"},
            {"item_code": "EDU-ACCOMMODATION"},
        ],
        "due_date": (today_in_shanghai() + timedelta(days=due_in_days)).isoformat(),
        "reference": reference,
        "description": "2026 秋季学期",
    }
    body.update(kw)
    return body


def request(body: dict[str, Any]) -> NoticeCreate:
    return NoticeCreate.model_validate(body)


def seed_catalogue(session: Session) -> None:
    catalogue.seed(session, catalogue.load_seed())


def department(
    session: Session,
    name: str = "成都交警",
    kind: str = "police",
    region: str = "510100",
    scopes: tuple[str, ...] = departments.DEFAULT_SCOPES,
) -> tuple[Principal, str]:
    """A department and its principal, plus the full API key."""
    key = departments.create_department(session, name, region, kind, scopes)
    return departments.authenticate(session, key.full), key.full


TODAY = date(2026, 11, 20)
