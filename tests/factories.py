"""Plain keyword-default factories for tests."""

from __future__ import annotations

from datetime import date
from typing import Any

from clearing.ledger.core import Entry, Posting


def payment_entry(
    key: str = "pay-1",
    amount: int = 20_000,
    *,
    gateway: str = "alipay",
    treasury: str = "510100-city",
    on: date = date(2026, 11, 11),
    **kw: Any,
) -> Entry:
    """A captured payment: Dr gateway clearing / Cr treasury payable."""
    return Entry(
        idempotency_key=key,
        business_date=on,
        description=kw.pop("description", f"payment {key}"),
        postings=(
            Posting.debit(f"gateway_clearing:{gateway}", amount),
            Posting.credit(f"treasury_payable:{treasury}", amount),
        ),
        **kw,
    )


# notices and payments -----------------------------------------------------------------------


def notice_setup(
    session,
    tmp_path,
    *,
    kind: str = "traffic_fine",
    items=None,
    decision_date=None,
    due_date=None,
    department: str = "成都市公安局交通管理局",
    dept_kind: str = "police",
    today=None,
):
    """Seed the catalogue, create a department and one notice; returns (principal, notice)."""
    from datetime import date as _date

    from clearing.config import Settings
    from notices import catalogue
    from notices.departments import authenticate, create_department
    from notices.privacy import PayerVault
    from notices.schemas import NoticeCreate
    from notices.service import create_notice

    catalogue.seed(session, catalogue.load_seed())
    key = create_department(session, department, "510100", dept_kind)
    who = authenticate(session, key.full)
    body = {
        "kind": kind,
        "payer": {"name": "张小三"},
        "items": items or [{"item_code": "TF-RED-LIGHT"}],
        "reference": "REF-1",
        "description": "test notice",
    }
    if decision_date:
        body["decision_date"] = decision_date.isoformat()
    if due_date:
        body["due_date"] = due_date.isoformat()
    vault = PayerVault.from_settings(Settings(var_dir=tmp_path, env="test"))
    notice = create_notice(
        session, who, NoticeCreate.model_validate(body), vault, today=today or _date(2026, 11, 27)
    )
    return who, notice


def payable_notice(db, tmp_path, department: str = "成都市公安局交通管理局") -> tuple[int, str]:
    """A committed traffic-fine notice of ``department`` (decided 2026-11-20); returns its id and
    payment code."""
    from clearing.db import transaction

    with transaction(db.sessions) as s:
        _, notice = notice_setup(
            s, tmp_path, decision_date=date(2026, 11, 20), department=department
        )
        return notice.id, notice.payment_code


def started_order(db, ctx, code: str, channel: str, at) -> str:  # type: ignore[no-untyped-def]
    """Start a payment attempt of the notice ``code`` on ``channel`` at ``at`` (committed);
    returns its order id."""
    from clearing.db import run_in_transaction
    from clearing.payments.service import start_attempt

    return run_in_transaction(
        db.sessions, lambda s: start_attempt(s, ctx, code, channel, at)
    ).order_id
