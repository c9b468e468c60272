"""The receipt's canonical form and its Ed25519 e-seal: any change to any field breaks it."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections import Counter
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from clearing.config import Settings
from clearing.errors import ConfigurationError, ValidationError
from notices.receipts import (
    CHECK_ALPHABET,
    CHECK_LENGTH,
    ESeal,
    PublishedKeys,
    canonical_bytes,
    key_id_for,
    new_check_code,
    verify_document,
    verify_published,
)

SEED = bytes(range(32))
ESEAL = ESeal(Ed25519PrivateKey.from_private_bytes(SEED))
OTHER = ESeal(Ed25519PrivateKey.from_private_bytes(bytes(reversed(range(32)))))


def document(key_id: str = ESEAL.key_id) -> dict[str, Any]:
    return {
        "type": "feishui.receipt",
        "version": 1,
        "number": "FS202611281234567890",
        "check_code": "6NCA7A",
        "issuer": {
            "platform": "feishui 非税缴款平台",
            "department": "成都市公安局交通管理局",
            "region_code": "510100",
        },
        "payer": {"name_masked": "张*三"},
        "payment_code": "51010026503043154704",
        "kind": {"code": "traffic_fine", "name_zh": "交通违法罚款", "name_en": "Traffic fine"},
        "items": [
            {
                "line_no": 1,
                "code": "TF-1",
                "name_zh": "机动车违停罚款",
                "name_en": "Illegal parking fine",
                "quantity": 1,
                "unit_amount": {"fen": 20000, "display": "200.00"},
                "amount": {"fen": 20000, "display": "200.00"},
            },
            {
                "line_no": 2,
                "code": "TF-2",
                "name_zh": "超速罚款",
                "name_en": "Speeding fine",
                "quantity": 2,
                "unit_amount": {"fen": 5050, "display": "50.50"},
                "amount": {"fen": 10100, "display": "101.00"},
            },
        ],
        "principal": {"fen": 30100, "display": "301.00"},
        "late_fee": {"fen": 150, "display": "1.50"},
        "total": {"fen": 30250, "display": "302.50"},
        "currency": "CNY",
        "paid_at": "2026-11-28T10:30:00+08:00",
        "issued_at": "2026-11-28T10:30:01+08:00",
        "payment": {
            "channel": "h5",
            "gateway": "alipay",
            "gateway_txn_id": "2026112822001000000001",
            "order_id": "FSO0000000001",
        },
        "key_id": key_id,
        "algorithm": "Ed25519",
    }


KEYS = PublishedKeys({ESEAL.key_id: ESEAL.public_key, OTHER.key_id: OTHER.public_key})


def sign(doc: dict[str, Any], eseal: ESeal = ESEAL) -> str:
    return eseal.sign(canonical_bytes(doc))


# --------------------------------------------------------------------------- canonical form


def test_canonical_form_is_sorted_compact_utf8() -> None:
    data = canonical_bytes({"b": 1, "a": {"z": "张*三", "y": [2, 1]}})
    assert data == '{"a":{"y":[2,1],"z":"张*三"},"b":1}'.encode()


@pytest.mark.parametrize(
    ("doc", "where"),
    [
        ({"a": {"b": [1, {"c": 1.5}]}}, "$.a.b[1].c: floats are not allowed"),
        ({"a": (1, 2.0)}, "$.a[1]: floats are not allowed"),
        ({"a": {1: "x"}}, "$.a: keys must be strings"),
        ({"a": [{"b": float("nan")}]}, "$.a[0].b: floats are not allowed"),
    ],
)
def test_canonical_form_refuses_floats_and_names_where(doc, where) -> None:
    with pytest.raises(ValidationError, match=re.escape(where)):
        canonical_bytes(doc)


def test_canonical_form_takes_mapping_subclasses() -> None:
    from collections import OrderedDict

    assert (
        canonical_bytes({"a": OrderedDict(b=[True, None, "x"])}) == b'{"a":{"b":[true,null,"x"]}}'
    )


def test_canonical_form_does_not_depend_on_key_order() -> None:
    doc = document()
    shuffled = json.loads(json.dumps(dict(reversed(list(doc.items())))))
    assert canonical_bytes(shuffled) == canonical_bytes(doc)


def test_canonical_form_is_stable_golden() -> None:
    # Changing the canonical form breaks every receipt already issued: this must never move.
    data = canonical_bytes(document(key_id="0123456789abcdef"))
    assert data.startswith(b'{"algorithm":"Ed25519","check_code":"6NCA7A","currency":"CNY",')
    assert "成都市公安局交通管理局".encode() in data  # UTF-8, not \u escapes
    assert b'": ' not in data and b', "' not in data
    assert hashlib.sha256(data).hexdigest() == (
        "4d899a6a542c02acd1ddb9a488c07f69357ae565f77070b0c6c207dc1fa07cd8"
    )


def test_floats_are_refused() -> None:
    with pytest.raises(ValidationError, match="floats"):
        canonical_bytes({"total": {"fen": 302.5}})


def test_ed25519_signature_is_deterministic() -> None:
    assert sign(document()) == sign(document())
    assert len(base64.b64decode(sign(document()))) == 64


# --------------------------------------------------------------------------- keys


def test_key_id_is_sha256_of_raw_public_key() -> None:
    raw = ESEAL.public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert ESEAL.key_id == hashlib.sha256(raw).hexdigest()[:16] == key_id_for(ESEAL.public_key)


def test_eseal_from_settings_generates_in_development(tmp_path) -> None:
    settings = Settings(env="development", var_dir=tmp_path)
    first = ESeal.from_settings(settings)
    assert ESeal.from_settings(settings).key_id == first.key_id  # persisted
    assert first.public_pem().startswith("-----BEGIN PUBLIC KEY-----")
    keys = PublishedKeys.from_settings(settings)
    assert keys.current == first.key_id and list(keys) == [first.key_id]
    assert PublishedKeys.from_pem(first.public_pem()).current == first.key_id


def test_eseal_from_a_key_file(tmp_path) -> None:
    pem = ESEAL.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "eseal.pem").write_bytes(pem)
    settings = Settings(env="test", var_dir=tmp_path, eseal_key=str(tmp_path / "eseal.pem"))
    assert ESeal.from_settings(settings).key_id == ESEAL.key_id


def test_a_non_ed25519_or_missing_key_is_a_configuration_error(tmp_path) -> None:
    with pytest.raises(ConfigurationError):
        ESeal.from_settings(Settings(env="test", var_dir=tmp_path, eseal_key="/nonexistent"))
    with pytest.raises(ConfigurationError):
        ESeal.from_settings(Settings(env="production", var_dir=tmp_path))


def test_old_public_keys_are_published_too(tmp_path) -> None:
    settings = Settings(env="development", var_dir=tmp_path)
    object.__setattr__(settings, "eseal_old_public_keys", OTHER.public_pem())
    keys = PublishedKeys.from_settings(settings)
    assert OTHER.key_id in keys and keys.pem(OTHER.key_id) == OTHER.public_pem()
    doc = document(key_id=OTHER.key_id)
    assert verify_document(doc, sign(doc, OTHER), keys).ok


# --------------------------------------------------------------------------- verify


def test_sign_and_verify() -> None:
    doc = document()
    result = verify_document(doc, sign(doc), KEYS)
    assert result.ok and result.reason == "e-seal valid"
    assert result.number == doc["number"] and result.issuer == "成都市公安局交通管理局"
    published = {
        "receipt": doc,
        "signature": sign(doc),
        "key_id": ESEAL.key_id,
        "algorithm": "Ed25519",
    }
    assert verify_published(json.loads(json.dumps(published, ensure_ascii=False)), KEYS).ok


def test_wrong_key_fails() -> None:
    doc = document()
    forged = sign(doc, OTHER)  # signed by another key but claiming ESEAL's key id
    result = verify_document(doc, forged, KEYS)
    assert not result.ok and "does not match" in result.reason


def test_switching_the_key_id_to_another_published_key_fails() -> None:
    doc = document()
    signature = sign(doc)
    doc["key_id"] = OTHER.key_id
    assert not verify_document(doc, signature, KEYS).ok


def test_unknown_key_id_fails() -> None:
    doc = document(key_id="ffffffffffffffff")
    result = verify_document(doc, sign(doc), KEYS)
    assert not result.ok and "unknown e-seal key id" in result.reason


@pytest.mark.parametrize(
    "signature",
    [
        None,
        "",
        "not base64!",
        base64.b64encode(b"x" * 63).decode(),
        base64.b64encode(b"\0" * 64).decode(),
    ],
)
def test_malformed_signatures_fail(signature) -> None:
    assert not verify_document(document(), signature, KEYS).ok


@pytest.mark.parametrize(
    "published",
    [
        None,
        [],
        {"receipt": "x"},
        {"signature": "x"},
        {"receipt": document(), "signature": "", "key_id": "x"},
    ],
)
def test_malformed_published_forms_fail(published) -> None:
    assert not verify_published(published, KEYS).ok


def test_outer_key_id_must_match_the_inner_one() -> None:
    doc = document()
    published = {"receipt": doc, "signature": sign(doc), "key_id": OTHER.key_id}
    assert "differs" in verify_published(published, KEYS).reason


def test_a_float_amount_fails_without_raising() -> None:
    doc = document()
    signature = sign(doc)
    doc["total"]["fen"] = 30250.0
    result = verify_document(doc, signature, KEYS)
    assert not result.ok and "canonical" in result.reason


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _leaves(v, (*path, i))]
    return [path]


LEAVES = _leaves(document())


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        doc = doc[step]
    return doc


def _mutated(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        delta = data.draw(st.integers(min_value=-(10**6), max_value=10**6).filter(bool))
        return data.draw(st.sampled_from([value + delta, str(value), None]))
    if isinstance(value, str):
        return data.draw(
            st.one_of(st.text(max_size=30), st.integers(), st.none()).filter(
                lambda new: new != value
            )
        )
    return data.draw(st.sampled_from(["", 0]))


@settings(max_examples=300, deadline=None)
@given(path=st.sampled_from(LEAVES), data=st.data())
def test_any_change_to_any_field_fails(path: tuple[Any, ...], data: st.DataObject) -> None:
    doc = document()
    signature = sign(doc)
    tampered = copy.deepcopy(doc)
    parent = _get(tampered, path[:-1])
    action = data.draw(st.sampled_from(["change", "delete"]))
    if action == "change":
        parent[path[-1]] = _mutated(parent[path[-1]], data)
    elif isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent.pop(path[-1])
    assert tampered != doc
    assert not verify_document(tampered, signature, KEYS).ok


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    key=st.text(min_size=1, max_size=10),
    value=st.one_of(st.text(max_size=10), st.integers(), st.none(), st.booleans()),
)
def test_adding_a_field_anywhere_fails(data: st.DataObject, key: str, value: Any) -> None:
    doc = document()
    signature = sign(doc)
    tampered = copy.deepcopy(doc)
    dicts = [
        p
        for p in {(), *(leaf[:i] for leaf in LEAVES for i in range(1, len(leaf)))}
        if isinstance(_get(doc, p), dict)
    ]
    target = _get(tampered, data.draw(st.sampled_from(sorted(dicts, key=repr))))
    if key in target:
        key = key + "\u0001"
    target[key] = value
    assert not verify_document(tampered, signature, KEYS).ok


def test_check_codes_are_uniform_over_the_alphabet() -> None:
    """Every symbol turns up in every position (a code is one draw written in base 31)."""
    codes = [new_check_code() for _ in range(4000)]
    assert all(len(c) == CHECK_LENGTH and set(c) <= set(CHECK_ALPHABET) for c in codes)
    for position in range(CHECK_LENGTH):
        counts = Counter(c[position] for c in codes)
        assert set(counts) == set(CHECK_ALPHABET)
        # 4000 draws over 31 symbols: about 129 each; a fixed or skewed digit is far outside
        assert min(counts.values()) > 60 and max(counts.values()) < 220
    assert len(set(codes)) > 3990
