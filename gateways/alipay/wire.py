"""Alipay's wire format (open platform, RSA2): methods, field names, signatures, statuses.

Request and notify signature: base64 SHA256withRSA over the parameters sorted by key and joined
``k=v&k=v`` (raw values), leaving out ``sign``, ``sign_type`` and empty values. A JSON answer
``{"<method>_response": {...}, "sign": "..."}`` is signed over the exact text of the response
object as it appears in the body.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from gateways import signing
from gateways.options import SHANGHAI

PAGE_PAY = "alipay.trade.page.pay"
QUERY = "alipay.trade.query"
REFUND = "alipay.trade.refund"
BILL_URL = "alipay.data.dataservice.bill.downloadurl.query"
PAGE_PAY_RETURN = "alipay.trade.page.pay.return"

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
EXCLUDED = ("sign", "sign_type")

SUCCESS_CODE = "10000"
BUSINESS_FAILED = "40004"
TRADE_NOT_EXIST = "ACQ.TRADE_NOT_EXIST"
REFUND_AMOUNT_EXCEEDED = "ACQ.REFUND_AMT_NOT_EQUAL_TOTAL"
TRADE_STATUS_ERROR = "ACQ.TRADE_STATUS_ERROR"

# Trade statuses. TRADE_FAILED is a simulator extension: real Alipay keeps a declined page-pay
# order WAIT_BUYER_PAY until it expires and then reports TRADE_CLOSED.
WAIT_BUYER_PAY = "WAIT_BUYER_PAY"
TRADE_SUCCESS = "TRADE_SUCCESS"
TRADE_FINISHED = "TRADE_FINISHED"
TRADE_CLOSED = "TRADE_CLOSED"
TRADE_FAILED = "TRADE_FAILED"


def timestamp(moment: datetime) -> str:
    """``yyyy-MM-dd HH:mm:ss`` in Asia/Shanghai."""
    return moment.astimezone(SHANGHAI).strftime(TIME_FORMAT)


def parse_timestamp(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=SHANGHAI)


def sign_base(params: Mapping[str, str]) -> bytes:
    return signing.canonical_string(params, EXCLUDED).encode("utf-8")


def sign_params(params: Mapping[str, str], key: signing.PrivateKey) -> dict[str, str]:
    """``params`` plus ``sign`` (``sign_type`` must already be in ``params`` when wanted)."""
    return {**params, "sign": signing.sign(key, sign_base(params))}


def verify_params(params: Mapping[str, str], key: signing.PublicKey) -> bool:
    return signing.verify(key, sign_base(params), params.get("sign"))


def response_key(method: str) -> str:
    """``alipay.trade.query`` -> ``alipay_trade_query_response``."""
    return method.replace(".", "_") + "_response"


def signed_response(method: str, payload: Mapping[str, Any], key: signing.PrivateKey) -> str:
    """The JSON body of an answer, signed over the exact text of the response object."""
    text = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
    sign = signing.sign(key, text.encode("utf-8"))
    return f'{{"{response_key(method)}":{text},"sign":"{sign}"}}'


def response_object_text(body: str, method: str) -> str | None:
    """The exact text of the ``<method>_response`` value inside ``body`` (None if absent)."""
    marker = f'"{response_key(method)}"'
    start = body.find(marker)
    if start < 0:
        return None
    colon = body.find(":", start + len(marker))
    value_start = colon + 1
    while value_start < len(body) and body[value_start] in " \t\r\n":
        value_start += 1
    try:
        _, end = json.JSONDecoder().raw_decode(body, value_start)
    except json.JSONDecodeError:
        return None
    return body[value_start:end]
