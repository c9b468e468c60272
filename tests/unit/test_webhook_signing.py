"""Webhook signatures as a receiving department checks them: tampering, replays, bad headers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from notices import events
from notices.webhook_signing import sign, verify_signature

SECRET = "whsec_test-secret"
NOW = datetime(2026, 11, 28, 2, 30, tzinfo=UTC)
T = int(NOW.timestamp())
BODY = b'{"data":{"payment_code":"51010026000000001234","principal":"200.00"},"id":1}'


def test_a_fresh_signature_verifies() -> None:
    header = sign(SECRET, BODY, T)
    assert header.startswith(f"t={T},v1=") and len(header.split("v1=")[1]) == 64
    assert verify_signature(SECRET, header, BODY, NOW)
    assert verify_signature(SECRET, header, BODY.decode(), NOW)  # str body: its UTF-8 bytes
    assert events.verify_signature is verify_signature  # re-exported where the feature lives


def test_a_tampered_body_fails() -> None:
    header = sign(SECRET, BODY, T)
    assert not verify_signature(SECRET, header, BODY.replace(b"200.00", b"2.00"), NOW)
    assert not verify_signature(SECRET, header, BODY + b" ", NOW)


def test_a_tampered_timestamp_or_wrong_secret_fails() -> None:
    mac = sign(SECRET, BODY, T).split("v1=")[1]
    assert not verify_signature(SECRET, f"t={T + 1},v1={mac}", BODY, NOW)
    assert not verify_signature("whsec_other", sign(SECRET, BODY, T), BODY, NOW)


def test_a_stale_or_future_timestamp_fails_outside_the_tolerance() -> None:
    header = sign(SECRET, BODY, T)
    assert verify_signature(SECRET, header, BODY, NOW + timedelta(seconds=300))
    assert not verify_signature(SECRET, header, BODY, NOW + timedelta(seconds=301))
    assert not verify_signature(SECRET, header, BODY, NOW - timedelta(seconds=301))
    assert verify_signature(SECRET, header, BODY, NOW + timedelta(hours=1), tolerance=3600)


def test_an_empty_secret_verifies_nothing() -> None:
    assert not verify_signature("", sign("", BODY, T), BODY, NOW)


def test_malformed_headers_fail_without_raising() -> None:
    mac = sign(SECRET, BODY, T).split("v1=")[1]
    for header in (
        None,
        "",
        "garbage",
        f"v1={mac}",
        f"t={T}",
        f"t=abc,v1={mac}",
        f"t=１２,v1={mac}",
        f"t={T},v1=é{mac[1:]}",
    ):
        assert not verify_signature(SECRET, header, BODY, NOW)


def test_any_of_several_v1_values_may_match() -> None:
    header = sign(SECRET, BODY, T) + ",v1=" + "0" * 64
    assert verify_signature(SECRET, header, BODY, NOW)
