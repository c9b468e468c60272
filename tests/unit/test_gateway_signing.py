"""Signing and canonicalisation shared by the gateways, with known vectors."""

from __future__ import annotations

import base64
import json
from urllib.parse import parse_qsl, quote_from_bytes, unquote

import pytest
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st

from gateways import formdata, signing
from gateways.alipay import wire as alipay_wire
from gateways.formdata import decode_form
from gateways.unionpay import wire as unionpay_wire
from gateways.wechatpay import wire as wechat_wire

# A 1024-bit key keeps this module fast; the gateways use 2048 bits (signing.KEY_BITS).
KEY = rsa.generate_private_key(public_exponent=65537, key_size=1024)
OTHER = rsa.generate_private_key(public_exponent=65537, key_size=1024)


def test_canonical_string_sorts_by_key_and_skips_excluded_and_empty() -> None:
    params = {"sign_type": "RSA2", "b": "2", "sign": "xyz", "a": "1", "c": "", "A": "0"}
    assert signing.canonical_string(params, ("sign", "sign_type")) == "A=0&a=1&b=2"


def test_canonical_string_uses_raw_values() -> None:
    params = {"subject": "交通 罚款&x=1", "biz_content": '{"a":"1"}'}
    assert signing.canonical_string(params) == 'biz_content={"a":"1"}&subject=交通 罚款&x=1'


def test_alipay_sign_base_vector() -> None:
    params = {
        "app_id": "2021",
        "method": "alipay.trade.query",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "sign": "old",
        "version": "1.0",
        "notify_url": "",
    }
    expected = b"app_id=2021&charset=utf-8&method=alipay.trade.query&version=1.0"
    assert alipay_wire.sign_base(params) == expected


def test_sha256_hex_known_vector() -> None:
    assert signing.sha256_hex("abc") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )


def test_unionpay_signs_the_hex_digest_of_the_canonical_string() -> None:
    fields = {"txnAmt": "100", "orderId": "P1", "signature": "old", "certId": "9"}
    assert (
        unionpay_wire.sign_base(fields)
        == signing.sha256_hex("certId=9&orderId=P1&txnAmt=100").encode()
    )
    signed = unionpay_wire.sign_fields({"txnAmt": "100", "orderId": "P1"}, KEY)
    assert signed["certId"] == unionpay_wire.cert_id(KEY.public_key())
    assert unionpay_wire.verify_fields(signed, KEY.public_key())
    assert not unionpay_wire.verify_fields({**signed, "txnAmt": "101"}, KEY.public_key())
    assert not unionpay_wire.verify_fields(signed, OTHER.public_key())  # certId differs


def test_wechatpay_messages() -> None:
    assert wechat_wire.request_message("POST", "/v3/x?a=1", "1700000000", "N", '{"a":1}') == (
        b'POST\n/v3/x?a=1\n1700000000\nN\n{"a":1}\n'
    )
    assert wechat_wire.response_message("1700000000", "N", b"{}") == b"1700000000\nN\n{}\n"
    assert wechat_wire.response_message("1", "N", b"") == b"1\nN\n\n"


def test_sign_then_verify() -> None:
    signature = signing.sign(KEY, b"payload")
    assert len(base64.b64decode(signature)) == 128
    assert signing.verify(KEY.public_key(), b"payload", signature)
    assert signing.sign(KEY, b"payload") == signature  # PKCS#1 v1.5 is deterministic


@pytest.mark.parametrize("signature", [None, "", "not base64!", base64.b64encode(b"x").decode()])
def test_verify_refuses_malformed_signatures(signature: str | None) -> None:
    assert not signing.verify(KEY.public_key(), b"payload", signature)


def test_verify_refuses_another_key_and_other_data() -> None:
    signature = signing.sign(KEY, b"payload")
    assert not signing.verify(OTHER.public_key(), b"payload", signature)
    assert not signing.verify(KEY.public_key(), b"payloaD", signature)


def test_pem_round_trip_and_serial() -> None:
    private = signing.load_private_key(signing.private_key_pem(KEY))
    public = signing.load_public_key(signing.public_key_pem(KEY.public_key()))
    assert signing.verify(public, b"x", signing.sign(private, b"x"))
    serial = signing.key_serial(public)
    assert len(serial) == 40 and serial == serial.upper()
    assert serial != signing.key_serial(OTHER.public_key())


