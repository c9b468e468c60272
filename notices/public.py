"""What the public portal may show about a notice: looked up by payment code, payer masked.

Never the payer's full name, ID number or phone; never another notice's data. A mistyped code
(bad check digit) is told apart from an unknown one, because a typo deserves a hint and tells an
enumerator nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from clearing.errors import NotFound
from notices.codes import validate_code
from notices.fees import AmountDue, amount_due, rule_from_dict
from notices.models import Notice


@dataclass(frozen=True)
class PublicLine:
    name_zh: str
    name_en: str
    quantity: int
    amount: int
    """Integer fen."""


@dataclass(frozen=True)
class PublicNotice:
    payment_code: str
    status: str
    kind: str
    department: str
    payer_masked: str
    description: str
    lines: tuple[PublicLine, ...]
    due_date: date
    expires_on: date
    due: AmountDue
    """Principal, late fee and total if paid on the day asked about (integer fen)."""
    notice_id: int

    @property
    def payable(self) -> bool:
        return self.status == "unpaid"


def find_public(session: Session, code: str, today: date) -> PublicNotice:
    """The public view of the notice with this code; PaymentCodeError for a mistyped code,
    NotFound for an unknown one. Expired-by-date unpaid notices show as ``expired``."""
    code = validate_code(code)
    notice = session.scalars(select(Notice).where(Notice.payment_code == code)).one_or_none()
    if notice is None:
        raise NotFound("no notice has this payment code")
    status = notice.status
    if status == "unpaid" and notice.expires_on < today:
        status = "expired"
    due = amount_due(notice.principal, notice.due_date, today, rule_from_dict(notice.late_fee_rule))
    return PublicNotice(
        payment_code=notice.payment_code,
        status=status,
        kind=notice.kind,
        department=notice.department.name,
        payer_masked=notice.payer_name_masked,
        description=notice.description,
        lines=tuple(PublicLine(i.name_zh, i.name_en, i.quantity, i.amount) for i in notice.items),
        due_date=notice.due_date,
        expires_on=notice.expires_on,
        due=due,
        notice_id=notice.id,
    )
