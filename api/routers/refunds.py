"""Refunds of a paid notice (``/v1/notices/{id}/refunds``, scope ``refunds:write``).

A retried request is safe through ``refund_amount_available`` (as on GOV.UK Pay): once the
first refund is recorded, a repeat of the same request carries a stale figure and gets 412.
The gateway is called after the response (after commit): in-process without Redis, else by a
worker.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Path, Request
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import select

from api.deps import ReadSession, WriteSession, require
from clearing.money import format_fen, parse_fen
from clearing.payments import refunds
from clearing.payments.models import Refund
from clearing.payments.tasks import submit_refund
from notices.departments import Principal
from notices.service import get_notice

router = APIRouter(prefix="/v1/notices", tags=["refunds"])
NoticeId = Annotated[int, Path(ge=1, le=2**63 - 1)]
Refunder = Annotated[Principal, Depends(require("refunds:write"))]
Reader = Annotated[Principal, Depends(require("notices:read"))]


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: str = Field(description='Yuan, e.g. "60.00"')
    reason: str = Field(min_length=1, max_length=300)
    refund_amount_available: str | None = Field(
        None, description="What you believe is still refundable; 412 if it is not current"
    )

    @field_validator("amount", "refund_amount_available")
    @classmethod
    def _yuan(cls, value: str | None) -> str | None:
        if value is not None:
            parse_fen(value)
        return value


class RefundOut(BaseModel):
    refund_id: str
    notice_id: int
    kind: str
    amount: str
    state: str
    reason: str
    created_at: datetime


class RefundList(BaseModel):
    refunds: list[RefundOut]
    refund_amount_available: str


def _out(refund: Refund) -> RefundOut:
    return RefundOut(
        refund_id=refund.refund_id,
        notice_id=refund.notice_id,
        kind=refund.kind,
        amount=format_fen(refund.amount),
        state=refund.state,
        reason=refund.reason,
        created_at=refund.created_at,
    )


@router.post("/{notice_id}/refunds", status_code=201, response_model=RefundOut)
def create_refund(
    notice_id: NoticeId,
    body: RefundCreate,
    who: Refunder,
    session: WriteSession,
    request: Request,
    background: BackgroundTasks,
) -> RefundOut:
    """Refund all or part of a paid notice; the total never exceeds what was paid."""
    expected = body.refund_amount_available
    refund = refunds.request_refund(
        session,
        department_id=who.department_id,
        notice_id=notice_id,
        amount=parse_fen(body.amount, field="amount"),
        reason=body.reason,
        expected_available=None if expected is None else parse_fen(expected),
    )
    runtime, payments = request.app.state.runtime, request.app.state.payments
    background.add_task(submit_refund, runtime.sessions, payments, refund.id)
    return _out(refund)


@router.get("/{notice_id}/refunds", response_model=RefundList)
def list_refunds(notice_id: NoticeId, who: Reader, session: ReadSession) -> RefundList:
    """The notice's refunds and what is still refundable."""
    notice = get_notice(session, who.department_id, notice_id)
    rows = session.scalars(
        select(Refund).where(Refund.notice_id == notice.id).order_by(Refund.id)
    ).all()
    available = refunds.availability(session, notice).available if notice.status == "paid" else 0
    return RefundList(
        refunds=[_out(r) for r in rows], refund_amount_available=format_fen(available)
    )
