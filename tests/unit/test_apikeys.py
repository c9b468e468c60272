from __future__ import annotations

import hashlib
import re

import pytest

from clearing.apikeys import (
    IssuedKey,
    hash_password,
    hash_secret,
    issue_key,
    parse_key,
    password_needs_rehash,
    verify_password,
    verify_secret,
)
from clearing.errors import ValidationError


def test_issue_key_format():
    key = issue_key()
    assert isinstance(key, IssuedKey)
    assert re.fullmatch(r"[0-9a-f]{8}", key.prefix)
    assert len(key.secret) == 43
    assert key.full == f"fs_live_{key.prefix}_{key.secret}"
    assert issue_key("test").full.startswith("fs_test_")


def test_issued_keys_are_unique():
    keys = [issue_key() for _ in range(200)]
    assert len({k.secret for k in keys}) == 200
    assert len({k.full for k in keys}) == 200


def test_repr_hides_secret():
    key = issue_key()
    assert key.secret not in repr(key)


@pytest.mark.parametrize("env", ["", "Live", "li_ve", "prod-1", "1live"])
def test_bad_env(env):
    with pytest.raises(ValidationError):
        issue_key(env)


def test_parse_round_trip_including_underscores_in_secret():
    for _ in range(100):
        key = issue_key()
        assert parse_key(key.full) == (key.prefix, key.secret)
    secret = "_" * 10 + "-" * 10 + "a" * 23
    assert parse_key(f"fs_live_ab12cd34_{secret}") == ("ab12cd34", secret)
    assert parse_key(f"  fs_test_ab12cd34_{secret}\n") == ("ab12cd34", secret)


@pytest.mark.parametrize(
    "full",
    [
        "",
        "fs_live_ab12cd34",
        "xx_live_ab12cd34_" + "a" * 43,
        "fs_live_AB12CD34_" + "a" * 43,
        "fs_live_ab12cd3_" + "a" * 43,
        "fs_live_ab12cd34_" + "a" * 42,
        "fs_live_ab12cd34_" + "a" * 44,
        "fs_live_ab12cd34_" + "a" * 42 + "!",
        "fs__ab12cd34_" + "a" * 43,
        "Bearer fs_live_ab12cd34_" + "a" * 43,
    ],
)
def test_parse_malformed(full):
    with pytest.raises(ValidationError) as info:
        parse_key(full)
    if full:
        assert full not in info.value.detail


def test_hash_and_verify_secret():
    key = issue_key()
    stored = hash_secret(key.secret)
    assert stored == "sha256$" + hashlib.sha256(key.secret.encode()).hexdigest()
    assert verify_secret(key.secret, stored)
    assert not verify_secret(issue_key().secret, stored)
    assert not verify_secret(key.secret.upper(), stored)


@pytest.mark.parametrize(
    ("secret", "stored"),
    [
        ("", hash_secret("")),
        ("x", ""),
        ("", ""),
        ("x", "sha256$"),
        ("x", hashlib.sha256(b"x").hexdigest()),  # no scheme
        ("x", "md5$" + hashlib.sha256(b"x").hexdigest()),
        ("x", "sha256$" + hashlib.sha256(b"x").hexdigest().upper()),
        ("x", None),
        (None, hash_secret("x")),
        ("é", "sha256$é"),
    ],
)
def test_verify_secret_never_true_for_empty_or_bad(secret, stored):
    assert verify_secret(secret, stored) is False


def test_password_round_trip():
    stored = hash_password("correct horse battery staple")
    scheme, n, r, p, salt, digest = stored.split("$")
    assert (scheme, n, r, p) == ("scrypt", "16384", "8", "1")
    assert salt and digest
    assert verify_password("correct horse battery staple", stored)
    assert not verify_password("correct horse battery stapler", stored)
    assert not password_needs_rehash(stored)


def test_password_hash_is_salted():
    assert hash_password("pw") != hash_password("pw")


def test_unicode_password():
    stored = hash_password("密码-пароль")
    assert verify_password("密码-пароль", stored)


def test_empty_password():
    with pytest.raises(ValidationError):
        hash_password("")
    assert not verify_password("", hash_password("x"))


@pytest.mark.parametrize(
    "stored",
    [
        "",
        "scrypt$16384$8$1$AAAA",
        "bcrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$AAAA",
        "scrypt$16383$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,
        "scrypt$1073741824$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,
        "scrypt$16384$8$1$not-b64!$" + "A" * 44,
        "scrypt$16384$8$1$$" + "A" * 44,
        "scrypt$-16384$8$1$AAAAAAAAAAAAAAAAAAAAAA==$" + "A" * 44,
    ],
)
def test_verify_password_malformed_is_false(stored):
    assert verify_password("x", stored) is False
    assert password_needs_rehash(stored)


def test_weaker_params_still_verify_but_need_rehash():
    import base64

    salt = b"s" * 16
    digest = hashlib.scrypt(b"pw", salt=salt, n=2**10, r=8, p=1, dklen=32)
    b64 = base64.b64encode
    stored = f"scrypt$1024$8$1${b64(salt).decode()}${b64(digest).decode()}"
    assert verify_password("pw", stored)
    assert password_needs_rehash(stored)
