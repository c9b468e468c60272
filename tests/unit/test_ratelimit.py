"""The per-key rate limit's pure parts: the rate setting and the bucket a request draws from."""

from __future__ import annotations

import pytest

from api.ratelimit import bucket_name, parse_rate
from clearing.apikeys import issue_key


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("100/1s", (100, 1.0)),
        ("5/s", (5, 1.0)),
        ("600/1m", (600, 60.0)),
        ("10/500ms", (10, 0.5)),
        (" 3 / 2h ", (3, 7200.0)),
        ("", None),
        ("  ", None),
    ],
)
def test_parse_rate(text, expected):
    assert parse_rate(text) == expected


@pytest.mark.parametrize("text", ["100", "0/1s", "x/1s", "10/1d", "10/0s"])
def test_parse_rate_refuses_nonsense(text):
    with pytest.raises(ValueError):
        parse_rate(text)


def test_one_bucket_per_key_named_by_its_prefix():
    key = issue_key()
    bucket = bucket_name(f"Bearer {key.full}", "10.0.0.1")
    assert bucket.startswith(f"fs_live:{key.prefix}:") and key.secret not in bucket
    assert bucket_name(f"bearer  {key.full} ", "10.0.0.2") == bucket


def test_a_guessed_secret_does_not_draw_from_the_owners_bucket():
    key = issue_key()
    forged = f"fs_live_{key.prefix}_" + "A" * 43
    assert bucket_name(f"Bearer {forged}", None) != bucket_name(f"Bearer {key.full}", None)


def test_finance_tokens_malformed_and_missing_credentials():
    assert bucket_name("Bearer fsu_0a1b2c3d_" + "y" * 43, None).startswith("fsu:0a1b2c3d:")
    assert bucket_name("Bearer nonsense", "10.0.0.9") == "client:10.0.0.9"
    assert bucket_name(None, "10.0.0.9") is None
    assert bucket_name("Basic dXNlcjpwYXNz", "10.0.0.9") is None
