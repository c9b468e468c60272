"""Rows for receipt tests: a department, a catalogue item, a paid notice and its settling
attempt, created directly with the ORM (minimal fields)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy.orm import Session

from clearing.payments.models import PaymentAttempt
from notices.codes import generate_code
from notices.models import CatalogueItem, Department, Notice, NoticeItem

NOW = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)  # 10:30 in Asia/Shanghai
FULL_NAME = "张伟三"
MASKED_NAME = "张*三"


def paid_notice(
    session: Session,
    *,
    suffix: str = "1",
    late_fee: int = 0,
    lines: tuple[tuple[int, int], ...] = ((1, 20_000),),
) -> tuple[Notice, PaymentAttempt]:
    """A notice with ``lines`` of (quantity, unit fen), paid by a succeeded attempt."""
    dept = Department(
        name=f"成都市公安局交通管理局 {suffix}", kind="police", region_code="510100", created_at=NOW
    )
    session.add(dept)
    session.flush()
    item = CatalogueItem(
        code=f"TF-{suffix}",
        name_zh="机动车违停罚款",
        name_en="Illegal parking fine",
        kind="traffic_fine",
        amount=20_000,
        max_amount=20_000,
        late_fee_rule={"kind": "none"},
        shares={"510100-city": 10_000},
        revenue_code="103050101",
        budget_level="city",
        department_kinds=["police"],
        department_names=[],
        active=True,
        created_at=NOW,
    )
    session.add(item)
    session.flush()
    principal = sum(q * unit for q, unit in lines)
    notice = Notice(
        department_id=dept.id,
        payment_code=generate_code("510100", 2026),
        kind="traffic_fine",
        status="paid",
        principal=principal,
        late_fee_rule={"kind": "none"},
        due_date=date(2026, 12, 10),
        expires_on=date(2026, 12, 31),
        reference=f"REF-{suffix}",
        description="违停",
        payer_name_enc="enc:" + FULL_NAME,
        payer_name_masked=MASKED_NAME,
        metadata_={},
        created_at=NOW,
        updated_at=NOW,
    )
    session.add(notice)
    session.flush()
    for line_no, (quantity, unit) in enumerate(lines, start=1):
        session.add(
            NoticeItem(
                notice_id=notice.id,
                line_no=line_no,
                catalogue_item_id=item.id,
                item_code=item.code,
                name_zh=item.name_zh,
                name_en=item.name_en,
                quantity=quantity,
                unit_amount=unit,
                amount=quantity * unit,
                shares=item.shares,
                revenue_code=item.revenue_code,
                budget_level=item.budget_level,
            )
        )
    attempt = PaymentAttempt(
        order_id=f"FSO{suffix:0>10}",
        notice_id=notice.id,
        settles_notice_id=notice.id,
        gateway="alipay",
        channel="h5",
        routing_reason="test",
        state="succeeded",
        amount=principal + late_fee,
        principal=principal,
        late_fee=late_fee,
        business_date=date(2026, 11, 28),
        expires_at=NOW + timedelta(hours=12),
        gateway_txn_id=f"2026112822001{suffix:0>8}",
        paid_at=NOW,
        created_at=NOW,
        updated_at=NOW,
    )
    session.add(attempt)
    session.flush()
    session.refresh(notice)
    return notice, attempt
