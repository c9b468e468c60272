"""Notices on real databases (SQLite and PostgreSQL): catalogue, departments, keys, issuing,
listing, cancelling, expiring, idempotency keys, personal data at rest."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from clearing.db import transaction
from clearing.errors import Conflict, Forbidden, NotFound, Unauthorized, ValidationError
from clearing.pii import PiiError
from notices import catalogue, departments, idempotency, service, tasks
from notices.catalogue import spec_from_dict
from notices.models import Notice
from notices.service import NoticeFilter
from tests.notice_factories import ID_NUMBER, department, fine, request, vault

TODAY = date(2026, 11, 20)


def issue(db, who, body=None, v=None, **kw):
    with transaction(db.sessions) as s:
        notice = service.create_notice(
            s, who, request(body or fine(**kw)), v or vault(), today=TODAY
        )
        return notice.id


def set_status(db, notice_id, status):
    with transaction(db.sessions) as s:
        s.get(Notice, notice_id).status = status


# ------------------------------------------------------------------------------ catalogue


def test_seeding_is_idempotent_and_disable_hides_an_item(db):
    with transaction(db.sessions) as s:
        added, skipped = catalogue.seed(s, catalogue.load_seed())
        assert (added, skipped) == (11, 0)
        assert catalogue.seed(s, catalogue.load_seed()) == (0, 11)
        catalogue.disable_item(s, "TF-PARKING")
        codes = [i.code for i in catalogue.usable_items(s, "police", "x")]
        assert "TF-PARKING" not in codes and "TF-RED-LIGHT" in codes
        assert "EDU-TUITION" not in codes
        assert len(catalogue.list_items(s, include_disabled=True)) == 11
        with pytest.raises(NotFound):
            catalogue.disable_item(s, "NOPE")


def test_adding_an_existing_code_conflicts_and_shares_are_validated(db):
    data = {
        "code": "SF-X",
        "name_zh": "某费",
        "name_en": "A fee",
        "kind": "service_fee",
        "amount": "5.00",
        "shares": {"510100-city": 10000},
        "revenue_code": "103020211",
        "budget_level": "city",
        "department_kinds": ["agency"],
    }
    with transaction(db.sessions) as s:
        catalogue.add_item(s, spec_from_dict(data))
        with pytest.raises(Conflict):
            catalogue.add_item(s, spec_from_dict(data))
    with pytest.raises(ValidationError, match="10000"):
        spec_from_dict({**data, "shares": {"510100-city": 9000}})
    with pytest.raises(ValidationError):
        spec_from_dict({**data, "budget_level": "village"})


# --- departments and keys


def test_keys_authenticate_until_revoked(db):
    with transaction(db.sessions) as s:
        key = departments.create_department(s, "四川大学", "510100", "school")
        other = departments.add_key(s, "四川大学", ["notices:read"])
    with transaction(db.sessions) as s:
        who = departments.authenticate(s, key.full)
        assert who.department_kind == "school" and who.scopes == {"notices:read", "notices:write"}
        reader = departments.authenticate(s, other.full)
        with pytest.raises(Forbidden):
            reader.require("notices:write")
        departments.revoke_key(s, key.prefix)
    with transaction(db.sessions) as s, pytest.raises(Unauthorized):
        departments.authenticate(s, key.full)
    with transaction(db.sessions) as s:
        assert departments.authenticate(s, other.full).department_id == who.department_id


@pytest.mark.parametrize("bearer", [None, "", "nonsense", "fs_live_00000000_" + "a" * 43])
def test_bad_keys_are_unauthorized(db, bearer):
    with transaction(db.sessions) as s, pytest.raises(Unauthorized):
        departments.authenticate(s, bearer)


def test_a_wrong_secret_is_unauthorized(db):
    with transaction(db.sessions) as s:
        key = departments.create_department(s, "出入境", "510100", "agency")
    forged = key.full[:-4] + ("AAAA" if not key.full.endswith("AAAA") else "BBBB")
    with transaction(db.sessions) as s, pytest.raises(Unauthorized):
        departments.authenticate(s, forged)


def test_department_rules(db):
    with transaction(db.sessions) as s:
        departments.create_department(s, "A", "510100")
        with pytest.raises(Conflict):
            departments.create_department(s, "A", "510100")
        for args in (("B", "5101"), ("B", "510100", "army")):
            with pytest.raises(ValidationError):
                departments.create_department(s, *args)
        with pytest.raises(ValidationError):
            departments.create_department(s, "B", "510100", "agency", ["admin"])


# ------------------------------------------------------------------------------ issuing


def test_a_notice_is_stored_with_its_lines_and_sealed_personal_data(db, police):
    v = vault()
    notice_id = issue(db, police, v=v)
    with transaction(db.sessions) as s:
        n = service.get_notice(s, police.department_id, notice_id)
        assert (n.status, n.principal, n.due_date) == ("unpaid", 20_000, date(2026, 11, 1))
        assert n.payment_code.startswith("51010026") and len(n.payment_code) == 20
        assert [(i.item_code, i.amount, i.shares) for i in n.items] == [
            ("TF-RED-LIGHT", 20_000, {"510100-city": 10000})
        ]
        assert n.payer_name_masked == "张*三"
        assert n.payer_id_number_masked == "1101**********002X"
        assert n.payer_id_number_hash == v.id_number_hash(ID_NUMBER)
        assert v.open(n.payment_code, "payer_id_number", n.payer_id_number_enc) == ID_NUMBER
        with pytest.raises(PiiError):  # bound to this notice and column
            v.open(n.payment_code, "payer_name", n.payer_id_number_enc)
        raw = s.execute(text("SELECT * FROM notices")).mappings().one()
        assert not any(
            ID_NUMBER in str(value) or "张小三" in str(value) or "13800138000" in str(value)
            for value in raw.values()
        )


def test_the_longest_names_fit_their_columns(db, police):
    name = "𠀀" * 100  # 4 bytes each in UTF-8
    notice_id = issue(
        db,
        police,
        payer={"name": name, "phone": "+86 138-0013-8000"},
        description="说" * 500,
        reference="号" * 64,
    )
    with transaction(db.sessions) as s:
        n = s.get(Notice, notice_id)
        assert len(n.payer_name_enc) <= 700 and n.payer_name_masked == "𠀀" + "*" * 98 + "𠀀"


def test_issuing_posts_nothing_to_the_ledger(db, police):
    issue(db, police)
    with transaction(db.sessions) as s:
        assert s.scalar(text("SELECT count(*) FROM journal_entries")) == 0
        assert s.scalar(text("SELECT count(*) FROM postings")) == 0


def test_a_batch_creates_the_valid_notices_and_reports_the_others(db, police):
    entries = [
        request(fine("B0")),
        [],
        request(fine("B2", items=[{"item_code": "NOPE"}])),
        request(fine("B3")),
    ]
    with transaction(db.sessions) as s:
        outcomes = service.create_batch(s, police, entries, vault(), today=TODAY)
    assert [type(o).__name__ for o in outcomes] == ["Created", "Rejected", "Rejected", "Created"]
    assert outcomes[2].errors[0].field == "items[0].item_code"
    with transaction(db.sessions) as s:
        refs = {n.id: n.reference for n in s.scalars(select(Notice))}
    assert refs == {outcomes[0].id: "B0", outcomes[3].id: "B3"}


def test_payment_codes_that_collide_are_drawn_again(db, police, monkeypatch):
    first = issue(db, police)
    with transaction(db.sessions) as s:
        taken = s.get(Notice, first).payment_code
    fresh = iter([taken, taken, "51010026000000000001"])
    monkeypatch.setattr(service, "generate_code", lambda region, year: next(fresh))
    second = issue(db, police)
    with transaction(db.sessions) as s:
        assert s.get(Notice, second).payment_code == "51010026000000000001"


def test_a_code_taken_after_the_check_is_retried_inside_a_savepoint(db, police, monkeypatch):
    first = issue(db, police)
    with transaction(db.sessions) as s:
        taken = s.get(Notice, first).payment_code
    fresh = iter([taken, "51010026000000000001", "51010026000000000002", "51010026000000000003"])
    monkeypatch.setattr(service, "generate_code", lambda region, year: next(fresh))
    monkeypatch.setattr(service.bulk, "existing_values", lambda *args: set())  # lose the race
    with transaction(db.sessions) as s:
        outcomes = service.create_batch(
            s, police, [request(fine("a")), request(fine("b"))], vault(), today=TODAY
        )
    assert [o.payment_code for o in outcomes] == ["51010026000000000002", "51010026000000000003"]
    with transaction(db.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Notice)) == 3


# ------------------------------------------------------------------------------ reading


def test_listing_pages_in_a_stable_order_with_filters(db, police):
    with transaction(db.sessions) as s:
        other, _ = department(s, "另一个交警", region="510000")
    ids = [issue(db, police, reference=f"R{i % 3}") for i in range(7)]
    issue(db, other)
    seen, cursor = [], None
    with transaction(db.sessions) as s:
        while True:
            page = service.list_notices(
                s, police.department_id, NoticeFilter(), limit=3, cursor=cursor
            )
            seen += [n.id for n in page.notices]
            cursor = page.next_cursor
            if cursor is None:
                break
        assert seen == sorted(ids, reverse=True)
        by_ref = service.list_notices(s, police.department_id, NoticeFilter(reference="R1"))
        assert len(by_ref.notices) == 2
        today = service.today_in_shanghai()
        assert (
            len(
                service.list_notices(
                    s,
                    police.department_id,
                    NoticeFilter(
                        created_from=today,
                        created_to=today,
                        due_from=date(2026, 11, 1),
                        due_to=date(2026, 11, 1),
                        kind="traffic_fine",
                        status="unpaid",
                    ),
                ).notices
            )
            == 7
        )
        assert (
            service.list_notices(
                s, police.department_id, NoticeFilter(created_to=today - timedelta(days=1))
            ).notices
            == []
        )
        assert (
            service.list_notices(s, police.department_id, NoticeFilter(status="paid")).notices == []
        )


def test_another_departments_notice_is_not_found(db, police):
    notice_id = issue(db, police)
    with transaction(db.sessions) as s:
        other, _ = department(s, "另一个交警")
        with pytest.raises(NotFound):
            service.get_notice(s, other.department_id, notice_id)
        with pytest.raises(NotFound):
            service.cancel_notice(s, other.department_id, notice_id)
    with transaction(db.sessions) as s:
        assert s.get(Notice, notice_id).status == "unpaid"


# ------------------------------------------------------------------------------ changing


@pytest.mark.parametrize("status", ["paid", "cancelled", "expired", "refunded"])
def test_only_unpaid_notices_can_be_cancelled(db, police, status):
    notice_id = issue(db, police)
    set_status(db, notice_id, status)
    with transaction(db.sessions) as s, pytest.raises(Conflict, match=status):
        service.cancel_notice(s, police.department_id, notice_id)


def test_cancelling_an_unpaid_notice(db, police):
    notice_id = issue(db, police)
    with transaction(db.sessions) as s:
        assert service.cancel_notice(s, police.department_id, notice_id).status == "cancelled"


def test_expiry_is_by_date_only_unpaid_and_idempotent(db, police, monkeypatch):
    a = issue(db, police)  # expires 2027-01-30
    b = issue(db, police, due_date="2026-11-20", expires_on="2026-12-01")
    paid = issue(db, police, due_date="2026-11-20", expires_on="2026-12-01")
    set_status(db, paid, "paid")

    class Runtime:
        sessions = db.sessions

    monkeypatch.setattr("clearing.runtime.get_runtime", lambda: Runtime)
    assert tasks.expire_notices(date(2026, 12, 1)) == 0  # the last day is still payable
    assert tasks.expire_notices(date(2026, 12, 2)) == 1
    assert tasks.expire_notices(date(2026, 12, 2)) == 0
    with transaction(db.sessions) as s:
        assert [s.get(Notice, i).status for i in (a, b, paid)] == ["unpaid", "expired", "paid"]
    assert tasks.expire_notices(date(2027, 1, 31)) == 1


# ------------------------------------------------------------------------------ idempotency


def test_idempotency_claim_complete_replay(db, police):
    dept = police.department_id
    claim = idempotency.claim(db.sessions, dept, "k1", "h1")
    assert isinstance(claim, idempotency.Claim)
    with pytest.raises(idempotency.RequestInProgress):
        idempotency.claim(db.sessions, dept, "k1", "h1")
    with pytest.raises(idempotency.IdempotencyKeyReused):
        idempotency.claim(db.sessions, dept, "k1", "h2")
    with transaction(db.sessions) as s:
        idempotency.complete(s, claim, 201, {"id": 1})
    assert idempotency.claim(db.sessions, dept, "k1", "h1") == idempotency.Replay(201, {"id": 1})


def test_a_released_claim_can_be_retried(db, police):
    claim = idempotency.claim(db.sessions, police.department_id, "k", "h")
    idempotency.release(db.sessions, claim)
    assert isinstance(
        idempotency.claim(db.sessions, police.department_id, "k", "h2"), idempotency.Claim
    )


def test_abandoned_and_expired_claims_are_taken_over(db, police):
    dept, start = police.department_id, datetime(2026, 11, 20, 8, tzinfo=UTC)
    old = idempotency.claim(db.sessions, dept, "k", "h", now=start)
    later = start + idempotency.LEASE + timedelta(seconds=1)
    new = idempotency.claim(db.sessions, dept, "k", "h", now=later)
    assert isinstance(new, idempotency.Claim)
    with transaction(db.sessions) as s, pytest.raises(Conflict):
        idempotency.complete(s, old, 201, {})  # the crashed owner lost its claim
    with transaction(db.sessions) as s:
        idempotency.complete(s, new, 201, {"n": 1})
    after_ttl = later + idempotency.TTL + timedelta(seconds=1)
    assert isinstance(
        idempotency.claim(db.sessions, dept, "k", "other", now=after_ttl), idempotency.Claim
    )
    with transaction(db.sessions) as s:
        assert idempotency.purge_expired(s, after_ttl + idempotency.TTL * 2) == 1
        assert s.scalar(select(func.count()).select_from(text("idempotency_keys"))) == 0


def test_keys_belong_to_one_department(db, police):
    with transaction(db.sessions) as s:
        other, _ = department(s, "另一个交警")
    assert isinstance(
        idempotency.claim(db.sessions, police.department_id, "k", "h"), idempotency.Claim
    )
    assert isinstance(
        idempotency.claim(db.sessions, other.department_id, "k", "h"), idempotency.Claim
    )


@pytest.mark.parametrize("key", ["", "a" * 256, "with space", "ключ"])
def test_malformed_idempotency_keys(db, police, key):
    with pytest.raises(ValidationError):
        idempotency.claim(db.sessions, police.department_id, key, "h")
