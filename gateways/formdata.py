"""Strict ``application/x-www-form-urlencoded`` decoding, shared by adapters and simulators."""

from __future__ import annotations

from urllib.parse import parse_qsl


def decode_form(body: bytes | str) -> dict[str, str]:
    """Decode a UTF-8 form body; raise ValueError on bad UTF-8, bad syntax or a repeated key."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    fields = dict(pairs)
    if len(fields) != len(pairs):
        raise ValueError("a form field is repeated")
    return fields
