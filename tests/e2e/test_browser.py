"""The citizen portal in a real browser: headless Chromium (Debian's ``chromium`` package) driven
by Playwright, against a real uvicorn server on 127.0.0.1 with the gateway simulators mounted.

Nothing is faked: the adapters call the simulators over HTTP, the simulators deliver their
notifies over HTTP in a background thread, the gateway form is submitted by the page's own
JavaScript and the return page refreshes itself with its meta refresh.

Needs ``/usr/bin/chromium`` and the ``playwright`` package (the ``dev`` extra). Without them the
tests are skipped, except under ``CI=true`` where they fail. Playwright's own browser download is
never used (``executable_path``). Chinese text is drawn with the Noto Sans SC font that the
``pylopdf-fonts-zh-cn`` dependency ships (fontconfig is pointed at it), so the screenshots are
readable on a machine without CJK system fonts.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
import uvicorn
from sqlalchemy import select

from api.app import create_app
from clearing.config import Settings
from clearing.db import transaction
from clearing.payments.models import GatewayNotification
from clearing.runtime import build_runtime
from notices import catalogue
from notices.departments import create_department
from notices.service import today_in_shanghai
from tests.e2e.gateway_harness import install_keys

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PHONE = {"width": 390, "height": 844}
IN_CI = os.environ.get("CI", "").lower() == "true"
MISSING = [
    what
    for what, absent in (
        (f"{CHROMIUM} (apt-get install chromium)", not CHROMIUM.exists()),
        (
            "the playwright package (pip install -e '.[dev]')",
            not importlib.util.find_spec("playwright"),
        ),
    )
    if absent
]
REASON = "real-browser test needs " + " and ".join(MISSING)
pytestmark = pytest.mark.skipif(bool(MISSING) and not IN_CI, reason=REASON)

PAYER, MASKED = "张小三", "张*三"
TIMEOUT_MS = 20_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` in a background thread."""

    def __init__(self, app, port: int) -> None:
        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", access_log=False
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="uvicorn", daemon=True)

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def fonts_conf(tmp_path: Path) -> Path:
    """A fontconfig file: the system's fonts plus the Noto Sans SC shipped on PyPI."""
    spec = importlib.util.find_spec("pylopdf_fonts_zh_cn")
    extra = f"<dir>{Path(spec.origin).parent}</dir>" if spec and spec.origin else ""
    path = tmp_path / "fonts.conf"
    path.write_text(
        '<?xml version="1.0"?><!DOCTYPE fontconfig SYSTEM "fonts.dtd"><fontconfig>'
        f'<include ignore_missing="yes">/etc/fonts/fonts.conf</include>{extra}</fontconfig>',
        encoding="utf-8",
    )
    return path


@pytest.fixture
def browser_page(tmp_path: Path):
    """A page in a fresh headless Chromium profile with a phone-sized viewport."""
    if MISSING:  # only reached under CI=true: the module is skipped otherwise
        pytest.fail(REASON + " (CI=true: the browser is required)", pytrace=False)
    from playwright.sync_api import sync_playwright

    env = {**os.environ, "FONTCONFIG_FILE": str(fonts_conf(tmp_path))}
    with sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=str(CHROMIUM),
            headless=True,
            args=CHROMIUM_ARGS,
            env=env,
            viewport=PHONE,
            device_scale_factor=1,
            locale="zh-CN",
            timezone_id="Asia/Shanghai",
        )
        context.set_default_timeout(TIMEOUT_MS)
        try:
            yield context.pages[0] if context.pages else context.new_page()
        finally:
            context.close()


