"""Outgoing HTTP for adapters: transport failures and 5xx become GatewayUnavailable."""

from __future__ import annotations

from typing import Any

import httpx

from gateways.protocol import GatewayUnavailable


def send(http: httpx.Client, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request; raise :class:`GatewayUnavailable` on a timeout, network error or 5xx."""
    try:
        response = http.request(method, url, **kwargs)
    except httpx.HTTPError as exc:
        raise GatewayUnavailable(f"{method} {url} failed: {exc}") from exc
    if response.status_code >= 500:
        raise GatewayUnavailable(f"{method} {url} answered {response.status_code}")
    return response
