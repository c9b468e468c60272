"""The whole citizen story over HTTP: a department issues a notice, the citizen opens it on the
portal, pays through each gateway's simulator (real signed protocol), comes back, gets a receipt.

Also: the lost notify recovered on the return page, decline, abandon, and notifies that are
forged or replayed changing nothing.
"""

from __future__ import annotations

import re
from datetime import timedelta
from html.parser import HTMLParser

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from api.app import create_app
from clearing.config import Settings
from clearing.db import transaction
from clearing.ledger.models import JournalEntry
from clearing.ledger.service import LedgerService
from clearing.payments.models import GatewayNotification, PaymentAttempt
from clearing.payments.nonces import DbNonceStore
from clearing.payments.service import PaymentContext
from clearing.routing import GatewayRule, Router
from clearing.runtime import build_runtime
from gateways.options import GATEWAY_NAMES
from gateways.registry import build_gateways
from gateways.simulators import create_simulator
from notices import catalogue
from notices.departments import SCOPES, add_key, create_department
from notices.receipts import ESeal
from notices.service import today_in_shanghai
from tests.e2e.gateway_harness import install_keys

BASE = "http://testserver"
CHANNEL = {"alipay": "wallet", "wechatpay": "wallet", "unionpay": "bank"}


class Forms(HTMLParser):
    """Collects the forms of a page: action, method and the named inputs' values."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "form":
            self.forms.append(
                {"action": a.get("action"), "method": (a.get("method") or "get"), "fields": {}}
            )
        elif tag in ("input", "button") and self.forms and a.get("name"):
            self.forms[-1]["fields"].setdefault(a["name"], a.get("value") or "")


def forms(html: str) -> list[dict]:
    parser = Forms()
    parser.feed(html)
    return parser.forms


@pytest.fixture
def platform(db, tmp_path, gateway_pems):
    def build(gateway: str):
        settings = Settings(database_url=db.url, var_dir=tmp_path, env="test", public_base_url=BASE)
        install_keys(tmp_path, gateway_pems)
        runtime = build_runtime(settings)
        app = create_app(runtime, simulators=False)
        client = TestClient(app, base_url=BASE)
        gateways = build_gateways(settings, http=client, nonce_store=DbNonceStore(db.sessions))
        app.state.payments = PaymentContext(
            gateways,
            Router([GatewayRule(gateway, CHANNEL[gateway])]),
            BASE,
            ESeal.from_settings(settings),
        )
        for name in GATEWAY_NAMES:
            app.mount(
                f"/sim/{name}",
                create_simulator(
                    name,
                    settings,
                    notify_client=client,
                    deliver_notifies_inline=True,
                    retry_delays=(0, 0, 0),
                ),
            )
        with transaction(db.sessions) as s:
            catalogue.seed(s, catalogue.load_seed())
            key = create_department(
                s, "成都市公安局交通管理局", "510100", "police", scopes=SCOPES
            ).full
            client.keys = {
                "police": key,
                "other": create_department(s, "四川大学", "510100", "school", scopes=SCOPES).full,
                "no_refunds": add_key(s, "成都市公安局交通管理局").full,
            }
        notice = client.post(
            "/v1/notices",
            headers={"Authorization": f"Bearer {key}"},
            json={
                "kind": "traffic_fine",
                "payer": {"name": "张小三", "id_number": "11010519491231002X"},
                "items": [{"item_code": "TF-RED-LIGHT"}],
                "decision_date": (today_in_shanghai() - timedelta(days=3)).isoformat(),
                "reference": "JT-2026-001",
                "description": "闯红灯",
            },
        )
        assert notice.status_code == 201, notice.text
        return client, notice.json()

    return build


def open_gateway(client: TestClient, code: str, channel: str) -> str:
    """The citizen's clicks up to the gateway's checkout page; returns the order id."""
    page = client.get(f"/pay/{code}")
    assert page.status_code == 200 and "张*三" in page.text and "张小三" not in page.text
    assert "11010519491231002X" not in page.text
    form = next(f for f in forms(page.text) if f["fields"].get("channel") == channel)
    go = client.post(form["action"], data=form["fields"], follow_redirects=False)
    if go.status_code == 303:
        checkout = client.get(go.headers["location"])
    else:
        gateway_form = forms(go.text)[0]
        if gateway_form["method"].lower() == "post":
            checkout = client.post(gateway_form["action"], data=gateway_form["fields"])
        else:
            checkout = client.get(gateway_form["action"], params=gateway_form["fields"])
    assert checkout.status_code == 200, checkout.text
    runtime = client.app.state.runtime
    with transaction(runtime.sessions) as s:
        return s.scalars(select(PaymentAttempt.order_id).order_by(PaymentAttempt.id.desc())).first()


def act(client: TestClient, gateway: str, order_id: str, action: str):
    response = client.post(
        f"/sim/{gateway}/checkout/{order_id}", data={"action": action}, follow_redirects=False
    )
    assert response.status_code in (200, 303), response.text
    return response


def ledger(db):
    with transaction(db.sessions) as s:
        entries = s.scalar(select(func.count()).select_from(JournalEntry))
        return entries, {b.code: b.balance for b in LedgerService(s).balances()}


@pytest.mark.parametrize("gateway", ["alipay", "wechatpay", "unionpay"])
def test_pay_come_back_get_a_receipt(db, platform, gateway):
    client, notice = platform(gateway)
    order_id = open_gateway(client, notice["payment_code"], CHANNEL[gateway])
    act(client, gateway, order_id, "pay")  # the notify is delivered (inline) before the redirect
    back = client.get(f"/pay/return/{order_id}")
    assert back.status_code == 200 and 'id="receipt"' in back.text
    receipt_url = re.search(r'id="receipt" href="([^"]+)"', back.text).group(1)
    receipt = client.get(receipt_url.replace(BASE, ""))
    assert receipt.status_code == 200 and "张*三" in receipt.text
    number_check = receipt_url.replace(BASE, "").replace("/receipts/", "").split("?check=")
    signed = client.get(f"/receipts/{number_check[0]}.json?check={number_check[1]}").json()
    assert client.post("/v1/receipts/verify", json=signed).json()["valid"] is True
    entries, balances = ledger(db)
    assert entries == 1 and balances[f"gateway_clearing:{gateway}"] == 20000
    assert client.get(f"/v1/gateways/{gateway}/notify").status_code == 405
    paid = client.get(f"/pay/{notice['payment_code']}")
    assert "已缴清" in paid.text


@pytest.mark.parametrize("gateway", ["alipay", "wechatpay", "unionpay"])
def test_lost_notify_is_recovered_when_the_citizen_comes_back(db, platform, gateway):
    client, notice = platform(gateway)
    order_id = open_gateway(client, notice["payment_code"], CHANNEL[gateway])
    act(client, gateway, order_id, "pay_lose_notify")
    assert ledger(db)[0] == 0
    back = client.get(f"/pay/return/{order_id}")  # asks the gateway: paid
    assert 'id="receipt"' in back.text
    assert ledger(db)[0] == 1


@pytest.mark.parametrize("action", ["decline", "abandon"])
def test_decline_and_abandon_capture_nothing(db, platform, action):
    client, notice = platform("alipay")
    order_id = open_gateway(client, notice["payment_code"], "wallet")
    act(client, "alipay", order_id, action)
    back = client.get(f"/pay/return/{order_id}")
    assert 'id="receipt"' not in back.text
    with transaction(db.sessions) as s:
        attempt = s.scalars(select(PaymentAttempt)).one()
        assert attempt.state in ("failed", "cancelled")
    assert ledger(db)[0] == 0
    assert "张*三" in client.get(f"/pay/{notice['payment_code']}").text  # still payable


def test_forged_and_replayed_notifies_change_nothing(db, platform):
    client, notice = platform("wechatpay")
    order_id = open_gateway(client, notice["payment_code"], "wallet")
    sim = next(
        r.app.state.simulator
        for r in client.app.routes
        if getattr(r, "path", "") == "/sim/wechatpay"
    )
    act(client, "wechatpay", order_id, "pay_lose_notify")
    _url, headers, body = sim.build_notify(sim.book.get(order_id))
    forged = body.replace(b'"', b"'", 1)
    refused = client.post("/v1/gateways/wechatpay/notify", content=forged, headers=headers)
    assert refused.status_code >= 400
    assert ledger(db)[0] == 0
    genuine = client.post("/v1/gateways/wechatpay/notify", content=body, headers=headers)
    assert genuine.status_code < 300
    replay = client.post("/v1/gateways/wechatpay/notify", content=body, headers=headers)
    assert replay.status_code >= 400  # the nonce was seen: refused, and nothing moves
    assert ledger(db)[0] == 1
    with transaction(db.sessions) as s:
        outcomes = s.scalars(select(GatewayNotification.outcome)).all()
    assert outcomes.count("rejected") == 2 and outcomes.count("captured") == 1


def test_portal_pages(db, platform):
    client, notice = platform("alipay")
    assert client.get("/pay").status_code == 200
    code = notice["payment_code"]
    typo = code[:-1] + str((int(code[-1]) + 1) % 10)
    assert client.get(f"/pay/{typo}").status_code == 422
    assert (
        client.get("/pay/lookup", params={"code": code}, follow_redirects=False).headers["location"]
        == f"/pay/{code}"
    )
    english = client.get(f"/pay/{code}?lang=en")
    assert "Total due today" in english.text
    no_csrf = client.post(f"/pay/{code}/checkout", data={"channel": "wallet"})
    assert no_csrf.status_code == 403


def test_department_refunds_a_paid_notice(db, platform):
    client, notice = platform("alipay")
    order_id = open_gateway(client, notice["payment_code"], "wallet")
    act(client, "alipay", order_id, "pay")
    url = f"/v1/notices/{notice['id']}/refunds"

    def auth(who):
        return {"Authorization": f"Bearer {client.keys[who]}"}

    body = {"amount": "60.00", "reason": "复议减免", "refund_amount_available": "200.00"}
    assert client.post(url, json=body, headers=auth("no_refunds")).status_code == 403
    assert client.post(url, json=body, headers=auth("other")).status_code == 404
    first = client.post(url, json=body, headers=auth("police"))
    assert first.status_code == 201, first.text
    again = client.post(url, json=body, headers=auth("police"))  # a retry: the figure is stale
    assert again.status_code == 412
    listed = client.get(url, headers=auth("police")).json()
    assert listed["refund_amount_available"] == "140.00"
    assert [r["state"] for r in listed["refunds"]] == ["succeeded"]  # processed after commit
    too_much = {"amount": "140.01", "reason": "x"}
    assert client.post(url, json=too_much, headers=auth("police")).status_code == 422
    rest = {"amount": "140.00", "reason": "撤销处罚", "refund_amount_available": "140.00"}
    assert client.post(url, json=rest, headers=auth("police")).status_code == 201
    status = client.get(f"/v1/notices/{notice['id']}", headers=auth("police")).json()["status"]
    assert status == "refunded"
    entries, balances = ledger(db)
    assert entries == 3 and balances["gateway_clearing:alipay"] == 0
    assert balances["treasury_payable:510100-city"] == 0
