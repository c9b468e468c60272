"""The fast paths of notice creation, on SQLite and PostgreSQL: the per-process catalogue and
API-key caches (and how soon a change made elsewhere applies), the single-notice INSERT with
its retry on a taken payment code, and whole-batch validation with its per-entry fallback."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import event, func, select, update

from api.app import create_app
from api.runtime import build_runtime
from clearing.config import Settings
from clearing.db import transaction
from clearing.errors import Conflict, Unauthorized, ValidationError
from notices import catalogue, departments, service, views
from notices.models import ApiKey, CatalogueItem, Notice, NoticeItem
from notices.schemas import BatchOut, NoticeOut, parse_batch, parse_batch_entry
from notices.views import ViewContext
from tests.notice_factories import fine, request, seed_catalogue, vault

TODAY = date(2026, 11, 20)


def issue(db, who, body=None, v=None):
    with transaction(db.sessions) as s:
        return service.issue_notice(s, who, request(body or fine()), v or vault(), today=TODAY)


def disable_elsewhere(db, code):
    """Disable an item as another process would: straight in the database, no cache touched."""
    with transaction(db.sessions) as s:
        s.execute(update(CatalogueItem).where(CatalogueItem.code == code).values(active=False))


# ------------------------------------------------------------------------------ catalogue cache


def test_an_item_disabled_in_this_process_is_refused_at_once(db, police):
    issue(db, police)  # the item is now cached
    with transaction(db.sessions) as s:
        catalogue.disable_item(s, "TF-RED-LIGHT")
    with pytest.raises(ValidationError, match="unknown item code"):
        issue(db, police)


def test_an_item_disabled_elsewhere_is_refused_within_the_ttl(db, police, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(catalogue.time, "monotonic", lambda: clock[0])
    issue(db, police)
    disable_elsewhere(db, "TF-RED-LIGHT")
    issue(db, police)  # still cached: the documented staleness
    clock[0] += catalogue.CACHE_TTL_SECONDS + 0.01
    with pytest.raises(ValidationError, match="unknown item code"):
        issue(db, police)


def test_an_item_added_elsewhere_is_usable_at_once(db, police):
    issue(db, police)
    with transaction(db.sessions) as s:
        odd = s.scalar(select(CatalogueItem).where(CatalogueItem.code == "TF-PARKING"))
        copied = {c.key: getattr(odd, c.key) for c in CatalogueItem.__table__.columns}
        s.add(CatalogueItem(**{**copied, "id": None, "code": "TF-NEW"}))
    issued = issue(db, police, fine(item_code="TF-NEW"))
    assert issued.notice.lines[0]["item_code"] == "TF-NEW"


def test_items_read_by_a_transaction_that_changed_the_catalogue_are_not_cached(db, police):
    spec = catalogue.spec_from_dict(
        {
            "code": "TF-ROLLED-BACK",
            "name_zh": "测试",
            "name_en": "Test",
            "kind": "traffic_fine",
            "amount": "10.00",
            "shares": {"city": 10000},
            "revenue_code": "103050101",
            "budget_level": "city",
            "department_kinds": ["police"],
        }
    )
    s = db.session()
    try:
        catalogue.add_item(s, spec)
        service.issue_notice(s, police, request(fine(item_code="TF-ROLLED-BACK")), vault())
    finally:
        s.rollback()
        s.close()
    with pytest.raises(ValidationError, match="unknown item code"):
        issue(db, police, fine(item_code="TF-ROLLED-BACK"))


# ------------------------------------------------------------------------------ key cache


def new_key(db):
    with transaction(db.sessions) as s:
        return departments.create_department(s, "四川大学", "510100", "school")


def test_a_key_revoked_in_this_process_is_refused_at_once(db):
    key = new_key(db)
    assert departments.authenticate_cached(db.sessions, key.full).department_name == "四川大学"
    with transaction(db.sessions) as s:
        departments.revoke_key(s, key.prefix)
    with pytest.raises(Unauthorized):
        departments.authenticate_cached(db.sessions, key.full)


def test_a_key_revoked_elsewhere_is_refused_within_the_ttl(db, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(departments.time, "monotonic", lambda: clock[0])
    key = new_key(db)
    departments.authenticate_cached(db.sessions, key.full)
    with transaction(db.sessions) as s:  # as `feishui department revoke-key` in another process
        s.execute(update(ApiKey).where(ApiKey.prefix == key.prefix).values(revoked_at=func.now()))
    assert departments.authenticate_cached(db.sessions, key.full)  # the documented staleness
    clock[0] += departments.KEY_CACHE_TTL_SECONDS + 0.01
    with pytest.raises(Unauthorized):
        departments.authenticate_cached(db.sessions, key.full)


def test_a_cached_key_still_checks_the_secret(db):
    key = new_key(db)
    departments.authenticate_cached(db.sessions, key.full)
    wrong = key.full[:-4] + ("AAAA" if not key.full.endswith("AAAA") else "BBBB")
    with pytest.raises(Unauthorized):
        departments.authenticate_cached(db.sessions, wrong)
    assert departments.authenticate_from_cache(db.sessions, key.full) is not None


def test_unknown_keys_are_not_cached(db):
    bearer = "fs_live_00000000_" + "a" * 43
    with pytest.raises(Unauthorized):
        departments.authenticate_cached(db.sessions, bearer)
    assert departments.authenticate_from_cache(db.sessions, bearer) is None


# ------------------------------------------------------------------------------ single insert


def test_a_taken_payment_code_is_replaced_by_a_fresh_one(db, police, monkeypatch):
    taken = issue(db, police).payment_code
    fresh = iter([taken, taken, "51010026" + "0" * 11 + "9"])
    real = service.generate_code
    monkeypatch.setattr(service, "generate_code", lambda region, year: next(fresh))
    second = issue(db, police)
    monkeypatch.setattr(service, "generate_code", real)
    assert second.payment_code != taken and second.payment_code.startswith("51010026")
    with transaction(db.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Notice)) == 2
        # a taken code inserts neither the notice nor its lines (one statement on PostgreSQL)
        assert s.scalar(select(func.count()).select_from(NoticeItem)) == 2


def test_a_notice_is_one_statement_on_postgresql(db, police):
    statements: list[str] = []

    def on_statement(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        if not statement.startswith("BEGIN"):  # SQLite's BEGIN IMMEDIATE
            statements.append(statement.split()[0])

    issue(db, police)  # warm the catalogue cache
    event.listen(db.engine, "before_cursor_execute", on_statement)
    try:
        issue(db, police)
    finally:
        event.remove(db.engine, "before_cursor_execute", on_statement)
    expected = ["WITH"] if db.engine.dialect.name == "postgresql" else ["INSERT", "INSERT"]
    assert statements == expected


def test_only_taken_codes_is_a_conflict(db, police, monkeypatch):
    taken = issue(db, police).payment_code
    monkeypatch.setattr(service, "generate_code", lambda region, year: taken)
    with pytest.raises(Conflict):
        issue(db, police)


def test_the_issued_response_is_the_stored_notice(db, police):
    ctx = ViewContext(vault(), "https://pay.example.cn", TODAY)
    body = fine(metadata={"case": "川A12345"}, return_url="https://dept.example/done")
    with transaction(db.sessions) as s:
        issued = service.issue_notice(s, police, request(body), ctx.vault, today=TODAY)
    with transaction(db.sessions) as s:
        stored = service.get_notice(s, police.department_id, issued.id)
        expected = views.notice_out(stored, ctx).model_dump(mode="json")
    assert views.issued_body(issued, ctx) == expected
    NoticeOut.model_validate(views.issued_body(issued, ctx))


# ------------------------------------------------------------------------------ batches


def test_a_valid_batch_is_validated_in_one_go_and_an_invalid_one_entry_by_entry():
    good = [fine("a"), fine("b")]
    assert [r.reference for r in parse_batch(good)] == ["a", "b"]
    mixed = [fine("a"), {"kind": "nope"}, fine("c", payer={"name": ""})]
    assert parse_batch(mixed) == [parse_batch_entry(raw) for raw in mixed]


def test_the_batch_body_matches_its_schema(db, police):
    requests = parse_batch([fine("a"), {"kind": "nope"}, fine("c", decision_date="2099-01-01")])
    with transaction(db.sessions) as s:
        outcomes = service.create_batch(s, police, requests, vault(), today=TODAY)
    body = views.batch_body(outcomes)
    expected = views.batch_out(outcomes).model_dump(mode="json")
    expected["results"] = [
        {k: v for k, v in r.items() if v is not None} for r in expected["results"]
    ]
    assert body == expected and (body["created"], body["rejected"]) == (1, 2)
    BatchOut.model_validate(body)


# ------------------------------------------------------------------------------ concurrency


@pytest.mark.postgres
def test_concurrent_keyed_creates_each_make_one_notice(pg, tmp_path):
    with transaction(pg.sessions) as s:
        seed_catalogue(s)
        key = departments.create_department(s, "dept", "510100", "police").full
    app = create_app(build_runtime(Settings(database_url=pg.url, var_dir=tmp_path, env="test")))
    barrier, results, lock = threading.Barrier(8), {}, threading.Lock()

    def send(n):
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"k-{n % 4}"}
        with TestClient(app) as client:
            barrier.wait()
            for _ in range(3):
                r = client.post("/v1/notices", json=fine(f"R-{n % 4}"), headers=headers)
                if r.status_code == 201:
                    with lock:
                        results.setdefault(n % 4, []).append(r.json())
                    return
                assert r.status_code == 409, r.text

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with transaction(pg.sessions) as s:
        assert s.scalar(select(func.count()).select_from(Notice)) == 4
    for answers in results.values():
        assert all(a == answers[0] for a in answers)
