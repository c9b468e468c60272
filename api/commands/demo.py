"""``feishui demo``: one day of a provincial non-tax platform, end to end, on the configured
database (by default the embedded SQLite file under ./var, jobs in-process).

Departments issue notices through the API; citizens pay them through the portal and the three
gateway simulators over their real signed protocols (in-process HTTP); one notify is lost and
recovered by the query job, one payment is declined, one notice is partly refunded; then the
night: every gateway's bill and the fiscal account's statement are reconciled, the remittance to
the treasuries is prepared, the reports are written, and the ledger is sealed and verified.
"""

from __future__ import annotations

import argparse
import re
import warnings
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from clearing import migrate
from clearing.db import run_in_transaction, transaction
from clearing.ledger.service import LedgerService
from clearing.money import format_fen
from clearing.runtime import get_runtime

warnings.filterwarnings("ignore", message=".*starlette.testclient.*")

DEPARTMENTS = (
    ("成都市公安局交通管理局", "police"),
    ("四川大学", "school"),
    ("成都市出入境管理局", "agency"),
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="run one day of the platform end to end")
    p.set_defaults(func=run)


def run(_args: argparse.Namespace) -> int:
    runtime = get_runtime()
    migrate.upgrade(runtime.settings.effective_database_url())
    print(f"database: {runtime.engine.url.render_as_string(hide_password=True)}\n")
    story = Story(runtime)
    story.departments()
    notices = story.notices()
    story.payments(notices)
    story.night()
    story.ledger()
    return 0