def test_alipay_response_text_is_extracted_exactly() -> None:
    payload = {"code": "10000", "msg": "Success", "subject": "罚款 }{"}
    body = alipay_wire.signed_response("alipay.trade.query", payload, KEY)
    text = alipay_wire.response_object_text(body, "alipay.trade.query")
    assert text is not None and json.loads(text) == payload
    assert signing.verify(KEY.public_key(), text.encode(), json.loads(body)["sign"])
    assert alipay_wire.response_object_text(body, "alipay.trade.refund") is None


def test_aes_gcm_resource_round_trip_and_tamper() -> None:
    key = b"0123456789abcdef0123456789abcdef"
    resource = wechat_wire.encrypt(key, b'{"a":1}', "transaction")
    assert len(resource["nonce"]) == 12
    assert len(base64.b64decode(resource["ciphertext"])) == len(b'{"a":1}') + 16
    assert wechat_wire.decrypt(key, resource) == b'{"a":1}'
    with pytest.raises(InvalidTag):
        wechat_wire.decrypt(key, {**resource, "associated_data": "other"})


def test_authorization_header_round_trip() -> None:
    header = wechat_wire.authorization("1900000109", "ABC", KEY, "GET", "/v3/x", "", "17")
    params = wechat_wire.parse_authorization(header)
    assert params is not None and params["mchid"] == "1900000109"
    assert params["serial_no"] == "ABC" and params["timestamp"] == "17"
    message = wechat_wire.request_message("GET", "/v3/x", "17", params["nonce_str"], "")
    assert signing.verify(KEY.public_key(), message, params["signature"])
    assert wechat_wire.parse_authorization("Bearer x") is None


def test_decode_form_is_strict() -> None:
    assert decode_form(b"a=1&b=&c=%E4%BA%A4") == {"a": "1", "b": "", "c": "交"}
    with pytest.raises(ValueError):
        decode_form(b"a=1&a=2")
    with pytest.raises(ValueError):
        decode_form(b"\xff=1")
    with pytest.raises(ValueError):
        decode_form(b"a=1&&b=2")  # an empty field
    with pytest.raises(ValueError):
        decode_form(b"a=1&b")  # a field without "="
    assert decode_form(b"") == {}


@given(
    st.text(alphabet="%0123456789abcdefABCDEFxzZ\\+ 交\x00", max_size=30)
    | st.lists(st.binary(max_size=4), max_size=6).map(
        lambda chunks: "".join(quote_from_bytes(c) + "a" for c in chunks)
    )
)
def test_unescape_is_unquote(text: str) -> None:
    assert formdata._unescape(text) == unquote(text)


@given(
    st.lists(
        st.tuples(
            st.text(alphabet="ab=&+%2E4ZGf\\交 ", max_size=8),
            st.text(alphabet="ab=&+%2E4ZGf\\交 ", max_size=8),
        ),
        max_size=6,
    ).map(lambda pairs: "&".join(f"{k}={v}" for k, v in pairs))
    | st.text(alphabet="ab=&+%2E4FGf\\交 ", max_size=20)
)
def test_decode_form_agrees_with_parse_qsl(text: str) -> None:
    """The hand-written decoder gives what strict ``parse_qsl`` gives, or refuses what it
    refuses (a repeated key is refused on top)."""
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        with pytest.raises(ValueError):
            decode_form(text)
        return
    if len(dict(pairs)) != len(pairs):
        with pytest.raises(ValueError, match="repeated"):
            decode_form(text)
    else:
        assert decode_form(text.encode()) == dict(pairs)


@given(
    st.dictionaries(
        st.text("abcdefgh_", min_size=1, max_size=6),
        st.text(max_size=8).filter(lambda v: "&" not in v and "=" not in v),
    )
)
def test_canonical_string_is_independent_of_insertion_order(params: dict[str, str]) -> None:
    reordered = dict(reversed(list(params.items())))
    assert signing.canonical_string(params) == signing.canonical_string(reordered)
    kept = signing.canonical_string(params)
    assert all(f"{k}={v}" in kept for k, v in params.items() if v)
