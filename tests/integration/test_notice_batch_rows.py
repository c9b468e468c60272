"""A batch (COPY on PostgreSQL, formatted partly by notices.bulk) stores exactly what a single
notice (an INSERT) stores, including text that COPY must escape, JSON and timestamps."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import select

from clearing.db import transaction
from notices import bulk, service
from notices.models import Notice, NoticeItem
from notices.privacy import PayerVault
from notices.service import aware
from tests.notice_factories import fine, request, vault

TODAY = date(2026, 11, 20)
AWKWARD = 'tab\there, new\nline, cr\rhere, back\\slash, \\N, quote " and 中文'
ENCRYPTED = ("payer_name_enc", "payer_id_number_enc", "payer_phone_enc")
PER_NOTICE = ("id", "payment_code", "created_at", "updated_at", *ENCRYPTED)


def columns(notice: Notice) -> dict:
    return {c.name: getattr(notice, c.key) for c in Notice.__mapper__.columns}


def item_columns(item: NoticeItem) -> dict:
    skip = ("id", "notice_id")
    return {c.key: getattr(item, c.key) for c in NoticeItem.__mapper__.columns if c.key not in skip}


def opened(notice: Notice, v: PayerVault) -> dict:
    code = notice.payment_code
    return {
        c: v.open(code, c.removesuffix("_enc"), getattr(notice, c)) if getattr(notice, c) else None
        for c in ENCRYPTED
    }


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"metadata": {"case": AWKWARD, "k": "v"}, "return_url": "https://dept.example/d?a=1"},
        {"payer": {"name": "John Smith"}},
    ],
)
def test_a_batch_stores_what_a_single_notice_stores(db, police, extra):
    body, v = fine(AWKWARD[:64], description=AWKWARD, **extra), vault()
    with transaction(db.sessions) as s:
        single = service.issue_notice(s, police, request(body), v, today=TODAY).id
        [created] = service.create_batch(s, police, [request(body)], v, today=TODAY)
    with transaction(db.sessions) as s:
        one, batched = s.get(Notice, single), s.get(Notice, created.id)
        expected, got = columns(one), columns(batched)
        assert {k: v for k, v in got.items() if k not in PER_NOTICE} == {
            k: v for k, v in expected.items() if k not in PER_NOTICE
        }
        assert opened(batched, v) == opened(one, v)
        # same instant as a single notice's (a time zone slip would be hours off)
        start, moment = aware(expected["created_at"]), aware(got["created_at"])
        assert got["created_at"] == got["updated_at"]
        assert start <= moment < start + timedelta(seconds=5)
        one_item, batched_item = (
            s.scalars(select(NoticeItem).where(NoticeItem.notice_id == n)).one()
            for n in (single, created.id)
        )
        assert item_columns(batched_item) == item_columns(one_item)


def test_existing_values_refuses_commas_and_accepts_nothing(db, police):
    column = Notice.__table__.c.payment_code
    with transaction(db.sessions) as s:
        code = service.issue_notice(s, police, request(fine()), vault(), today=TODAY).payment_code
        assert bulk.existing_values(s, column, []) == set()
        assert bulk.existing_values(s, column, [code, "51010026000000000001"]) == {code}
        if db.name == "postgresql":
            with pytest.raises(ValueError, match="commas"):
                bulk.existing_values(s, column, ["a,b"])


def test_allocated_ids_are_distinct_and_fresh(db, police):
    with transaction(db.sessions) as s:
        ids = bulk.allocate_ids(s, Notice.__table__, 5)
        assert len(set(ids)) == 5 and all(isinstance(i, int) for i in ids)