@pytest.fixture
def live(db, tmp_path: Path, gateway_pems) -> Iterator[tuple[str, dict, object]]:
    """The whole platform on a real port, and a notice issued through its API."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    var_dir = tmp_path / "var"
    var_dir.mkdir()
    install_keys(var_dir, gateway_pems)
    settings = Settings(database_url=db.url, var_dir=var_dir, env="test", public_base_url=base)
    runtime = build_runtime(settings)
    app = create_app(runtime)  # real HTTP everywhere: adapters -> simulators -> notifies
    with transaction(db.sessions) as s:
        catalogue.seed(s, catalogue.load_seed())
        key = create_department(s, "成都市公安局交通管理局", "510100", "police").full
    try:
        with LiveServer(app, port):
            notice = httpx.post(
                f"{base}/v1/notices",
                timeout=10,
                headers={"Authorization": f"Bearer {key}"},
                json={
                    "kind": "traffic_fine",
                    "payer": {"name": PAYER, "id_number": "11010519491231002X"},
                    "items": [{"item_code": "TF-RED-LIGHT"}],
                    "decision_date": (today_in_shanghai() - timedelta(days=3)).isoformat(),
                    "reference": "JT-2026-001",
                    "description": "闯红灯",
                },
            )
            assert notice.status_code == 201, notice.text
            yield base, notice.json(), app
            for simulator in simulators(app):  # let background notifies finish before stopping
                simulator.notifier.wait_idle(10)
    finally:
        runtime.engine.dispose()


def fits_the_phone(page) -> bool:
    """No horizontal scrolling on the phone-sized viewport."""
    return page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


def simulators(app) -> list:
    return [r.app.state.simulator for r in app.routes if getattr(r, "path", "").startswith("/sim/")]


def test_pay_in_a_browser_from_code_to_receipt(live, browser_page, db, tmp_path):
    base, notice, app = live
    code = notice["payment_code"]
    page = browser_page

    page.goto(f"{base}/pay")
    page.fill("input[name=code]", code)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/pay/{code}")
    main = page.locator("main")
    assert MASKED in main.inner_text() and PAYER not in page.content()
    assert "¥ 200.00" in page.locator("tr.total").inner_text()
    assert "缴款项目" in main.inner_text() and "built-in method" not in main.inner_text()
    assert fits_the_phone(page)
    page.screenshot(path=str(tmp_path / "notice.png"), full_page=True)

    # The wallet button; the page's script submits the signed form to the gateway (Alipay).
    page.click("button[name=go][value=wallet]")
    page.wait_for_url(re.compile(r"/sim/alipay/"))
    assert "支付宝" in page.title() and "¥200.00" in page.locator(".amount").inner_text()
    page.click("button[name=action][value=pay]")
    page.wait_for_url(re.compile(r"/pay/return/\w+"))
    order_id = re.search(r"/pay/return/(\w+)", page.url).group(1)

    # Paid at once (the return page asks the gateway) or after a meta refresh or two.
    page.wait_for_selector("#receipt", timeout=15_000)
    assert "支付成功" in page.locator("#status").inner_text()
    assert fits_the_phone(page)
    page.screenshot(path=str(tmp_path / "return.png"), full_page=True)
    page.click("#receipt")
    page.wait_for_url(re.compile(r"/receipts/\w+\?check="))
    receipt = page.locator("body").inner_text()
    assert MASKED in receipt and PAYER not in page.content()
    assert "电子签章有效 / e-seal valid" in receipt and "200.00" in receipt
    assert fits_the_phone(page)
    page.screenshot(path=str(tmp_path / "receipt.png"), full_page=True)

    # The simulator's notify reached the server over HTTP (in its background thread).
    assert all(s.notifier.wait_idle(10) for s in simulators(app))
    with transaction(db.sessions) as s:
        notifies = s.scalars(
            select(GatewayNotification.outcome).where(
                GatewayNotification.order_id == order_id,
                GatewayNotification.detail.like("notify:%"),
            )
        ).all()
    assert notifies and set(notifies) <= {"captured", "already_captured"}, notifies

    # The notice itself now says paid.
    page.goto(f"{base}/pay/{code}")
    assert "已缴清" in page.locator("main").inner_text()


def test_a_mistyped_code_is_caught_in_the_browser(live, browser_page, tmp_path):
    base, notice, _app = live
    code = notice["payment_code"]
    typo = code[:-1] + str((int(code[-1]) + 1) % 10)
    page = browser_page
    page.goto(f"{base}/pay")
    page.fill("input[name=code]", typo)
    page.click("button[type=submit]")
    page.wait_for_selector("p.error")
    error = page.locator("p.error").inner_text()
    assert "缴款码有误" in error and "mistyped" in error, error
    assert page.input_value("input[name=code]") == typo
    assert fits_the_phone(page)
    page.screenshot(path=str(tmp_path / "typo.png"), full_page=True)