class Story:
    def __init__(self, runtime) -> None:  # type: ignore[no-untyped-def]
        from fastapi.testclient import TestClient

        from api.app import create_app
        from clearing.payments.nonces import DbNonceStore
        from clearing.payments.service import PaymentContext
        from clearing.routing import Router
        from gateways.options import GATEWAY_NAMES
        from gateways.registry import build_gateways
        from gateways.simulators import create_simulator
        from notices.receipts import ESeal

        self.runtime = runtime
        base = runtime.settings.public_base_url
        self.app = create_app(runtime, simulators=False)
        self.http = TestClient(self.app, base_url=base)  # in-process HTTP, real protocols
        gateways = build_gateways(
            runtime.settings, http=self.http, nonce_store=DbNonceStore(runtime.sessions)
        )
        self.ctx = PaymentContext(gateways, Router([]), base, ESeal.from_settings(runtime.settings))
        self.app.state.payments = self.ctx
        for name in GATEWAY_NAMES:
            self.app.mount(
                f"/sim/{name}",
                create_simulator(
                    name,
                    runtime.settings,
                    notify_client=self.http,
                    deliver_notifies_inline=True,
                    retry_delays=(0, 0, 0),
                ),
            )
        self.keys: dict[str, str] = {}
        self.receipts: list[str] = []
        self.today = datetime.now(UTC)

    # departments and notices -----------------------------------------------------------------
    def departments(self) -> None:
        from sqlalchemy import select

        from notices import catalogue
        from notices.departments import SCOPES, add_key, create_department
        from notices.models import Department

        print("== departments (each gets an API key, stored only as a hash)")
        with transaction(self.runtime.sessions) as s:
            added, kept = catalogue.seed(s, catalogue.load_seed())
            for name, kind in DEPARTMENTS:
                exists = s.scalar(select(Department.id).where(Department.name == name))
                key = (
                    add_key(s, name, SCOPES)
                    if exists
                    else create_department(s, name, "510100", kind, SCOPES)
                )
                self.keys[kind] = key.full
                print(f"  {name:<14} {kind:<7} key {key.prefix}…")
        print(f"  catalogue: {added} items added, {kept} already there\n")

    def _post(self, who: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post(
            path, json=body, headers={"Authorization": f"Bearer {self.keys[who]}"}
        )
        assert response.status_code in (200, 201), response.text
        return response.json()

    def notices(self) -> dict[str, dict[str, Any]]:
        from notices.service import today_in_shanghai

        today = today_in_shanghai()
        stamp = self.today.strftime("%H%M%S")
        print("== notices, created through the department API")
        made = {
            "fine": self._post(
                "police",
                "/v1/notices",
                {
                    "kind": "traffic_fine",
                    "payer": {"name": "张小三", "id_number": "11010519491231002X"},
                    "items": [{"item_code": "TF-RED-LIGHT"}],
                    "reference": f"JT-{stamp}",
                    "decision_date": (today - timedelta(days=20)).isoformat(),
                    "description": "机动车闯红灯 (川A·12345)",
                },
            ),
            "tuition": self._post(
                "school",
                "/v1/notices",
                {
                    "kind": "tuition",
                    "payer": {"name": "李四"},
                    "items": [
                        {"item_code": "EDU-TUITION", "amount": "4600.00"},
                        {"item_code": "EDU-ACCOMMODATION", "amount": "1200.00"},
                        {"item_code": "EDU-TEXTBOOKS", "amount": "356.50"},
                    ],
                    "reference": f"SCU-{stamp}",
                    "due_date": (today + timedelta(days=10)).isoformat(),
                    "description": "2026 秋季学期学费",
                },
            ),
            "passport": self._post(
                "agency",
                "/v1/notices",
                {
                    "kind": "service_fee",
                    "payer": {"name": "王五"},
                    "items": [{"item_code": "SF-PASSPORT"}],
                    "reference": f"CRJ-{stamp}",
                    "due_date": (today + timedelta(days=30)).isoformat(),
                    "description": "普通护照签发",
                },
            ),
        }
        for label, n in made.items():
            print(
                f"  {label:<9} code {n['payment_code']}  principal {n['amount']:>9}  "
                f"due today {n['amount_due']:>9}  (due {n['due_date']})"
            )
        print()
        return made

    # payments ----------------------------------------------------------------------------------
    def _checkout(self, code: str, gateway: str, action: str) -> str:
        """A citizen's clicks: portal -> gateway page -> an action there. Returns the order id."""
        from clearing.routing import GatewayRule, Router

        channel = "bank" if gateway == "unionpay" else "wallet"
        # The demo shows each gateway in turn: route this payment's channel to `gateway` only.
        self.ctx = replace(self.ctx, router=Router([GatewayRule(gateway, channel)]))
        self.app.state.payments = self.ctx
        page = self.http.get(f"/pay/{code}")
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        go = self.http.post(
            f"/pay/{code}/checkout",
            follow_redirects=False,
            data={"channel": channel, "csrf_token": token},
        )
        if go.status_code == 303:
            self.http.get(go.headers["location"])
        else:
            action_url = re.search(r'action="([^"]+)"', go.text).group(1)
            fields = dict(re.findall(r'name="([^"]+)" value="([^"]*)"', go.text))
            import html

            self.http.post(
                html.unescape(action_url), data={k: html.unescape(v) for k, v in fields.items()}
            )
        order_id = self._last_order()
        self.http.post(
            f"/sim/{gateway}/checkout/{order_id}", data={"action": action}, follow_redirects=False
        )
        return order_id

    def _last_order(self) -> str:
        from sqlalchemy import select

        from clearing.payments.models import PaymentAttempt

        with transaction(self.runtime.sessions) as s:
            return s.scalars(
                select(PaymentAttempt.order_id).order_by(PaymentAttempt.id.desc())
            ).first()

    def _came_back(self, order_id: str) -> str:
        page = self.http.get(f"/pay/return/{order_id}").text
        receipt = re.search(r'id="receipt" href="([^"]+)"', page)
        if receipt:
            self.receipts.append(receipt.group(1))
            return f"paid, receipt {receipt.group(1)}"
        return "not paid" if "支付未完成" in page else "pending"

    def payments(self, made: dict[str, dict[str, Any]]) -> None:
        from clearing.payments.tasks import query_open_attempts

        print("== payments through the portal and the gateway simulators")
        fine = self._checkout(made["fine"]["payment_code"], "alipay", "pay")
        print(f"  traffic fine  alipay     pay              -> {self._came_back(fine)}")
        lost = self._checkout(made["tuition"]["payment_code"], "wechatpay", "pay_lose_notify")
        print("  tuition       wechatpay  paid, notify lost -> nothing captured yet")
        report = query_open_attempts(self.runtime.sessions, self.ctx, min_age=timedelta(0))
        print(
            f"                query job asked {report.asked}: {report.outcomes} "
            f"-> {self._came_back(lost)}"
        )
        declined = self._checkout(made["passport"]["payment_code"], "unionpay", "decline")
        print(f"  passport      unionpay   declined         -> {self._came_back(declined)}")
        again = self._checkout(made["passport"]["payment_code"], "unionpay", "pay")
        print(f"                unionpay   pay again        -> {self._came_back(again)}")
        refund = self._post(
            "police",
            f"/v1/notices/{made['fine']['id']}/refunds",
            {"amount": "30.00", "reason": "复议后减免部分加处罚款"},
        )
        state = self.http.get(
            f"/v1/notices/{made['fine']['id']}/refunds",
            headers={"Authorization": f"Bearer {self.keys['police']}"},
        ).json()
        print(
            f"  refund        30.00 of the traffic fine: {refund['refund_id']} "
            f"{state['refunds'][-1]['state']}; still refundable "
            f"{state['refund_amount_available']}\n"
        )

    # the night ---------------------------------------------------------------------------------
    def night(self) -> None:
        from notices.service import today_in_shanghai
        from reconciliation import remittance
        from reconciliation.reports import render
        from reconciliation.reports.builders import (
            collections_report,
            run_report,
            trial_balance_report,
        )
        from reconciliation.tasks import run_night

        day = today_in_shanghai()
        print(f"== the night: reconcile {day} (every gateway's bill, then the bank statement)")
        runs = run_night(self.runtime, self.ctx, day, started_by="demo")
        with transaction(self.runtime.sessions) as s:
            from reconciliation.models import ReconciliationRun

            for source, run_id in runs.items():
                run = s.get(ReconciliationRun, run_id) if isinstance(run_id, int) else None
                counts = (
                    ", ".join(f"{k} {v}" for k, v in sorted((run.counts or {}).items()))
                    if run
                    else run_id
                )
                print(f"  {source:<10} run {run_id}: {counts}")
        prepared = run_in_transaction(
            self.runtime.sessions, lambda s: remittance.prepare(s, day, "demo")
        )
        print("== remittance to the treasuries")
        for p in prepared:
            r = getattr(p, "remittance", p)
            print(f"  {r.treasury:<22} {format_fen(r.amount):>10}  {r.state}")
        out = Path(self.runtime.settings.var_dir) / "reports" / day.isoformat()
        out.mkdir(parents=True, exist_ok=True)
        with transaction(self.runtime.sessions) as s:
            reports = {
                "collections": collections_report(s, day),
                "trial-balance": trial_balance_report(s, None),
            }
            for source, run_id in runs.items():
                if isinstance(run_id, int):
                    reports[f"reconciliation-{source}"] = run_report(s, run_id)
            for name, report in reports.items():
                for fmt in ("csv", "xlsx", "pdf"):
                    (out / f"{name}.{fmt}").write_bytes(render(report, fmt))
        print(f"== reports written to {out}/ ({', '.join(sorted(reports))}; csv, xlsx, pdf)\n")

    # the ledger --------------------------------------------------------------------------------
    def ledger(self) -> None:
        from clearing.ledger.export import export_beancount

        with transaction(self.runtime.sessions) as s:
            ledger = LedgerService(s)
            ledger.seal()
            tb = ledger.trial_balance()
            print("== trial balance")
            for row in tb.rows:
                net = row.debits - row.credits
                if net:
                    side = (
                        f"{format_fen(net):>12} {'':>12}"
                        if net > 0
                        else f"{'':>12} {format_fen(-net):>12}"
                    )
                    print(f"  {row.code:<36} {side}")
            for currency, (dr, cr) in tb.totals().items():
                print(f"  {'total ' + currency:<36} {format_fen(dr):>12} {format_fen(cr):>12}")
            report = ledger.verify()
        print(
            f"  balanced: {'yes' if tb.balanced else 'NO'}; verify: "
            f"{'OK' if report.ok else report.failures[0]} ({report.sealed} entries sealed)"
        )
        path = Path(self.runtime.settings.var_dir) / "ledger.beancount"
        with transaction(self.runtime.sessions) as s, path.open("w", encoding="utf-8") as f:
            export_beancount(s, f)
        print(f"  beancount export: {path} (check it with: bean-check {path})")
        print(
            "\n== receipts (open them with `feishui serve`, or verify offline with "
            "`feishui receipt verify`)"
        )
        for url in self.receipts:
            print(f"  {url}")
