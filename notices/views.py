"""Turn stored notices into API responses (money as yuan strings, personal data masked).

The department that owns a notice gets the payer's full name and phone back (it supplied
them); the ID number is only ever returned masked.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from clearing.money import format_fen
from notices.catalogue import VARIABLE
from notices.fees import amount_due
from notices.models import CatalogueItem, Notice, NoticeItem
from notices.privacy import PayerVault
from notices.schemas import (
    AmountDueOut,
    BatchOut,
    BatchResult,
    CatalogueItemOut,
    CatalogueOut,
    ItemOut,
    Links,
    NoticeOut,
    NoticePage,
    PayerOut,
)
from notices.service import (
    Created,
    Issued,
    Page,
    Rejected,
    aware,
    notice_amount_due,
    pay_url,
)


@dataclass(frozen=True)
class ViewContext:
    """What rendering needs besides the notice: the vault, the public URL and today's date."""

    vault: PayerVault
    public_base_url: str
    today: date

    @property
    def base(self) -> str:
        return self.public_base_url.rstrip("/")


def notice_out(notice: Notice, ctx: ViewContext) -> NoticeOut:
    """The department's view of one of its notices."""
    due = notice_amount_due(notice, ctx.today)
    return NoticeOut(
        id=notice.id,
        payment_code=notice.payment_code,
        kind=notice.kind,
        status=notice.status,
        amount=format_fen(notice.principal),
        amount_due=format_fen(due.total),
        decision_date=notice.decision_date,
        due_date=notice.due_date,
        expires_on=notice.expires_on,
        reference=notice.reference,
        description=notice.description,
        payer=_payer(notice, ctx.vault),
        items=[_item(item) for item in notice.items],
        return_url=notice.return_url,
        metadata=notice.metadata_,
        created_at=aware(notice.created_at),
        links=_links(notice, ctx),
    )


def issued_body(issued: Issued, ctx: ViewContext) -> dict[str, Any]:
    """:func:`notice_out` of a notice just issued, as JSON, from what was inserted (no re-read)."""
    p, request = issued.notice, issued.notice.request
    due = amount_due(p.principal, p.due_date, ctx.today, p.rule)
    own = f"{ctx.base}/v1/notices/{issued.id}"
    return {
        "id": issued.id,
        "payment_code": issued.payment_code,
        "kind": request.kind,
        "status": "unpaid",
        "amount": format_fen(p.principal),
        "amount_due": format_fen(due.total),
        "currency": "CNY",
        "decision_date": _iso(request.decision_date),
        "due_date": p.due_date.isoformat(),
        "expires_on": p.expires_on.isoformat(),
        "reference": request.reference,
        "description": request.description,
        "payer": {
            "name": request.payer.name,
            "id_number": issued.payer_id_number_masked,
            "phone": request.payer.phone,
        },
        "items": [_line_body(line) for line in p.lines],
        "return_url": request.return_url,
        "metadata": dict(request.metadata),
        "created_at": _timestamp(issued.created_at),
        "links": {
            "self": own,
            "pay": f"{ctx.base}/pay/{issued.payment_code}",
            "qr_code": f"{own}/qr.png",
            "document": f"{own}/document.pdf",
        },
    }


def _line_body(line: dict[str, Any]) -> dict[str, Any]:
    return {
        "item_code": line["item_code"],
        "name_zh": line["name_zh"],
        "name_en": line["name_en"],
        "quantity": line["quantity"],
        "unit_amount": format_fen(line["unit_amount"]),
        "amount": format_fen(line["amount"]),
    }


def _iso(day: date | None) -> str | None:
    return None if day is None else day.isoformat()


def _timestamp(moment: datetime) -> str:
    """An aware UTC datetime as pydantic writes it in JSON (``...Z``)."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _payer(notice: Notice, vault: PayerVault) -> PayerOut:
    code = notice.payment_code
    phone = notice.payer_phone_enc and vault.open(code, "payer_phone", notice.payer_phone_enc)
    return PayerOut(
        name=vault.open(code, "payer_name", notice.payer_name_enc),
        id_number=notice.payer_id_number_masked,
        phone=phone,
    )


def _item(item: NoticeItem) -> ItemOut:
    return ItemOut(
        item_code=item.item_code,
        name_zh=item.name_zh,
        name_en=item.name_en,
        quantity=item.quantity,
        unit_amount=format_fen(item.unit_amount),
        amount=format_fen(item.amount),
    )


def _links(notice: Notice, ctx: ViewContext) -> Links:
    own = f"{ctx.base}/v1/notices/{notice.id}"
    return Links(
        self=own,
        pay=pay_url(ctx.base, notice),
        qr_code=f"{own}/qr.png",
        document=f"{own}/document.pdf",
    )


def page_out(page: Page, ctx: ViewContext) -> NoticePage:
    """One page of the notice list."""
    return NoticePage(data=[notice_out(n, ctx) for n in page.notices], next_cursor=page.next_cursor)


def amount_due_out(notice: Notice, on: date) -> AmountDueOut:
    """What paying ``notice`` on ``on`` costs."""
    due = notice_amount_due(notice, on)
    return AmountDueOut(
        notice_id=notice.id,
        status=notice.status,
        on=on,
        due_date=notice.due_date,
        days_overdue=due.days_overdue,
        principal=format_fen(due.principal),
        late_fee=format_fen(due.late_fee),
        total=format_fen(due.total),
    )


def batch_out(outcomes: Sequence[Created | Rejected]) -> BatchOut:
    """One result per submitted notice, in submission order."""
    results = [_batch_result(outcome) for outcome in outcomes]
    created = sum(1 for r in results if r.result == "created")
    return BatchOut(created=created, rejected=len(results) - created, results=results)


def batch_body(outcomes: Sequence[Created | Rejected]) -> dict[str, Any]:
    """:func:`batch_out` as JSON, leaving out the fields that do not apply to a result.

    Written directly as dicts (a batch has up to 10,000 results); :class:`BatchOut` documents
    the shape and the tests hold the two together.
    """
    results = [_batch_result_body(outcome) for outcome in outcomes]
    created = sum(1 for outcome in outcomes if isinstance(outcome, Created))
    return {"created": created, "rejected": len(results) - created, "results": results}


def _batch_result_body(outcome: Created | Rejected) -> dict[str, Any]:
    if isinstance(outcome, Rejected):
        errors = [{"field": e.field, "detail": e.detail} for e in outcome.errors]
        return {"index": outcome.index, "result": "rejected", "errors": errors}
    return {
        "index": outcome.index,
        "result": "created",
        "id": outcome.id,
        "payment_code": outcome.payment_code,
        "amount": format_fen(outcome.principal),
        "due_date": outcome.due_date.isoformat(),
    }


def _batch_result(outcome: Created | Rejected) -> BatchResult:
    if isinstance(outcome, Rejected):
        return BatchResult(index=outcome.index, result="rejected", errors=outcome.errors)
    return BatchResult(
        index=outcome.index,
        result="created",
        id=outcome.id,
        payment_code=outcome.payment_code,
        amount=format_fen(outcome.principal),
        due_date=outcome.due_date,
    )


def catalogue_out(items: Sequence[CatalogueItem]) -> CatalogueOut:
    """The catalogue as a department sees it."""
    return CatalogueOut(
        data=[
            CatalogueItemOut(
                item_code=i.code,
                name_zh=i.name_zh,
                name_en=i.name_en,
                kind=i.kind,
                amount=VARIABLE if i.amount is None else format_fen(i.amount),
            )
            for i in items
        ]
    )
