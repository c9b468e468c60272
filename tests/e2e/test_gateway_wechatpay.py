"""Conformance of the WeChat Pay API v3-style adapter against its simulator: signed requests and
answers, encrypted notifies, timestamp window, nonce replay, and the backtick CSV bill."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from gateways import keys, signing
from gateways.protocol import RawRequest, RefundRequest, VerificationError
from gateways.wechatpay import wire
from gateways.wechatpay.adapter import WechatPayGateway
from tests.e2e.gateway_conformance import GatewayConformance
from tests.e2e.gateway_harness import Harness, make_harness


def _resign(raw: RawRequest, body: bytes, key: signing.PrivateKey) -> RawRequest:
    headers = {
        k.lower(): v
        for k, v in wire.signed_headers(
            key, raw.headers[wire.SERIAL], body, raw.headers[wire.TIMESTAMP]
        ).items()
    }
    return replace(raw, headers={**raw.headers, **headers}, body=body)


class TestWechatPay(GatewayConformance):
    name = "wechatpay"
    success_codes = (204, 200)

    def forge(self, h: Harness, raw: RawRequest) -> RawRequest:
        return _resign(raw, raw.body, keys.private_key(h.settings, "wechatpay", "merchant"))

    def tamper_amount(self, h: Harness, raw: RawRequest) -> RawRequest:
        api_key = keys.api_v3_key(h.settings)
        event = json.loads(raw.body)
        transaction = json.loads(wire.decrypt(api_key, event["resource"]))
        assert transaction["amount"]["total"] == 8888
        transaction["amount"]["total"] = transaction["amount"]["payer_total"] = 1
        event["resource"] = wire.encrypt(api_key, json.dumps(transaction).encode(), "transaction")
        return replace(raw, body=json.dumps(event).encode())

    def strip_signature(self, h: Harness, raw: RawRequest) -> RawRequest:
        headers = {k: v for k, v in raw.headers.items() if k != wire.SIGNATURE}
        return replace(raw, headers=headers)

    def tamper_start(self, h: Harness) -> int:
        signed = json.dumps(
            {
                "mchid": "1900000109",
                "out_trade_no": "P0001",
                "amount": {"total": 8888, "currency": "CNY"},
            }
        )
        sent = signed.replace("8888", "1")
        merchant = keys.private_key(h.settings, "wechatpay", "merchant")
        serial = signing.key_serial(merchant.public_key())
        path = f"/sim/wechatpay{wire.NATIVE_PATH}"
        ts = str(int(h.clock().timestamp()))
        auth = wire.authorization("1900000109", serial, merchant, "POST", path, signed, ts)
        response = h.client.post(
            f"{h.base}{wire.NATIVE_PATH}", content=sent.encode(), headers={"Authorization": auth}
        )
        assert response.json()["code"] == "SIGN_ERROR"
        return response.status_code

    def test_start_redirects_to_the_code_url(self, h: Harness) -> None:
        redirect = h.adapter.start(h.request("P0001", 8888))
        assert redirect.method == "GET"
        assert redirect.url.startswith(f"{h.base}/checkout/P0001?redirect_url=")
        order = h.sim.book.get("P0001")
        assert (order.amount_fen, order.notify_url) == (8888, "http://testserver/notify/wechatpay")
        assert order.extra["time_expire"] == "2026-11-27T12:01:02+08:00"

    def test_checkout_returns_to_the_redirect_url(self, h: Harness) -> None:
        redirect = h.adapter.start(h.request("P0001"))
        h.open_checkout(redirect)
        response = h.client.post(redirect.url, data={"action": "pay"}, follow_redirects=False)
        assert response.headers["location"] == "http://testserver/return/P0001"

    def test_notify_is_an_encrypted_transaction(self, h: Harness) -> None:
        raw = self.paid_notify(h)
        event = json.loads(raw.body)
        assert event["event_type"] == "TRANSACTION.SUCCESS"
        assert event["resource_type"] == "encrypt-resource"
        resource = event["resource"]
        assert resource["algorithm"] == "AEAD_AES_256_GCM" and len(resource["nonce"]) == 12
        assert "8888" not in raw.body.decode()  # the amount only travels encrypted
        transaction = json.loads(wire.decrypt(keys.api_v3_key(h.settings), resource))
        assert transaction["trade_state"] == "SUCCESS"
        assert transaction["amount"] == {
            "total": 8888,
            "payer_total": 8888,
            "currency": "CNY",
            "payer_currency": "CNY",
        }
        assert transaction["success_time"] == "2026-11-27T10:01:02+08:00"

    def test_ack_shapes(self, h: Harness) -> None:
        ok, fail = h.adapter.ack(True), h.adapter.ack(False)
        assert (ok.status_code, ok.body) == (204, b"")
        assert fail.status_code >= 400 and json.loads(fail.body)["code"] == "FAIL"

    def test_replayed_nonce_is_refused(self, h: Harness) -> None:
        raw = self.paid_notify(h)  # the receiver has parsed it once already
        with pytest.raises(VerificationError, match="replay"):
            h.adapter.parse_notify(raw)

    def test_forgeries_do_not_burn_the_nonce(self, h: Harness) -> None:
        h.pay("P0001", action="pay_lose_notify")
        fresh = h.fresh_notify("P0001")
        forged = replace(fresh, body=fresh.body.replace(b"TRANSACTION", b"TRANSACTIOn"))
        with pytest.raises(VerificationError):
            h.adapter.parse_notify(forged)
        assert h.adapter.parse_notify(fresh).amount_fen == 8888

    @pytest.mark.parametrize("offset", [301, -301, 3600])
    def test_stale_timestamp_is_refused(self, h: Harness, offset: int) -> None:
        h.pay("P0001", action="pay_lose_notify")
        raw = h.fresh_notify("P0001")
        h.clock.advance(offset)
        with pytest.raises(VerificationError, match="5 minutes"):
            h.adapter.parse_notify(raw)

    def test_timestamp_within_five_minutes_is_accepted(self, h: Harness) -> None:
        h.pay("P0001", action="pay_lose_notify")
        raw = h.fresh_notify("P0001")
        h.clock.advance(299)
        assert h.adapter.parse_notify(raw).amount_fen == 8888

    def test_unknown_serial_is_refused(self, h: Harness) -> None:
        h.pay("P0001", action="pay_lose_notify")
        raw = h.fresh_notify("P0001")
        with pytest.raises(VerificationError, match="serial"):
            h.adapter.parse_notify(replace(raw, headers={**raw.headers, wire.SERIAL: "ABC"}))

    def test_resource_that_does_not_decrypt_is_refused(self, h: Harness) -> None:
        h.pay("P0001", action="pay_lose_notify")
        raw = h.fresh_notify("P0001")
        event = json.loads(raw.body)
        event["resource"] = wire.encrypt(b"k" * 32, b'{"amount":{"total":1}}', "transaction")
        resigned = _resign(raw, json.dumps(event).encode(), h.gateway_key())
        with pytest.raises(VerificationError, match="decrypt"):
            h.adapter.parse_notify(resigned)

    def test_answers_not_signed_by_the_gateway_are_refused(self, h: Harness) -> None:
        h.pay("P0001")
        impostor = WechatPayGateway(
            base_url=h.base,
            mchid="1900000109",
            appid="wx2421b1c4370ec43b",
            merchant_key=keys.private_key(h.settings, "wechatpay", "merchant"),
            gateway_public_key=keys.public_key(h.settings, "wechatpay", "merchant"),
            api_v3_key=keys.api_v3_key(h.settings),
            http=h.client,
            nonce_store=h.nonces,
        )
        with pytest.raises(VerificationError):
            impostor.query("P0001")

    def test_simulator_refuses_stale_requests(self, h: Harness) -> None:
        merchant = keys.private_key(h.settings, "wechatpay", "merchant")
        serial = signing.key_serial(merchant.public_key())
        stale = str(int(h.clock().timestamp()) - 301)
        path = f"/sim/wechatpay{wire.QUERY_PATH.format(out_trade_no='X')}?mchid=1900000109"
        auth = wire.authorization("1900000109", serial, merchant, "GET", path, "", stale)
        response = h.client.get(f"http://testserver{path}", headers={"Authorization": auth})
        assert response.status_code == 401

    def test_configured_serials_are_used_on_both_sides(
        self, tmp_path: Path, gateway_pems: dict[str, dict[str, bytes]]
    ) -> None:
        serials = {"gateway_serial": "PUB_KEY_ID_0119000001", "merchant_serial": "5157F09EFDC0"}
        h = make_harness(
            "wechatpay", tmp_path, gateway_pems, gateway_options={"wechatpay": serials}
        )
        h.pay("P0001")
        assert h.receiver.raw[0].headers[wire.SERIAL] == "PUB_KEY_ID_0119000001"
        assert h.receiver.results[0].amount_fen == 8888

    def test_daily_bill_is_the_documented_backtick_format(self, h: Harness) -> None:
        h.clock.now = datetime(2026, 11, 27, 2, 5, 0, tzinfo=UTC)  # 10:05:00 Shanghai
        h.pay("PW20261127000002", 12000)
        txn = h.sim.book.get("PW20261127000002").trade_no
        h.clock.now = datetime(2026, 11, 27, 8, 0, 0, tzinfo=UTC)  # 16:00:00 Shanghai
        refund = h.adapter.refund(
            RefundRequest("RW20261127000001", "PW20261127000002", 12000, 12000, "退费", txn)
        )
        bill = h.adapter.fetch_bill(date(2026, 11, 27))
        assert bill.filename == "wechatpay_1900000109_20261127.csv"
        expected = EXPECTED_BILL.replace("TXN", txn).replace("REFUND_ID", refund.gateway_refund_id)
        assert bill.content.decode("utf-8") == expected


EXPECTED_BILL = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,"
    "付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,"
    "退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注\n"
    "`2026-11-27 10:05:00,`wx2421b1c4370ec43b,`1900000109,`0,`,`TXN,`PW20261127000002,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`SUCCESS,`CMB_DEBIT,`CNY,`120.00,`0.00,`0,`0,`0.00,"
    "`0.00,`,`,`交通罚款,`,`0.72000,`0.60%,`120.00,`0.00,`\n"
    "`2026-11-27 16:00:00,`wx2421b1c4370ec43b,`1900000109,`0,`,`TXN,`PW20261127000002,"
    "`oUpF8uMuAJO_M2pxb1Q9zNjWeS6o,`NATIVE,`REFUND,`CMB_DEBIT,`CNY,`0.00,`0.00,`REFUND_ID,"
    "`RW20261127000001,`120.00,`0.00,`ORIGINAL,`SUCCESS,`交通罚款,`,`-0.72000,`0.60%,`0.00,"
    "`120.00,`\n"
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\n"
    "`2,`120.00,`120.00,`0.00,`0.00000,`120.00,`120.00\n"
)
