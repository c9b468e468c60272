"""Structured logs: the JSON shape, request and job ids from the context, and redaction of
personal data and secrets in messages, arguments, extras and tracebacks."""

from __future__ import annotations

import io
import json
import logging

import pytest
from stdnum.cn import ric

from clearing import logs
from clearing.apikeys import issue_key

ID_NUMBER = "11010519491231002X"  # a valid check character
TYPO_ID = "110105194912310021"  # the same with a mistyped check character
PAYMENT_CODE = "51010026112000012345"  # 20 digits: not an ID number
PEM = (
    "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIHl0b3RhbGx5LXNlY3JldC1rZXktbWF0ZXJp\n"
    "-----END PRIVATE KEY-----"
)


@pytest.fixture
def capture():
    """A logger writing through the production handler into a buffer; returns (logger, read)."""
    stream = io.StringIO()
    handler = logs.make_handler(stream)
    logger = logging.getLogger("tests.logs")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.removeHandler(handler)


def test_check_character_agrees_with_stdnum():
    for number in (ID_NUMBER, "510104198803152314", "440524188001010014"):
        assert logs.id_check_char(number[:17]) == ric.calc_check_digit(number)


@pytest.mark.parametrize("text", [ID_NUMBER, ID_NUMBER.lower(), TYPO_ID])
def test_id_numbers_are_masked_valid_or_mistyped(text):
    out = logs.redact(f"payer {text} paid")
    assert text not in out and "[REDACTED:id_number" in out


def test_other_numbers_are_left_alone():
    text = f"code {PAYMENT_CODE} order 2026112812345678 amount 20000"
    assert logs.redact(text) == text


def test_api_keys_keep_only_their_public_prefix():
    issued = issue_key()
    user_token = "fsu_0a1b2c3d_" + "x" * 43
    out = logs.redact(f"key={issued.full} token {user_token}")
    assert issued.secret not in out and "x" * 43 not in out
    assert f"fs_live_{issued.prefix}_[REDACTED]" in out
    assert "fsu_0a1b2c3d_[REDACTED]" in out


def test_webhook_secrets_pem_blocks_and_authorization_are_masked():
    out = logs.redact("secret whsec_abcDEF123-_xyz and " + PEM + " done")
    assert "abcDEF123" not in out and "MC4CAQ" not in out and out.endswith(" done")
    truncated = logs.redact("key: -----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA")
    assert "MIIEp" not in truncated
    for header in (
        "Authorization: Basic dXNlcjpwYXNzd29yZA==",
        "{'authorization': 'Token abc.def.ghi'}",
        "[(b'authorization', b'Bearer abc.def.ghi')]",
        "headers Bearer eyJhbGciOiJIUzI1NiJ9.payload",
    ):
        out = logs.redact(header)
        assert "dXNlcjpw" not in out and "abc.def.ghi" not in out and "payload" not in out, out


def test_records_are_redacted_in_message_args_extras_and_traceback(capture):
    logger, read = capture
    issued = issue_key()
    key = issued.full
    logger.info(
        "creating notice for %s with %r",
        ID_NUMBER,
        {"Authorization": f"Bearer {key}"},
        extra={"payer": {"id_number": ID_NUMBER}, "note": key},
    )
    try:
        raise ValueError(f"bad payer {ID_NUMBER}")
    except ValueError:
        logger.exception("failed for %s", ID_NUMBER)
    text = json.dumps(read())
    assert ID_NUMBER not in text and key not in text and issued.secret not in text
    assert "ValueError" in text


def test_json_shape_and_context_ids(capture):
    logger, read = capture
    with logs.bound(request_id="req-1", job_id="job-9"):
        logger.warning("hello %s", "world", extra={"notice_id": 42})
    logger.info("outside")
    first, second = read()
    assert first["message"] == "hello world" and first["level"] == "WARNING"
    assert first["logger"] == "tests.logs" and first["notice_id"] == 42
    assert (first["request_id"], first["job_id"]) == ("req-1", "job-9")
    assert first["ts"].endswith("+00:00")
    assert second["request_id"] is None and second["job_id"] is None


def test_configure_logging_is_idempotent_and_takes_over_server_loggers():
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        stream = io.StringIO()
        access = logging.getLogger("uvicorn.access")
        access.disabled, access.level = True, logging.WARNING  # as an earlier dictConfig may
        logs.configure_logging("DEBUG", stream=stream)
        logs.configure_logging("INFO", stream=stream)
        ours = [h for h in root.handlers if h.get_name() == "feishui"]
        assert len(ours) == 1 and root.level == logging.INFO
        logging.getLogger("uvicorn.access").info("GET /x Authorization: Bearer abcdefghijklmnop")
        line = json.loads(stream.getvalue().splitlines()[-1])
        assert line["logger"] == "uvicorn.access" and "abcdefghijklmnop" not in line["message"]
    finally:
        for handler in [h for h in root.handlers if h.get_name() == "feishui"]:
            root.removeHandler(handler)
        root.handlers[:0] = [h for h in before[0] if h not in root.handlers]
        root.setLevel(before[1])


def test_text_format_carries_the_ids():
    stream = io.StringIO()
    handler = logs.make_handler(stream, json=False)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "id %s", (ID_NUMBER,), None)
    with logs.bound("req-7"):
        handler.handle(record)
    assert "[req-7 None] id [REDACTED:id_number]" in stream.getvalue()
