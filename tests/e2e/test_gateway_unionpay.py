"""Conformance of the UnionPay-style bank adapter against its simulator, and its daily file."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest

from gateways import keys, signing
from gateways.formdata import decode_form
from gateways.protocol import GatewayStatus, RawRequest, RefundRequest, VerificationError
from gateways.unionpay import wire
from gateways.unionpay.adapter import UnionPayGateway
from tests.e2e.gateway_conformance import GatewayConformance
from tests.e2e.gateway_harness import Harness, make_harness


def _with(raw: RawRequest, fields: dict[str, str]) -> RawRequest:
    return replace(raw, body=urlencode(fields).encode())


class TestUnionPay(GatewayConformance):
    name = "unionpay"

    def forge(self, h: Harness, raw: RawRequest) -> RawRequest:
        fields = decode_form(raw.body)  # keeps the bank's certId, signs with another key
        other = keys.private_key(h.settings, "unionpay", "merchant")
        return _with(raw, {**fields, "signature": signing.sign(other, wire.sign_base(fields))})

    def tamper_amount(self, h: Harness, raw: RawRequest) -> RawRequest:
        fields = decode_form(raw.body)
        assert fields["txnAmt"] == "8888"
        return _with(raw, {**fields, "txnAmt": "88880", "settleAmt": "88880"})

    def strip_signature(self, h: Harness, raw: RawRequest) -> RawRequest:
        fields = decode_form(raw.body)
        del fields["signature"]
        return _with(raw, fields)

    def tamper_start(self, h: Harness) -> int:
        redirect = h.adapter.start(h.request("P0001", 8888))
        return h.client.post(redirect.url, data={**redirect.fields, "txnAmt": "1"}).status_code

    def test_start_fields_follow_the_protocol(self, h: Harness) -> None:
        redirect = h.adapter.start(h.request("P0001", 8888))
        assert (redirect.method, redirect.url) == ("POST", f"{h.base}/gateway/api/frontTransReq.do")
        fields = dict(redirect.fields)
        expected = {
            "version": "5.1.0",
            "encoding": "UTF-8",
            "signMethod": "01",
            "txnType": "01",
            "txnSubType": "01",
            "bizType": "000201",
            "channelType": "07",
            "accessType": "0",
            "merId": "898510148990001",
            "orderId": "P0001",
            "txnTime": "20261127100102",
            "txnAmt": "8888",
            "currencyCode": "156",
            "payTimeout": "20261127120102",
            "backUrl": "http://testserver/notify/unionpay",
            "frontUrl": "http://testserver/return/P0001",
        }
        assert {k: fields[k] for k in expected} == expected
        merchant = keys.public_key(h.settings, "unionpay", "merchant")
        assert fields["certId"] == wire.cert_id(merchant)
        digest = signing.sha256_hex(signing.canonical_string(fields, ("signature",)))
        assert signing.verify(merchant, digest.encode(), fields["signature"])

    def test_notify_fields_and_ack(self, h: Harness) -> None:
        fields = decode_form(self.paid_notify(h).body)
        assert (fields["respCode"], fields["orderId"], fields["txnAmt"]) == ("00", "P0001", "8888")
        assert fields["settleDate"] == "1127" and fields["txnTime"] == "20261127100102"
        assert (h.adapter.ack(True).status_code, h.adapter.ack(True).body) == (200, b"ok")
        assert h.adapter.ack(False).status_code != 200

    def test_notify_naming_another_cert_is_refused(self, h: Harness) -> None:
        raw = self.paid_notify(h)
        resigned = wire.sign_fields(decode_form(raw.body), h.gateway_key())
        assert h.adapter.parse_notify(_with(raw, resigned)).amount_fen == 8888
        with pytest.raises(VerificationError):
            h.adapter.parse_notify(_with(raw, {**resigned, "certId": "1"}))

    def test_refund_without_the_txn_id_queries_it_first(self, h: Harness) -> None:
        h.pay("P0001", 8888)
        result = h.adapter.refund(RefundRequest("R0001", "P0001", 8888, 8888, "退费"))
        assert result.amount_fen == 8888 and result.gateway_refund_id
        assert h.adapter.query("P0001").status is GatewayStatus.SUCCEEDED

    def test_answers_not_signed_by_the_bank_are_refused(self, h: Harness) -> None:
        h.pay("P0001")
        impostor = UnionPayGateway(
            base_url=h.base,
            mer_id="898510148990001",
            merchant_key=keys.private_key(h.settings, "unionpay", "merchant"),
            gateway_public_key=keys.public_key(h.settings, "unionpay", "merchant"),
            http=h.client,
        )
        with pytest.raises(VerificationError):
            impostor.query("P0001")

    def test_configured_cert_ids_are_used_on_both_sides(
        self, tmp_path: Path, gateway_pems: dict[str, dict[str, bytes]]
    ) -> None:
        certs = {"gateway_cert_id": "69629715588", "merchant_cert_id": "68759529225"}
        h = make_harness("unionpay", tmp_path, gateway_pems, gateway_options={"unionpay": certs})
        assert h.adapter.start(h.request("P0001")).fields["certId"] == "68759529225"
        h.pay("P0001")
        assert decode_form(h.receiver.raw[0].body)["certId"] == "69629715588"
        assert h.receiver.results[0].amount_fen == 8888

    def test_daily_file_is_the_documented_pipe_format(self, h: Harness) -> None:
        h.clock.now = datetime(2026, 11, 27, 2, 5, 0, tzinfo=UTC)  # 10:05:00 Shanghai
        h.pay("PU20261127000003", 460000)
        h.clock.now = datetime(2026, 11, 27, 9, 0, 0, tzinfo=UTC)  # 17:00:00 Shanghai
        refund = h.adapter.refund(
            RefundRequest("RU20261127000001", "PU20261127000003", 460000, 460000, "退费")
        )
        query_id = h.sim.book.get("PU20261127000003").trade_no
        bill = h.adapter.fetch_bill(date(2026, 11, 27))
        assert bill.filename == "unionpay_898510148990001_20261127.txt"
        assert bill.content.decode("ascii") == (
            "H|898510148990001|20261127|2\n"
            f"D|PU20261127000003|{query_id}|20261127100500|01|460000|1380|458620|00\n"
            f"D|PU20261127000003|{refund.gateway_refund_id}|20261127170000|04|-460000|-1380"
            "|-458620|00|RU20261127000001\n"
            "T|2|0|0|0\n"
        )

    def test_partial_refund_fees_sum_to_the_whole_fee(self, h: Harness) -> None:
        h.pay("P0001", 10001)  # fee 30.003 -> 30 fen
        for n, amount in enumerate((3334, 3333, 3334)):
            h.adapter.refund(RefundRequest(f"R{n}", "P0001", amount, 10001, "r"))
        lines = h.adapter.fetch_bill(h.clock().date()).content.decode().splitlines()
        fees = [int(line.split("|")[6]) for line in lines if line.startswith("D|")]
        assert fees[0] == 30 and sum(fees) == 0
        assert lines[-1] == "T|4|0|0|0"
