from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from clearing.errors import ConfigurationError, FeishuiError, ValidationError
from clearing.pii import (
    KeyRing,
    PiiError,
    hash_id_number,
    mask_id_number,
    mask_name,
    validate_id_number,
)

K1 = KeyRing.generate_setting("k1")
K2 = KeyRing.generate_setting("k2")
SAMPLE_ID = "11010519491231002X"


@pytest.fixture
def ring() -> KeyRing:
    return KeyRing.from_setting(K1)


def test_round_trip(ring):
    token = ring.encrypt(SAMPLE_ID)
    assert token.startswith("v1.k1.")
    assert SAMPLE_ID not in token
    assert ring.decrypt(token) == SAMPLE_ID


@given(st.text())
def test_round_trip_any_text(text):
    ring = KeyRing.from_setting(K1)
    assert ring.decrypt(ring.encrypt(text, aad=b"x"), aad=b"x") == text


def test_nonce_is_random(ring):
    a, b = ring.encrypt("same"), ring.encrypt("same")
    assert a != b
    assert len(base64.urlsafe_b64decode(a.split(".")[2] + "==")) == 12


def _flip(token: str, part: int, index: int) -> str:
    parts = token.split(".")
    raw = bytearray(base64.urlsafe_b64decode(parts[part] + "=" * (-len(parts[part]) % 4)))
    raw[index] ^= 0x01
    parts[part] = base64.urlsafe_b64encode(bytes(raw)).rstrip(b"=").decode()
    return ".".join(parts)


@pytest.mark.parametrize(("part", "index"), [(3, 0), (3, -1), (2, 0)])
def test_tamper_detected(ring, part, index):
    token = ring.encrypt(SAMPLE_ID)
    with pytest.raises(PiiError):
        ring.decrypt(_flip(token, part, index))


def test_aad_mismatch(ring):
    token = ring.encrypt(SAMPLE_ID, aad=b"payer:1:id_number")
    assert ring.decrypt(token, aad=b"payer:1:id_number") == SAMPLE_ID
    with pytest.raises(PiiError):
        ring.decrypt(token, aad=b"payer:2:id_number")
    with pytest.raises(PiiError):
        ring.decrypt(token)


@pytest.mark.parametrize(
    "token", ["", "v1.k1.abc", "v2.k1.AAAAAAAAAAAAAAAA.AAAAAAAAAAAAAAAAAAAAAA", "v1.k1.!!.??"]
)
def test_malformed_tokens(ring, token):
    with pytest.raises(PiiError):
        ring.decrypt(token)


def test_rotation():
    old = KeyRing.from_setting(K1)
    token = old.encrypt(SAMPLE_ID)
    new = KeyRing.from_setting(f"{K2},{K1}")
    assert new.primary == "k2"
    assert new.key_ids == ("k2", "k1")
    assert new.decrypt(token) == SAMPLE_ID
    assert new.needs_rotation(token)
    assert not old.needs_rotation(token)
    rotated = new.reencrypt(token)
    assert rotated.startswith("v1.k2.")
    assert not new.needs_rotation(rotated)
    assert new.decrypt(rotated) == SAMPLE_ID


def test_unknown_key_id():
    token = KeyRing.from_setting(K2).encrypt(SAMPLE_ID)
    with pytest.raises(PiiError, match="unknown key id"):
        KeyRing.from_setting(K1).decrypt(token)
    assert issubclass(PiiError, FeishuiError)


def test_setting_accepts_urlsafe_base64_and_spaces():
    key = bytes(range(200, 232))
    setting = f" k1 : {base64.urlsafe_b64encode(key).decode().rstrip('=')} "
    ring = KeyRing.from_setting(setting)
    assert ring.decrypt(ring.encrypt("x")) == "x"


