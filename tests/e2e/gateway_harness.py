"""Shared harness for the gateway conformance tests: keys, a fake clock, a notify receiver,
and an adapter wired to its simulator mounted at ``/sim/<name>`` as ``feishui serve`` does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fastapi import FastAPI, Request, Response
from fastapi.testclient import TestClient

from clearing.config import Settings
from gateways import keys, signing
from gateways.nonces import MemoryNonceStore
from gateways.protocol import (
    PaymentGateway,
    PaymentRequest,
    PaymentResult,
    RawRequest,
    Redirect,
    VerificationError,
)
from gateways.registry import build_gateways
from gateways.simulators import create_simulator
from gateways.simulators.base import Simulator

BASE = "http://testserver"
START = datetime(2026, 11, 27, 2, 1, 2, tzinfo=UTC)  # 10:01:02 in Asia/Shanghai


class FakeClock:
    """A clock the test moves by hand; shared by the adapter and the simulator."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def install_keys(var_dir: Path, pems: dict[str, dict[str, bytes]]) -> None:
    """Write session-cached key pairs where gateways.keys looks for them (mode 0600)."""
    for gateway, files in pems.items():
        directory = var_dir / "keys" / gateway
        directory.mkdir(parents=True, exist_ok=True)
        for filename, data in files.items():
            (directory / filename).write_bytes(data)
            (directory / filename).chmod(0o600)


def generate_pems() -> dict[str, dict[str, bytes]]:
    pems: dict[str, dict[str, bytes]] = {}
    for gateway in ("alipay", "wechatpay", "unionpay"):
        pems[gateway] = {}
        for side in ("merchant", "gateway"):
            key = signing.generate_private_key()
            pems[gateway][f"{side}_private.pem"] = signing.private_key_pem(key)
            pems[gateway][f"{side}_public.pem"] = signing.public_key_pem(key.public_key())
    return pems


@dataclass
class Receiver:
    """The platform's notify endpoint, reduced to: parse with the adapter, answer with its ack.

    The first ``fail_first`` deliveries are answered with ``ack(False)`` (the gateway retries).
    """

    adapter: PaymentGateway
    fail_first: int = 0
    raw: list[RawRequest] = field(default_factory=list)
    results: list[PaymentResult] = field(default_factory=list)
    errors: list[VerificationError] = field(default_factory=list)

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.post("/notify/{gateway}")
        async def notify(request: Request) -> Response:
            raw = RawRequest(
                request.method,
                {k.lower(): v for k, v in request.headers.items()},
                await request.body(),
                request.url.query,
            )
            self.raw.append(raw)
            accepted = len(self.raw) > self.fail_first and self._accept(raw)
            ack = self.adapter.ack(accepted)
            return Response(ack.body, ack.status_code, media_type=ack.media_type)

        return app

    def _accept(self, raw: RawRequest) -> bool:
        try:
            self.results.append(self.adapter.parse_notify(raw))
        except VerificationError as exc:
            self.errors.append(exc)
            return False
        return True


@dataclass
class Harness:
    name: str
    settings: Settings
    clock: FakeClock
    adapter: PaymentGateway
    receiver: Receiver
    sim: Simulator
    client: TestClient
    nonces: MemoryNonceStore

    @property
    def base(self) -> str:
        return f"{BASE}/sim/{self.name}"

    def request(
        self, order_id: str, amount_fen: int = 8888, subject: str = "交通罚款"
    ) -> PaymentRequest:
        return PaymentRequest(
            order_id=order_id,
            amount_fen=amount_fen,
            subject=subject,
            notify_url=f"{BASE}/notify/{self.name}",
            return_url=f"{BASE}/return/{order_id}",
            expires_at=self.clock() + timedelta(hours=2),
        )

    def open_checkout(self, redirect: Redirect) -> str:
        """What the payer's browser does with a Redirect; returns the page's HTML."""
        if redirect.method == "POST":
            response = self.client.post(redirect.url, data=dict(redirect.fields))
        else:
            response = self.client.get(redirect.url)
        assert response.status_code == 200, response.text
        return response.text

    def checkout(self, order_id: str, amount_fen: int = 8888) -> str:
        return self.open_checkout(self.adapter.start(self.request(order_id, amount_fen)))

    def act(self, order_id: str, action: str) -> Response:
        return self.client.post(
            f"{self.base}/checkout/{order_id}", data={"action": action}, follow_redirects=False
        )

    def pay(self, order_id: str, amount_fen: int = 8888, action: str = "pay") -> None:
        self.checkout(order_id, amount_fen)
        response = self.act(order_id, action)
        assert response.status_code in (200, 303), response.text

    def fresh_notify(self, order_id: str) -> RawRequest:
        """The order's notify exactly as the simulator would send it now, not delivered."""
        order = self.sim.book.get(order_id)
        assert order is not None
        _, headers, body = self.sim.build_notify(order)
        return RawRequest("POST", {k.lower(): v for k, v in headers.items()}, body)

    def gateway_key(self) -> signing.PrivateKey:
        return keys.private_key(self.settings, self.name, "gateway")


def make_harness(
    name: str,
    tmp_path: Path,
    pems: dict[str, dict[str, bytes]],
    *,
    inline: bool = True,
    retry_delays: Sequence[float] = (0, 0, 0),
    fail_first: int = 0,
    gateway_options: dict[str, dict[str, str]] | None = None,
) -> Harness:
    settings = Settings(
        var_dir=tmp_path, public_base_url=BASE, env="test", gateway_options=gateway_options or {}
    )
    install_keys(tmp_path, pems)
    clock = FakeClock()
    host = FastAPI()
    client = TestClient(host, base_url=BASE)
    nonces = MemoryNonceStore()
    adapter = build_gateways(settings, http=client, nonce_store=nonces, clock=clock)[name]
    receiver = Receiver(adapter, fail_first=fail_first)
    sim_app = create_simulator(
        name,
        settings,
        notify_client=TestClient(receiver.app(), base_url=BASE),
        deliver_notifies_inline=inline,
        retry_delays=retry_delays,
        clock=clock,
    )
    host.mount(f"/sim/{name}", sim_app)
    return Harness(
        name, settings, clock, adapter, receiver, sim_app.state.simulator, client, nonces
    )
