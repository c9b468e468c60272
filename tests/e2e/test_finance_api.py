"""The finance API and pages over HTTP on SQLite and PostgreSQL: roles, department keys refused,
login/logout with the session cookie and CSRF, four eyes on exceptions, remittances (idempotent,
state machine, vouchers that add up), and reports."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from openpyxl import load_workbook
from sqlalchemy import select

from api.app import create_app
from api.routers import finance, finance_pages
from clearing.config import Settings
from clearing.db import run_in_transaction, transaction
from clearing.ledger.core import Entry, Posting
from clearing.ledger.models import JournalEntry
from clearing.ledger.service import LedgerService
from clearing.payments.capture import apply_result
from clearing.payments.models import PaymentAttempt
from clearing.payments.service import PaymentContext, start_attempt
from clearing.routing import DEFAULT_RULES, Router
from clearing.runtime import Runtime
from gateways.protocol import Channel
from notices import catalogue
from notices.receipts import ESeal
from notices.service import create_notice
from reconciliation import users
from reconciliation.models import ReconciliationItem, ReconciliationRun, Remittance
from tests.notice_factories import department, fine, request, seed_catalogue, vault
from tests.support.fake_gateway import FakeGateway

PROBLEM = "application/problem+json"
PASSWORD = "correct horse battery"
DAY = date(2026, 11, 27)
PAID_AT = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)  # 10:00 in Beijing
ESEAL = ESeal(Ed25519PrivateKey.generate())


@dataclass
class Fin:
    client: TestClient
    db: object
    tokens: dict[str, str]
    dept_key: str

    def h(self, who: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[who]}"}

    def get(self, path: str, who: str = "alice", **kw):
        return self.client.get(path, headers=self.h(who), **kw)

    def post(self, path: str, who: str = "alice", **kw):
        return self.client.post(path, headers=self.h(who), **kw)


def build_app(db, tmp_path):
    settings = Settings(env="test", var_dir=tmp_path, database_url=db.url)
    app = create_app(Runtime(settings, db.engine, db.sessions))
    paths = {getattr(r, "path", "") for r in app.routes}
    if "/v1/finance/remittances" not in paths:
        app.include_router(finance.router)
    if "/finance/login" not in paths:
        app.include_router(finance_pages.router)
    return app


@pytest.fixture
def fin(db, tmp_path):
    tokens = {}
    with transaction(db.sessions) as s:
        for name, role in (
            ("alice", "finance_officer"),
            ("bob", "finance_officer"),
            ("carol", "auditor"),
            ("root", "admin"),
        ):
            users.create_user(s, name, role, PASSWORD, name.title())
            tokens[name] = users.issue_api_token(s, name).full
        seed_catalogue(s)
        _, dept_key = department(s)
    with TestClient(build_app(db, tmp_path)) as client:
        yield Fin(client, db, tokens, dept_key)


def assert_problem(response, status, type_=None):
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert body["status"] == status and body["detail"]
    if type_:
        assert body["type"].endswith("/" + type_)
    return body


def make_run(
    db,
    *,
    source="alipay",
    day=DAY,
    sha="a" * 64,
    outcomes=("matched", "missing_internal", "amount_mismatch", "fee_mismatch"),
) -> tuple[int, list[int]]:
    """A run with one item per outcome; every outcome but matched is an open exception."""
    with transaction(db.sessions) as s:
        run = ReconciliationRun(
            source=source,
            kind="bill",
            business_date=day,
            file_name=f"{source}_{day:%Y%m%d}.csv",
            file_sha256=sha,
            file_format=source,
            state="succeeded",
            started_by="alice",
            started_at=datetime.now(UTC),
            finished_at=datetime.now(UTC),
            line_count=len(outcomes),
            counts={},
            totals={},
        )
        s.add(run)
        s.flush()
        items = []
        for n, outcome in enumerate(outcomes, 1):
            item = ReconciliationItem(
                run_id=run.id,
                line_no=n,
                outcome=outcome,
                kind="payment",
                order_id=f"O{n}",
                external_id=f'=HYPERLINK("x","{n}")',
                amount=-1230 * n,
                expected_amount=1000 if outcome == "amount_mismatch" else None,
                fee=6,
                detail=f"行 {n}: 金额不符" if outcome != "matched" else "ok",
                exception_state=None if outcome == "matched" else "open",
            )
            s.add(item)
            s.flush()
            items.append(item.id)
        return run.id, items


# ------------------------------------------------------------------------------ authentication


def test_no_credentials_is_401(fin):
    body = assert_problem(fin.client.get("/v1/finance/reconciliation/runs"), 401, "unauthorized")
    assert "log in" in body["detail"]


def test_a_department_key_never_reaches_finance_endpoints(fin):
    for method, path in (
        ("get", "/v1/finance/reconciliation/runs"),
        ("get", "/v1/finance/ledger/trial-balance"),
        ("post", "/v1/finance/remittances"),
    ):
        r = getattr(fin.client, method)(
            path,
            headers={"Authorization": f"Bearer {fin.dept_key}"},
            **({"json": {"business_date": "2026-11-27"}} if method == "post" else {}),
        )
        body = assert_problem(r, 403, "forbidden")
        assert "department" in body["detail"]


def test_garbage_and_disabled_tokens_are_401(fin):
    r = fin.client.get("/v1/finance/reconciliation/runs", headers={"Authorization": "Bearer x"})
    assert_problem(r, 401)
    with transaction(fin.db.sessions) as s:
        users.disable_user(s, "bob")
    assert_problem(fin.get("/v1/finance/reconciliation/runs", "bob"), 401)


def test_every_role_reads_auditors_cannot_write(fin):
    run_id, items = make_run(fin.db)
    for who in ("alice", "carol", "root"):
        assert fin.get("/v1/finance/reconciliation/runs", who).status_code == 200
        assert fin.get(f"/v1/finance/reconciliation/runs/{run_id}", who).status_code == 200
        assert fin.get("/v1/finance/ledger/trial-balance", who).status_code == 200
    writes = [
        (
            f"/v1/finance/reconciliation/items/{items[1]}/propose",
            {"json": {"reason": "lost notify"}},
        ),
        ("/v1/finance/remittances", {"json": {"business_date": "2026-11-27"}}),
        ("/v1/finance/settlement-files", {"files": {"file": ("a.csv", b"x")}}),
    ]
    for path, kw in writes:
        assert_problem(fin.post(path, "carol", **kw), 403, "forbidden")
    assert fin.post(writes[0][0], "root", **writes[0][1]).status_code == 200


def test_an_api_token_is_stored_hashed_and_shown_once(fin):
    token = fin.tokens["alice"]
    assert re.fullmatch(r"fsu_[0-9a-f]{8}_[A-Za-z0-9_-]{43}", token)
    with transaction(fin.db.sessions) as s:
        from reconciliation.models import UserToken

        row = s.scalars(select(UserToken).where(UserToken.prefix == token.split("_")[1])).one()
        assert token.split("_", 2)[2] not in row.secret_hash and row.kind == "api"


# ------------------------------------------------------------------------------ web login


def csrf_of(html: str) -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', html).group(1)


def login(fin, username="alice", password=PASSWORD):
    form = fin.client.get("/finance/login")
    assert form.status_code == 200 and "fs_csrf" in form.headers["set-cookie"]
    return fin.client.post(
        "/finance/login",
        data={"username": username, "password": password, "csrf_token": csrf_of(form.text)},
        follow_redirects=False,
    )


def test_login_sets_a_strict_httponly_session_and_logout_revokes_it(fin):
    make_run(fin.db)
    assert (
        fin.client.get("/finance", follow_redirects=False).headers["location"] == "/finance/login"
    )
    r = login(fin)
    assert r.status_code == 303 and r.headers["location"] == "/finance"
    cookie = next(c for c in r.headers.get_list("set-cookie") if c.startswith("fs_session="))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert "Max-Age=28800" in cookie and "Secure" not in cookie  # http in tests
    session_token = fin.client.cookies.get("fs_session")
    assert session_token.startswith("fss_")

    page = fin.client.get("/finance")
    assert page.status_code == 200 and "<svg" in page.text and "alipay_20261127.csv" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    assert fin.client.get("/v1/finance/reconciliation/runs").status_code == 200  # by cookie

    # A state change by cookie needs the CSRF token too.
    r = fin.client.post("/v1/finance/remittances", json={"business_date": "2026-11-27"})
    assert_problem(r, 403, "forbidden")
    r = fin.client.post(
        "/v1/finance/remittances",
        json={"business_date": "2026-11-27"},
        headers={"X-CSRF-Token": fin.client.cookies.get("fs_csrf")},
    )
    assert r.status_code == 200 and r.json()["remittances"] == []

    r = fin.client.post(
        "/finance/logout", data={"csrf_token": csrf_of(page.text)}, follow_redirects=False
    )
    assert r.status_code == 303 and r.headers["location"] == "/finance/login"
    fin.client.cookies.set("fs_session", session_token)  # replaying the old cookie
    assert_problem(fin.client.get("/v1/finance/reconciliation/runs"), 401)


def test_login_refuses_a_missing_csrf_token_and_wrong_passwords(fin):
    r = fin.client.post("/finance/login", data={"username": "alice", "password": PASSWORD})
    assert r.status_code == 403 and "fs_session" not in r.headers.get("set-cookie", "")
    r = login(fin, password="wrong password!")
    assert r.status_code == 401 and "fs_session=" not in r.headers.get("set-cookie", "")
    assert login(fin, username="nobody").status_code == 401


def test_failed_logins_are_rate_limited(fin):
    for _ in range(5):
        assert login(fin, "bob", "wrong password!").status_code == 401
    r = login(fin, "bob", PASSWORD)  # even the right password waits now
    assert r.status_code == 429
    assert login(fin, "alice", PASSWORD).status_code == 429  # same address


# ------------------------------------------------------------------------------ runs


def test_runs_are_listed_with_filters_and_pages(fin):
    first, _ = make_run(fin.db, sha="a" * 64)
    second, _ = make_run(fin.db, source="wechatpay", sha="b" * 64)
    third, _ = make_run(fin.db, day=date(2026, 11, 26), sha="c" * 64)
    page = fin.get("/v1/finance/reconciliation/runs", params={"limit": 2}).json()
    assert [r["id"] for r in page["runs"]] == [third, second]
    rest = fin.get(
        "/v1/finance/reconciliation/runs", params={"limit": 2, "cursor": page["next_cursor"]}
    ).json()
    assert [r["id"] for r in rest["runs"]] == [first] and rest["next_cursor"] is None
    only = fin.get(
        "/v1/finance/reconciliation/runs", params={"source": "alipay", "date": "2026-11-27"}
    ).json()["runs"]
    assert [r["id"] for r in only] == [first] and only[0]["open_exceptions"] == 3
    assert fin.get("/v1/finance/reconciliation/runs", params={"state": "failed"}).json() == {
        "runs": [],
        "next_cursor": None,
    }
    assert_problem(fin.get("/v1/finance/reconciliation/runs", params={"state": "nope"}), 422)


def test_a_run_summary_has_totals_per_outcome_and_the_exceptions(fin):
    run_id, items = make_run(fin.db)
    body = fin.get(f"/v1/finance/reconciliation/runs/{run_id}").json()
    assert body["file_sha256"] == "a" * 64 and body["started_by"] == "alice"
    assert {o["outcome"]: (o["count"], o["amount"]) for o in body["outcomes"]} == {
        "matched": (1, "-12.30"),
        "missing_internal": (1, "-24.60"),
        "amount_mismatch": (1, "-36.90"),
        "fee_mismatch": (1, "-49.20"),
    }
    assert [e["id"] for e in body["exceptions"]] == items[1:]
    assert body["exceptions"][1]["expected_amount"] == "10.00"
    assert_problem(fin.get("/v1/finance/reconciliation/runs/999999"), 404)


# ------------------------------------------------------------------------------ four eyes


def propose(fin, item_id, who="alice", **body):
    body.setdefault("reason", "notify lost; captured after querying the gateway")
    return fin.post(f"/v1/finance/reconciliation/items/{item_id}/propose", who, json=body)


LEGS = [
    {"account": "gateway_clearing:alipay", "direction": "debit", "amount": "12.30"},
    {"account": "suspense", "direction": "credit", "amount": "12.30"},
]


def test_an_adjusting_entry_needs_a_second_officer(fin):
    _, items = make_run(fin.db)
    item = items[1]
    r = propose(fin, item, postings=LEGS)
    assert r.status_code == 200 and r.json()["exception_state"] == "proposed"
    assert r.json()["proposal"]["postings"][0]["amount"] == "12.30"
    assert_problem(
        fin.post(f"/v1/finance/reconciliation/items/{item}/approve", "alice"), 403, "four-eyes"
    )
    r = fin.post(
        f"/v1/finance/reconciliation/items/{item}/approve",
        "bob",
        json={"note": "checked against the gateway query"},
    )
    assert r.status_code == 200, r.text
    done = r.json()
    assert done["exception_state"] == "resolved" and done["resolved_by"] == "bob"
    assert done["resolution_note"] == "checked against the gateway query"
    with transaction(fin.db.sessions) as s:
        entry = s.scalars(
            select(JournalEntry).where(JournalEntry.idempotency_key == f"adjust:{item}")
        ).one()
        assert entry.id == done["journal_entry_id"] and entry.business_date == DAY
        assert sorted((p.account.code, p.direction, p.amount) for p in entry.postings) == [
            ("gateway_clearing:alipay", "D", 1230),
            ("suspense", "C", 1230),
        ]
    assert_problem(fin.post(f"/v1/finance/reconciliation/items/{item}/approve", "root"), 409)
    assert_problem(propose(fin, item), 409)


def test_an_explanation_alone_is_also_four_eyes_and_posts_nothing(fin):
    _, items = make_run(fin.db)
    assert propose(fin, items[3], "bob", reason="fee rounding at the gateway").status_code == 200
    assert_problem(fin.post(f"/v1/finance/reconciliation/items/{items[3]}/approve", "bob"), 403)
    r = fin.post(f"/v1/finance/reconciliation/items/{items[3]}/approve", "alice")
    assert r.json()["exception_state"] == "resolved" and r.json()["journal_entry_id"] is None
    assert r.json()["resolution_note"] == "fee rounding at the gateway"


def test_unbalanced_or_bad_proposals_are_refused_and_reject_reopens(fin):
    _, items = make_run(fin.db)
    bad = [{**LEGS[0]}, {**LEGS[1], "amount": "12.31"}]
    assert_problem(propose(fin, items[1], postings=bad), 422, "unbalanced-entry")
    assert_problem(propose(fin, items[1], postings=[{**LEGS[0], "account": "cash"}, LEGS[1]]), 422)
    assert_problem(
        propose(fin, items[1], postings=[{**LEGS[0], "amount": "1.234"}, LEGS[1]]),
        422,
        "invalid-amount",
    )
    assert_problem(fin.post(f"/v1/finance/reconciliation/items/{items[1]}/approve", "bob"), 409)
    assert propose(fin, items[1], postings=LEGS).status_code == 200
    r = fin.post(
        f"/v1/finance/reconciliation/items/{items[1]}/reject", "bob", json={"note": "wrong account"}
    )
    assert r.json()["exception_state"] == "open" and r.json()["proposal"] is None
    assert "wrong account" in r.json()["resolution_note"]
    matched = items[0]
    assert_problem(propose(fin, matched), 409)


def test_the_run_page_offers_the_four_eyes_forms(fin):
    run_id, items = make_run(fin.db)
    login(fin, "alice")
    page = fin.client.get(f"/finance/runs/{run_id}")
    assert page.status_code == 200 and f"/items/{items[1]}/propose" in page.text
    token = csrf_of(page.text)
    r = fin.client.post(
        f"/finance/runs/{run_id}/items/{items[1]}/propose",
        data={
            "csrf_token": token,
            "reason": "lost notify",
            "direction": ["debit", "credit"],
            "account": ["gateway_clearing:alipay", "suspense"],
            "amount": ["1.00", "1.00"],
        },
        follow_redirects=False,
    )
    assert r.status_code == 303
    page = fin.client.get(r.headers["location"])
    assert "propose: ok" in page.text and "待他人批准" in page.text  # no approve for the proposer
    r = fin.client.post(
        f"/finance/runs/{run_id}/items/{items[1]}/approve",
        data={"csrf_token": "forged"},
        follow_redirects=False,
    )
    assert r.status_code == 403


# ------------------------------------------------------------------------------ remittances


def add_odd_item(session) -> None:
    """An item split three ways (3333/3333/3334) at an odd price: rounding must conserve fen."""
    catalogue.add_item(
        session,
        catalogue.spec_from_dict(
            {
                "code": "TF-ODD",
                "name_zh": "测试罚款",
                "name_en": "Odd fine",
                "kind": "traffic_fine",
                "amount": "99.97",
                "late_fee_rule": {
                    "kind": "daily_percent",
                    "basis_points_per_day": 300,
                    "cap_bp_of_principal": 10000,
                },
                "shares": {"000000-central": 3333, "510000-province": 3333, "510100-city": 3334},
                "revenue_code": "103050199",
                "budget_level": "central",
                "department_kinds": ["police"],
            }
        ),
    )


def collect(db, tmp_path):
    """Captures on DAY: two by alipay (one a duplicate of the other's notice), one by
    unionpay; returns the gateways."""
    gateways = {
        "alipay": FakeGateway("alipay"),
        "wechatpay": FakeGateway("wechatpay"),
        "unionpay": FakeGateway("unionpay", Channel.BANK),
    }
    ctx = PaymentContext(gateways, Router(DEFAULT_RULES), "https://pay.example.gov.cn", ESEAL)
    with transaction(db.sessions) as s:
        add_odd_item(s)
        who, _ = department(s, "成都交警二大队")
        codes = [
            create_notice(
                s, who, request(fine(f"R-{n}", **body)), vault(), today=date(2026, 11, 20)
            ).payment_code
            for n, body in enumerate(
                [
                    {"items": [{"item_code": "TF-RED-LIGHT"}, {"item_code": "TF-ODD"}]},
                    {"items": [{"item_code": "TF-ODD"}]},
                    {"items": [{"item_code": "TF-ODD"}, {"item_code": "TF-PARKING"}]},
                ]
            )
        ]

    def start(code, channel):
        return run_in_transaction(
            db.sessions, lambda s: start_attempt(s, ctx, code, channel, PAID_AT)
        )

    def pay(started):
        result = gateways[started.gateway].pay(started.order_id, PAID_AT)
        return run_in_transaction(
            db.sessions, lambda s: apply_result(s, result, source="notify", eseal=ESEAL)
        ).outcome

    tab1, tab2 = start(codes[0], "wallet"), start(codes[0], "wallet")
    bank = start(codes[1], "bank")
    third = start(codes[2], "wallet")
    assert [pay(tab1), pay(tab2), pay(bank), pay(third)] == [
        "captured",
        "duplicate",
        "captured",
        "captured",
    ]
    assert {tab1.gateway, third.gateway, bank.gateway} == {"alipay", "unionpay"}
    return gateways


def settle(db, gateway: str, account="fiscal_bank:icbc-5101") -> int:
    """Post the gateway's settlement for DAY: what it owes us lands in the fiscal account."""
    with transaction(db.sessions) as s:
        owed = LedgerService(s).balance(f"gateway_clearing:{gateway}")
        LedgerService(s).post(
            Entry(
                f"settle:{gateway}:{DAY:%Y%m%d}",
                DAY,
                "settlement",
                (
                    Posting.debit(account, owed - 10),
                    Posting.debit(f"gateway_fees:{gateway}", 10),
                    Posting.credit(f"gateway_clearing:{gateway}", owed),
                ),
            )
        )
        return owed


def treasury_credits(db, gateway: str, state="succeeded") -> dict[str, int]:
    out: dict[str, int] = {}
    with transaction(db.sessions) as s:
        for attempt in s.scalars(
            select(PaymentAttempt).where(
                PaymentAttempt.gateway == gateway, PaymentAttempt.state == state
            )
        ):
            entry = s.get(JournalEntry, attempt.journal_entry_id)
            for p in entry.postings:
                if p.direction == "C" and p.account.code.startswith("treasury_payable:"):
                    t = p.account.code.split(":", 1)[1]
                    out[t] = out.get(t, 0) + p.amount
    return out


def test_remittance_covers_settled_captures_is_idempotent_and_adds_up(fin, tmp_path):
    collect(fin.db, tmp_path)
    r = fin.post("/v1/finance/remittances", json={"business_date": "2026-11-27"})
    assert r.status_code == 200 and r.json()["remittances"] == []  # nothing settled yet
    assert r.json()["unsettled_gateways"] == ["alipay", "unionpay"]
    settle(fin.db, "alipay")
    r = fin.post("/v1/finance/remittances", json={"business_date": "2026-11-27"})
    assert r.status_code == 201, r.text
    assert r.json()["unsettled_gateways"] == ["unionpay"]
    rows = r.json()["remittances"]
    expected = treasury_credits(fin.db, "alipay")
    assert (
        {x["treasury"] for x in rows}
        == set(expected)
        == {"000000-central", "510000-province", "510100-city"}
    )
    for row in rows:
        fen = expected[row["treasury"]]
        assert row["amount"] == f"{fen // 100}.{fen % 100:02d}" and row["created"]
        assert sum(int(line["amount"].replace(".", "")) for line in row["voucher"]) == fen
    city = next(x for x in rows if x["treasury"] == "510100-city")
    assert {(v["revenue_code"], v["budget_level"]) for v in city["voucher"]} == {
        ("103050101", "city"),
        ("103050199", "central"),
    }

    with transaction(fin.db.sessions) as s:
        for row in rows:
            entry = s.get(JournalEntry, row["journal_entry_id"])
            assert entry.idempotency_key == f"remit:{row['treasury']}:2026-11-27"
            legs = sorted((p.account.code, p.direction, p.amount) for p in entry.postings)
            fen = expected[row["treasury"]]
            assert legs == [
                ("fiscal_bank:icbc-5101", "C", fen),
                (f"treasury_payable:{row['treasury']}", "D", fen),
            ]
        assert LedgerService(s).trial_balance().balanced
        payable = {b.code: b.balance for b in LedgerService(s).balances()}
    unionpay = treasury_credits(fin.db, "unionpay")  # not settled: still owed to the treasuries
    for t in expected:
        assert payable[f"treasury_payable:{t}"] == unionpay.get(t, 0)

    again = fin.post("/v1/finance/remittances", json={"business_date": "2026-11-27"})
    assert again.status_code == 200
    assert [(x["id"], x["amount"], x["created"]) for x in again.json()["remittances"]] == [
        (x["id"], x["amount"], False) for x in rows
    ]
    with transaction(fin.db.sessions) as s:
        assert len(s.scalars(select(Remittance)).all()) == 3

    listed = fin.get("/v1/finance/remittances", "carol", params={"business_date": "2026-11-27"})
    assert len(listed.json()["remittances"]) == 3


def test_a_late_settlement_is_remitted_by_a_top_up_batch(fin, tmp_path):
    collect(fin.db, tmp_path)
    settle(fin.db, "alipay")
    first = fin.post("/v1/finance/remittances", json={"business_date": "2026-11-27"})
    assert first.status_code == 201 and first.json()["unsettled_gateways"] == ["unionpay"]
    assert {x["sequence"] for x in first.json()["remittances"]} == {1}

    settle(fin.db, "unionpay")  # the bank's credit for the 27th arrives after the remittance
    late = fin.post("/v1/finance/remittances", json={"business_date": "2026-11-27"})
    assert late.status_code == 201, late.text
    assert late.json()["unsettled_gateways"] == []
    top_ups = [x for x in late.json()["remittances"] if x["created"]]
    unionpay = treasury_credits(fin.db, "unionpay")
    assert {x["treasury"]: x["sequence"] for x in top_ups} == dict.fromkeys(unionpay, 2)
    for row in top_ups:
        fen = unionpay[row["treasury"]]
        assert row["amount"] == f"{fen // 100}.{fen % 100:02d}"
        assert sum(int(line["amount"].replace(".", "")) for line in row["voucher"]) == fen
    with transaction(fin.db.sessions) as s:
        for row in top_ups:
            entry = s.get(JournalEntry, row["journal_entry_id"])
            assert entry.idempotency_key == f"remit:{row['treasury']}:2026-11-27:2"
        payable = {
            b.code: b.balance
            for b in LedgerService(s).balances()
            if b.code.startswith("treasury_payable:")
        }
        assert set(payable.values()) == {0}  # every settled fen is remitted, none twice
        assert LedgerService(s).trial_balance().balanced

    again = fin.post("/v1/finance/remittances", json={"business_date": "2026-11-27"})
    assert again.status_code == 200
    assert not any(x["created"] for x in again.json()["remittances"])
    assert len(again.json()["remittances"]) == len(first.json()["remittances"]) + len(top_ups)


def test_remittance_states_and_voucher_file(fin, tmp_path):
    collect(fin.db, tmp_path)
    settle(fin.db, "alipay")
    rows = fin.post("/v1/finance/remittances", json={"business_date": "2026-11-27"}).json()
    rid = rows["remittances"][0]["id"]
    base = f"/v1/finance/remittances/{rid}"
    assert_problem(fin.post(f"{base}/confirm"), 409)
    assert_problem(fin.post(f"{base}/mark-sent", "carol"), 403)
    assert fin.post(f"{base}/mark-sent").json()["state"] == "sent"
    assert fin.post(f"{base}/mark-sent").json()["state"] == "sent"  # a retry changes nothing
    assert fin.post(f"{base}/confirm", "bob").json()["state"] == "confirmed"
    assert_problem(fin.post(f"{base}/mark-sent"), 409)
    assert_problem(fin.post("/v1/finance/remittances/999999/confirm"), 404)

    r = fin.get(f"{base}/voucher.csv", "carol")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    lines = list(csv.reader(io.StringIO(r.text)))
    assert lines[0] == [
        "treasury",
        "business_date",
        "revenue_code",
        "budget_level",
        "amount",
        "payments",
    ]
    assert lines[-1][2] == "TOTAL"
    body = lines[1:-1]
    assert sum(int(x[4].replace(".", "")) for x in body) == int(lines[-1][4].replace(".", ""))
    assert lines[-1][4] == rows["remittances"][0]["amount"]


def test_remittance_needs_a_fiscal_account_when_settlements_disagree(fin, tmp_path):
    collect(fin.db, tmp_path)
    settle(fin.db, "alipay", "fiscal_bank:icbc-5101")
    settle(fin.db, "unionpay", "fiscal_bank:ccb-5101")
    r = fin.post("/v1/finance/remittances", json={"business_date": "2026-11-27"})
    assert_problem(r, 422)
    r = fin.post(
        "/v1/finance/remittances",
        json={"business_date": "2026-11-27", "fiscal_account": "fiscal_bank:icbc-5101"},
    )
    assert r.status_code == 201
    total = sum(int(x["amount"].replace(".", "")) for x in r.json()["remittances"])
    both = treasury_credits(fin.db, "alipay")
    for t, fen in treasury_credits(fin.db, "unionpay").items():
        both[t] = both.get(t, 0) + fen
    assert total == sum(both.values())


# ------------------------------------------------------------------------------ reports


def test_reports_download_in_three_formats(fin, tmp_path):
    collect(fin.db, tmp_path)
    run_id, _ = make_run(fin.db)
    types = {
        "csv": "text/csv",
        "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "pdf": "application/pdf",
    }
    for path in (
        f"/v1/finance/reports/reconciliation/{run_id}",
        "/v1/finance/reports/collections/2026-11-27",
        "/v1/finance/reports/trial-balance",
    ):
        for fmt, media in types.items():
            r = fin.get(f"{path}.{fmt}", "carol")
            assert r.status_code == 200, (path, fmt, r.text)
            assert r.headers["content-type"].startswith(media)
            assert f'.{fmt}"' in r.headers["content-disposition"]
    report = fin.get(f"/v1/finance/reports/reconciliation/{run_id}.csv").content
    text = report.decode("utf-8-sig")
    assert "'=HYPERLINK" in text and "\n=HYPERLINK" not in text and ",=HYPERLINK" not in text
    assert "-36.90" in text  # a negative amount stays a number
    coll = fin.get("/v1/finance/reports/collections/2026-11-27.xlsx").content
    wb = load_workbook(io.BytesIO(coll))
    ws = wb["按国库 By treasury"]
    total = ws.cell(row=ws.max_row, column=3)
    assert total.number_format == "#,##0.00"
    captured = sum(
        treasury_credits(fin.db, g).get(t, 0)
        for g in ("alipay", "unionpay")
        for t in ("000000-central", "510000-province", "510100-city")
    )
    assert Decimal(str(total.value)) * 100 == captured + _duplicate_amount(fin.db)
    assert_problem(fin.get("/v1/finance/reports/trial-balance.doc"), 422)
    assert_problem(fin.get("/v1/finance/reports/collections/2026-13-01.csv"), 422)
    assert_problem(fin.get("/v1/finance/reports/reconciliation/999999.csv"), 404)


def _duplicate_amount(db) -> int:
    with transaction(db.sessions) as s:
        return sum(
            a.amount
            for a in s.scalars(select(PaymentAttempt).where(PaymentAttempt.state == "duplicate"))
        )


def test_ledger_endpoints(fin, tmp_path):
    collect(fin.db, tmp_path)
    tb = fin.get("/v1/finance/ledger/trial-balance", params={"as_of": "2026-11-27"}).json()
    assert tb["balanced"] and tb["totals"]["CNY"]["debit"] == tb["totals"]["CNY"]["credit"]
    before = fin.get("/v1/finance/ledger/trial-balance", params={"as_of": "2026-11-26"}).json()
    assert {(r["debit"], r["credit"]) for r in before["rows"]} <= {("0.00", "0.00")}
    bal = fin.get("/v1/finance/ledger/balances").json()["accounts"]
    assert any(a["account"] == "refunds_payable" for a in bal)


# ------------------------------------------------------------------------------ uploads


def test_an_upload_is_stored_reconciled_once_and_named_by_its_run(fin, tmp_path, monkeypatch):
    """The endpoint's contract with the job (a stand-in here: the job's own behaviour is
    tested with the reconciliation service): bytes stored by SHA-256, the job enqueued with
    ids only, the same bytes again name the existing run without a second job."""
    from reconciliation import filestore, tasks

    calls = []

    def job(sha, filename, started_by, source, business_date):
        calls.append((sha, filename, started_by, source, business_date))
        assert filestore.open_file(Settings(env="test", var_dir=tmp_path), sha) == b"bill"
        make_run(fin.db, source=source, sha=sha, day=date.fromisoformat(business_date))

    monkeypatch.setattr(tasks, "reconcile_file_job", job, raising=False)
    monkeypatch.setattr("clearing.jobs.get_settings", lambda: Settings(env="test"))
    form = {"source": "alipay", "business_date": "2026-11-27"}
    r = fin.post("/v1/finance/settlement-files", files={"file": ("bill.csv", b"bill")}, data=form)
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["run_id"] and not body["existing"] and body["error"] is None
    assert calls == [(body["file_sha256"], "bill.csv", "alice", "alipay", "2026-11-27")]
    again = fin.post(
        "/v1/finance/settlement-files", files={"file": ("copy.csv", b"bill")}, data=form
    )
    assert again.status_code == 202
    assert again.json()["run_id"] == body["run_id"] and again.json()["existing"]
    assert len(calls) == 1
    empty = fin.post("/v1/finance/settlement-files", files={"file": ("e.csv", b"")})
    assert_problem(empty, 422)


@pytest.fixture
def job_runtime(fin, tmp_path, monkeypatch):
    """Point the process runtime (which jobs use) at the test database, jobs in-process, and
    the gateways at the fakes ``collect`` paid through."""
    from api import runtime as api_runtime
    from clearing import config
    from clearing.payments import wiring

    monkeypatch.setenv("FEISHUI_DATABASE_URL", fin.db.url)
    monkeypatch.setenv("FEISHUI_VAR_DIR", str(tmp_path))
    monkeypatch.setenv("FEISHUI_ENV", "test")
    monkeypatch.delenv("FEISHUI_REDIS_URL", raising=False)
    config.get_settings.cache_clear()
    api_runtime.get_runtime.cache_clear()
    holder = {}
    monkeypatch.setattr(wiring, "get_payment_context", lambda: holder["ctx"])
    yield holder
    if api_runtime.get_runtime.cache_info().currsize:
        api_runtime.get_runtime().engine.dispose()
    config.get_settings.cache_clear()
    api_runtime.get_runtime.cache_clear()


def test_upload_reconcile_settle_and_remit_end_to_end(fin, tmp_path, job_runtime):
    """A real day: payments, the alipay bill and the bank statement uploaded through the API
    (reconciled by the job in-process), then the remittance of what alipay settled."""
    from gateways.simulators.common import fee_fen
    from reconciliation.bank_statement import BankEntry, build_camt053
    from tests.integration.test_reconciliation import alipay_bill

    gateways = collect(fin.db, tmp_path)
    job_runtime["ctx"] = PaymentContext(
        gateways, Router(DEFAULT_RULES), "https://pay.example.gov.cn", ESEAL
    )
    with transaction(fin.db.sessions) as s:
        paid = [
            (a.order_id, a.amount, fee_fen(a.amount, Decimal("0.006")))
            for a in s.scalars(
                select(PaymentAttempt)
                .where(PaymentAttempt.gateway == "alipay", PaymentAttempt.paid_at.is_not(None))
                .order_by(PaymentAttempt.order_id)
            )
        ]
    name = "alipay_2088102177846880_20261127.csv"
    r = fin.post("/v1/finance/settlement-files", files={"file": (name, alipay_bill(paid))})
    assert r.status_code == 202, r.text
    bill = r.json()
    assert bill["run_id"] and bill["error"] is None
    run = fin.get(f"/v1/finance/reconciliation/runs/{bill['run_id']}", "carol").json()
    assert run["state"] == "succeeded" and run["source"] == "alipay"
    assert run["started_by"] == "alice" and run["line_count"] == len(paid)
    again = fin.post("/v1/finance/settlement-files", files={"file": (name, alipay_bill(paid))})
    assert again.json()["existing"] and again.json()["run_id"] == bill["run_id"]

    net = sum(amount - fee for _, amount, fee in paid)
    camt = build_camt053([BankEntry(net, "SETTLE ALIPAY 20261127", "B1")], "icbc-510100", DAY)
    r = fin.post("/v1/finance/settlement-files", files={"file": ("camt053_20261127.xml", camt)})
    assert r.status_code == 202 and r.json()["run_id"] and r.json()["error"] is None

    r = fin.post("/v1/finance/remittances", json={"business_date": "2026-11-27"})
    assert r.status_code == 201, r.text
    assert r.json()["unsettled_gateways"] == ["unionpay"]
    expected = treasury_credits(fin.db, "alipay")
    got = {x["treasury"]: int(x["amount"].replace(".", "")) for x in r.json()["remittances"]}
    assert got == expected
    with transaction(fin.db.sessions) as s:
        b = {x.code: x.balance for x in LedgerService(s).balances()}
        assert LedgerService(s).trial_balance().balanced
    assert b["fiscal_bank:icbc-510100"] == net - sum(expected.values())
    for report in (f"reconciliation/{bill['run_id']}.pdf", "collections/2026-11-27.pdf"):
        assert fin.get(f"/v1/finance/reports/{report}").status_code == 200
