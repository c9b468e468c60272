"""Conformance of the Alipay-style adapter against its simulator, and its GBK daily bill."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, date, datetime
from urllib.parse import urlencode

import pytest

from gateways import keys
from gateways.alipay import wire
from gateways.alipay.adapter import AlipayGateway
from gateways.formdata import decode_form
from gateways.protocol import RawRequest, RefundRequest, VerificationError
from tests.e2e.gateway_conformance import GatewayConformance
from tests.e2e.gateway_harness import Harness


def _with(raw: RawRequest, params: dict[str, str]) -> RawRequest:
    return replace(raw, body=urlencode(params).encode())


class TestAlipay(GatewayConformance):
    name = "alipay"

    def forge(self, h: Harness, raw: RawRequest) -> RawRequest:
        params = decode_form(raw.body)
        other = keys.private_key(h.settings, "alipay", "merchant")
        return _with(raw, wire.sign_params({k: v for k, v in params.items() if k != "sign"}, other))

    def tamper_amount(self, h: Harness, raw: RawRequest) -> RawRequest:
        params = decode_form(raw.body)
        assert params["total_amount"] == "88.88"
        return _with(raw, {**params, "total_amount": "8.88", "receipt_amount": "8.88"})

    def strip_signature(self, h: Harness, raw: RawRequest) -> RawRequest:
        params = decode_form(raw.body)
        del params["sign"]
        return _with(raw, params)

    def tamper_start(self, h: Harness) -> int:
        redirect = h.adapter.start(h.request("P0001", 8888))
        fields = dict(redirect.fields)
        fields["biz_content"] = fields["biz_content"].replace('"88.88"', '"0.01"')
        return h.client.post(redirect.url, data=fields).status_code

    def test_start_fields_follow_the_protocol(self, h: Harness) -> None:
        redirect = h.adapter.start(h.request("P0001", 8888))
        assert (redirect.method, redirect.url) == ("POST", f"{h.base}/gateway.do")
        fields = dict(redirect.fields)
        assert fields["method"] == "alipay.trade.page.pay"
        assert (fields["charset"], fields["sign_type"], fields["version"]) == (
            "utf-8",
            "RSA2",
            "1.0",
        )
        assert fields["timestamp"] == "2026-11-27 10:01:02"
        biz = json.loads(fields["biz_content"])
        assert biz == {
            "out_trade_no": "P0001",
            "total_amount": "88.88",
            "subject": "交通罚款",
            "product_code": "FAST_INSTANT_TRADE_PAY",
            "time_expire": "2026-11-27 12:01:02",
        }
        merchant_public = keys.public_key(h.settings, "alipay", "merchant")
        assert wire.verify_params(fields, merchant_public)

    def test_notify_fields_and_success_ack(self, h: Harness) -> None:
        raw = self.paid_notify(h)
        params = decode_form(raw.body)
        assert raw.headers["content-type"].startswith("application/x-www-form-urlencoded")
        assert params["notify_type"] == "trade_status_sync"
        assert params["trade_status"] == "TRADE_SUCCESS"
        assert params["total_amount"] == params["receipt_amount"] == "88.88"
        assert params["gmt_payment"] == "2026-11-27 10:01:02"
        ack = h.adapter.ack(True)
        assert (ack.status_code, ack.body) == (200, b"success")
        assert h.adapter.ack(False).body != b"success"

    def test_notify_for_another_app_is_refused(self, h: Harness) -> None:
        raw = self.paid_notify(h)
        params = {k: v for k, v in decode_form(raw.body).items() if k != "sign"}
        resigned = wire.sign_params({**params, "app_id": "2021999999999999"}, h.gateway_key())
        with pytest.raises(VerificationError):
            h.adapter.parse_notify(_with(raw, resigned))

    def test_return_redirect_is_signed_by_the_gateway(self, h: Harness) -> None:
        h.checkout("P0001")
        location = h.act("P0001", "pay").headers["location"]
        assert location.startswith(f"{h.base.rsplit('/sim', 1)[0]}/return/P0001?")
        params = decode_form(location.split("?", 1)[1])
        assert params["out_trade_no"] == "P0001" and params["total_amount"] == "88.88"
        assert wire.verify_params(params, keys.public_key(h.settings, "alipay", "gateway"))

    def test_answers_not_signed_by_the_gateway_are_refused(self, h: Harness) -> None:
        h.pay("P0001")
        impostor = AlipayGateway(
            base_url=h.base,
            app_id="2021000000000001",
            merchant_key=keys.private_key(h.settings, "alipay", "merchant"),
            gateway_public_key=keys.public_key(h.settings, "alipay", "merchant"),
            http=h.client,
        )
        with pytest.raises(VerificationError):
            impostor.query("P0001")

    def test_answer_signature_covers_the_exact_response_text(self) -> None:
        body = '{"alipay_trade_query_response": {"code":"10000","b":[1,{"c":"}"}]} ,"sign":"x"}'
        text = wire.response_object_text(body, "alipay.trade.query")
        assert text == '{"code":"10000","b":[1,{"c":"}"}]}'

    def test_daily_bill_is_the_documented_gbk_format(self, h: Harness) -> None:
        h.checkout("PA20261127000001", 26000)
        h.clock.advance(7)
        assert h.act("PA20261127000001", "pay").status_code == 303
        trade_no = h.sim.book.get("PA20261127000001").trade_no
        h.clock.now = datetime(2026, 11, 27, 7, 0, 0, tzinfo=UTC)  # 15:00:00 Shanghai
        refund = RefundRequest("RF20261127000001", "PA20261127000001", 26000, 26000, "退费")
        assert h.adapter.refund(refund).amount_fen == 26000
        h.clock.now = datetime(2026, 11, 28, 1, 0, 0, tzinfo=UTC)  # exported 09:00 next day
        bill = h.adapter.fetch_bill(date(2026, 11, 27))
        assert bill.filename == "alipay_2021000000000001_20261127.csv"
        expected = EXPECTED_BILL.replace("TRADE_NO", trade_no).encode("gbk")
        assert bill.content == expected
        with pytest.raises(UnicodeDecodeError):
            bill.content.decode("utf-8")


T = "\t"
EXPECTED_BILL = (
    "#支付宝业务明细查询\n"
    "#账号：[2088102177846880]\n"
    "#起始日期：[2026年11月27日 00:00:00]   终止日期：[2026年11月28日 00:00:00]\n"
    "#-----------------------------------------业务明细列表----------------------------------------\n"
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,"
    "对方账户,订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,"
    "商家优惠（元）,券核销金额（元）,券名称,商家红包消费金额（元）,卡消费金额（元）,"
    "退款批次号/请求号,服务费（元）,分润（元）,备注\n"
    f"TRADE_NO{T},PA20261127000001{T},交易{T},交通罚款{T},2026-11-27 10:01:02{T},"
    f"2026-11-27 10:01:09{T},{T},{T},{T},{T},r***@example.com{T},260.00{T},260.00{T},0.00{T},"
    f"0.00{T},0.00{T},0.00{T},0.00{T},{T},0.00{T},0.00{T},{T},-1.56{T},0.00{T},\n"
    f"TRADE_NO{T},PA20261127000001{T},退款{T},交通罚款{T},2026-11-27 15:00:00{T},"
    f"2026-11-27 15:00:00{T},{T},{T},{T},{T},r***@example.com{T},-260.00{T},-260.00{T},0.00{T},"
    f"0.00{T},0.00{T},0.00{T},0.00{T},{T},0.00{T},0.00{T},RF20261127000001{T},1.56{T},0.00{T},\n"
    "#-----------------------------------------业务明细列表结束------------------------------------\n"
    "#交易合计：1笔，商家实收共：260.00元，商家优惠共：0.00元\n"
    "#退款合计：1笔，商家实收退款共：-260.00元，商家优惠退款共：0.00元\n"
    "#导出时间：[2026年11月28日 09:00:00]\n"
)
