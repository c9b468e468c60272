"""Errors the domain raises. The API renders them as problem+json; the CLI as one line on stderr.

Each error has a stable ``type`` slug (used in problem+json ``type`` URIs) and a human ``detail``.
"""

from __future__ import annotations


class FeishuiError(Exception):
    """Base of every error feishui raises on purpose."""

    type: str = "error"
    status: int = 400

    def __init__(self, detail: str, *, field: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.field = field


class ValidationError(FeishuiError):
    """Input is malformed or breaks a rule; nothing was changed."""

    type = "validation-error"
    status = 422


class NotFound(FeishuiError):
    type = "not-found"
    status = 404


class Conflict(FeishuiError):
    """The request conflicts with the current state (e.g. cancelling a paid notice)."""

    type = "conflict"
    status = 409


class ConfigurationError(FeishuiError):
    """Settings are missing or unsafe; the process refuses to start."""

    type = "configuration-error"
    status = 500


class Unauthorized(FeishuiError):
    """No credentials, or credentials that are malformed, unknown or revoked."""

    type = "unauthorized"
    status = 401


class Forbidden(FeishuiError):
    """Valid credentials that do not grant what the request needs (e.g. a missing scope)."""

    type = "forbidden"
    status = 403
