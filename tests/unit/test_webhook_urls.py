"""Which webhook URLs a department may set: https, http to this machine only outside production."""

from __future__ import annotations

import pytest

from clearing.errors import ValidationError
from notices.events import check_url


@pytest.mark.parametrize(
    "url",
    [
        "https://dept.example.cn/feishui/events",
        "  https://dept.example.cn:8443/hooks?x=1  ",
        "http://127.0.0.1:9000/hooks",
        "http://localhost/hooks",
        "https://127.0.0.1/hooks",
    ],
)
def test_accepted_outside_production(url: str) -> None:
    assert check_url(url, production=False) == url.strip()


@pytest.mark.parametrize(
    "url",
    [
        "http://dept.example.cn/hooks",
        "ftp://dept.example.cn/hooks",
        "dept.example.cn/hooks",
        "https://",
        "https://user:pass@dept.example.cn/hooks",
        "https://dept.example.cn/hooks#frag",
        "https://dept.example.cn/" + "a" * 500,
    ],
)
def test_refused_everywhere(url: str) -> None:
    for production in (False, True):
        with pytest.raises(ValidationError):
            check_url(url, production=production)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hooks",
        "https://localhost/hooks",
        "https://127.0.0.1/hooks",
        "https://10.1.2.3/hooks",
        "https://192.168.0.10/hooks",
        "https://169.254.169.254/latest/meta-data",
        "https://[::1]/hooks",
    ],
)
def test_internal_addresses_refused_in_production(url: str) -> None:
    with pytest.raises(ValidationError):
        check_url(url, production=True)
    assert check_url("https://dept.example.cn/hooks", production=True)
