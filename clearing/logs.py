"""Structured logs: one JSON object per line, a request id carried from HTTP into jobs, and
redaction of personal data and secrets from every record.

:func:`configure_logging` installs one handler on the root logger (uvicorn's, gunicorn's and
RQ's loggers propagate to it). Each record passes two filters before it is written:
:class:`ContextFilter` stamps ``request_id`` and ``job_id`` from context variables, and
:class:`RedactingFilter` masks resident ID numbers, API keys and tokens, webhook secrets, PEM
blocks and ``Authorization`` values in the message, its arguments, string extras and the
formatted traceback.
"""

from __future__ import annotations

import json as jsonlib
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

request_id_var: ContextVar[str | None] = ContextVar("feishui_request_id", default=None)
job_id_var: ContextVar[str | None] = ContextVar("feishui_job_id", default=None)

#: Loggers that servers configure with their own handlers; they are sent to ours instead.
SERVER_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "gunicorn.error",
    "gunicorn.access",
    "rq.worker",
)
_HANDLER_NAME = "feishui"
#: Attributes every LogRecord has; anything else on a record is an ``extra``.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "request_id",
    "job_id",
    "taskName",
}

# --------------------------------------------------------------------------- redaction

_ID_CHECK_WEIGHTS = [2 ** (17 - i) % 11 for i in range(17)]
_ID_NUMBER = re.compile(r"(?<![0-9A-Za-z])[0-9]{17}[0-9Xx](?![0-9A-Za-z])")
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----(?:.*?-----END [A-Z0-9 ]+-----|.*\Z)", re.S)
_API_KEY = re.compile(
    r"(?<![A-Za-z0-9])(fs_[a-z][a-z0-9]{0,15}_|fsu_)([0-9a-f]{8}_)?"
    r"[A-Za-z0-9_-]+"
)
_WEBHOOK_SECRET = re.compile(r"(?<![A-Za-z0-9])whsec_[A-Za-z0-9_-]+")
_AUTHORIZATION = re.compile(r"""(?i)(authorization["']?\s*(?:[:=]|,\s*b?)\s*["']?)[^"'\r\n,}\]]+""")
_BEARER = re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{12,}")
REDACTED = "[REDACTED]"


def id_check_char(first17: str) -> str:
    """The ISO 7064 MOD 11-2 check character of a resident ID number's first 17 digits."""
    total = sum(int(d) * w for d, w in zip(first17, _ID_CHECK_WEIGHTS, strict=True))
    return "10X98765432"[total % 11]


def _mask_id(match: re.Match[str]) -> str:
    # Why mask every 18-character shape, not only those whose check character matches: a
    # mistyped ID number is still a person's ID number. The valid ones are named as such.
    text = match.group(0)
    valid = id_check_char(text[:17]) == text[17].upper()
    return "[REDACTED:id_number]" if valid else "[REDACTED:id_number?]"


def _mask_key(match: re.Match[str]) -> str:
    # The scheme and the 8-hex-digit prefix are public (they name the key); the secret is not.
    return f"{match.group(1)}{match.group(2) or ''}{REDACTED}"


def redact(text: str) -> str:
    """``text`` with ID numbers, API keys, tokens, webhook secrets, PEM blocks and
    Authorization values masked."""
    if not text:
        return text
    text = _PEM.sub("[REDACTED:pem]", text)
    text = _AUTHORIZATION.sub(lambda m: m.group(1) + REDACTED, text)
    text = _BEARER.sub(lambda m: f"{m.group(1)} {REDACTED}", text)
    text = _API_KEY.sub(_mask_key, text)
    text = _WEBHOOK_SECRET.sub("whsec_" + REDACTED, text)
    return _ID_NUMBER.sub(_mask_id, text)


def redact_value(value: Any) -> Any:
    """A copy of ``value`` with every string in it redacted (dicts, lists and tuples walked)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(v) for v in value]
    return value


class RedactingFilter(logging.Filter):
    """Masks personal data and secrets in a record's message, arguments, extras and traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: keep both parts, redacted
            message = f"{record.msg} {record.args}"
        record.msg, record.args = redact(message), None
        for name, value in list(vars(record).items()):
            if name not in _STANDARD and isinstance(value, str | dict | list | tuple):
                setattr(record, name, redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class ContextFilter(logging.Filter):
    """Stamps ``request_id`` and ``job_id`` from the context onto each record."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id_var.get()
        if getattr(record, "job_id", None) is None:
            record.job_id = job_id_var.get()
        return True


# --------------------------------------------------------------------------- formatting


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, message, request_id, job_id, extras."""

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "job_id": getattr(record, "job_id", None),
        }
        doc.update((k, v) for k, v in vars(record).items() if k not in _STANDARD)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = record.exc_text
        if record.stack_info:
            doc["stack"] = record.stack_info
        return jsonlib.dumps(doc, ensure_ascii=False, default=str)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s %(job_id)s] %(message)s"


def make_handler(stream: TextIO | None = None, *, json: bool = True) -> logging.Handler:
    """A stream handler with the context and redaction filters and the chosen format."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.addFilter(ContextFilter())
    handler.addFilter(RedactingFilter())
    handler.setFormatter(JsonFormatter() if json else logging.Formatter(TEXT_FORMAT))
    return handler


def configure_logging(
    level: str | int = "INFO", json: bool = True, stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record, redacted and stamped, to one handler on the root logger.

    Idempotent: a handler from an earlier call is replaced. Servers' own loggers are emptied,
    re-enabled, given the root's level and made to propagate here, so that their lines are JSON
    and redacted too.
    """
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    handler = make_handler(stream, json=json)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    for name in SERVER_LOGGERS:
        server_logger = logging.getLogger(name)
        server_logger.handlers.clear()
        server_logger.propagate = True
        # An earlier dictConfig/fileConfig may have disabled it or set its own level: the
        # root level (FEISHUI_LOG_LEVEL) decides.
        server_logger.disabled = False
        server_logger.setLevel(logging.NOTSET)
    return handler


# --------------------------------------------------------------------------- context


def current_request_id() -> str | None:
    """The request id of the HTTP request or job being handled, if any."""
    return request_id_var.get()


@contextmanager
def bound(request_id: str | None = None, job_id: str | None = None) -> Iterator[None]:
    """Set the request and job ids for the duration of a block (jobs, CLI commands, tests)."""
    tokens = (request_id_var.set(request_id), job_id_var.set(job_id))
    try:
        yield
    finally:
        request_id_var.reset(tokens[0])
        job_id_var.reset(tokens[1])