@pytest.mark.parametrize(
    "setting",
    [
        "",
        "k1",
        "k1:",
        "k1:not base64!",
        f"k1:{base64.b64encode(b'short').decode()}",
        f"k1:{base64.b64encode(bytes(33)).decode()}",
        f"k.1:{base64.b64encode(bytes(32)).decode()}",
        f"{K1},{K1}",
        f"{K1},",
    ],
)
def test_malformed_settings(setting):
    with pytest.raises(ConfigurationError):
        KeyRing.from_setting(setting)


def test_key_material_not_in_repr_or_errors():
    ring = KeyRing.from_setting(K1)
    assert K1.split(":")[1] not in repr(ring)
    bad = "k1:" + base64.b64encode(bytes(31)).decode()
    with pytest.raises(ConfigurationError) as info:
        KeyRing.from_setting(bad)
    assert bad.split(":")[1] not in str(info.value)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("510104199001011234", "5101**********1234"),
        (SAMPLE_ID, "1101**********002X"),
        ("510104900101123", "5*************3"),
        ("1234", "1**4"),
        ("123", "1**"),
        ("12", "1*"),
        ("1", "*"),
        ("", ""),
    ],
)
def test_mask_id_number(value, masked):
    assert mask_id_number(value) == masked


@given(st.text(alphabet="0123456789X", max_size=30))
def test_mask_id_number_never_reveals_more_than_half(value):
    masked = mask_id_number(value)
    assert len(masked) == len(value)
    revealed = sum(ch != "*" for ch in masked)
    assert revealed <= len(value) // 2
    assert revealed <= 8


@pytest.mark.parametrize(
    ("name", "masked"),
    [
        ("张三", "张*"),
        ("张小三", "张*三"),
        ("欧阳小明", "欧**明"),
        ("李", "*"),
        ("Li", "L*"),
        ("L", "*"),
        ("John Smith", "J*** S****"),
        ("  John  Smith ", "J***  S****"),
        ("John F Kennedy", "J*** * K******"),
        ("", ""),
    ],
)
def test_mask_name(name, masked):
    assert mask_name(name) == masked


def test_valid_id_number_accepted_and_normalised():
    assert validate_id_number(SAMPLE_ID) == SAMPLE_ID
    assert validate_id_number("11010519491231002x") == SAMPLE_ID
    assert validate_id_number(" 110105 19491231 002X ") == SAMPLE_ID


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("110105194912310021", "check character"),
        ("110105194912310020", "check character"),
        ("11010519491231002", "18 characters"),
        ("1101051949123100X2", "17 digits"),
        ("１１０１０５１９４９１２３１００２X", "17 digits"),
        ("110105194913310021", "birth date"),
    ],
)
def test_invalid_id_number_refused(value, reason):
    with pytest.raises(ValidationError, match=reason) as info:
        validate_id_number(value, field="payer.id_number")
    assert info.value.field == "payer.id_number"


def test_id_number_with_bad_date_has_matching_check_digit():
    # guards the test above: its only defect is the month 13
    from stdnum.cn import ric

    assert ric.calc_check_digit("110105194913310021") == "1"


def test_hash_id_number():
    pepper = b"p" * 32
    h = hash_id_number(SAMPLE_ID, pepper)
    assert len(h) == 64
    assert h == hash_id_number("11010519491231002x", pepper)
    assert h != hash_id_number(SAMPLE_ID, b"q" * 32)
    with pytest.raises(ConfigurationError):
        hash_id_number(SAMPLE_ID, b"")
    with pytest.raises(ConfigurationError):
        hash_id_number(SAMPLE_ID, b"short")


def test_the_vaults_repr_shows_neither_keys_nor_pepper():
    import os

    from clearing.pii import KeyRing
    from notices.privacy import PayerVault

    key, pepper = os.urandom(32), os.urandom(32)
    text = repr(PayerVault(KeyRing({"k1": key}, "k1"), pepper))
    assert pepper.hex() not in text and repr(pepper) not in text
    assert key.hex() not in text and repr(key) not in text
