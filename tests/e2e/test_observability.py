"""Operations over HTTP on SQLite and PostgreSQL: request ids, /metrics, health, the per-key
rate limit, security headers, and an end-to-end flow whose logs hold no ID number or key."""

from __future__ import annotations

import io
import json
import logging
import re

import pytest
from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.testclient import TestClient
from sqlalchemy import text

from api.app import create_app
from api.routers import health
from api.runtime import build_runtime
from clearing import logs
from clearing.config import Settings
from clearing.db import transaction
from clearing.errors import ConfigurationError
from notices import departments
from tests.notice_factories import ID_NUMBER, fine, seed_catalogue


def build(db, tmp_path, **settings):
    """The app exactly as create_app builds it (it installs the observability, the security
    headers and the rate limit)."""
    defaults = {
        "database_url": db.url,
        "var_dir": tmp_path,
        "env": "test",
        "public_base_url": "https://pay.example.cn",
    }
    return create_app(build_runtime(Settings(**{**defaults, **settings})))


@pytest.fixture
def key(db):
    with transaction(db.sessions) as s:
        seed_catalogue(s)
        return departments.create_department(s, "dept-police", "510100", "police").full


@pytest.fixture
def client(db, tmp_path, key):
    with TestClient(build(db, tmp_path)) as c:
        yield c


def auth(key):
    return {"Authorization": f"Bearer {key}"}


# --- request ids


def test_a_request_id_is_made_returned_and_echoed(client, key):
    made = client.get("/healthz").headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", made)
    given = client.get("/v1/catalogue", headers={"X-Request-Id": "abc-123", **auth(key)})
    assert given.headers["X-Request-Id"] == "abc-123"
    bad = client.get("/healthz", headers={"X-Request-Id": "x" * 200})
    assert bad.headers["X-Request-Id"] != "x" * 200


# --- metrics


def test_metrics_count_requests_by_route_template(client, key):
    created = client.post("/v1/notices", json=fine(), headers=auth(key))
    assert created.status_code == 201, created.text
    notice_id = created.json()["id"]
    assert client.get(f"/v1/notices/{notice_id}", headers=auth(key)).status_code == 200
    client.get("/no/such/path")
    client.get("/metrics")
    body = client.get("/metrics").text
    assert 'method="GET",route="/metrics",status="200"' in body
    assert 'route="/v1/notices/{notice_id}",status="200"' in body
    assert 'method="POST",route="/v1/notices",status="201"' in body
    assert 'route="unmatched",status="404"' in body
    assert f'/v1/notices/{notice_id}"' not in body


# --- health


def test_healthz_and_readyz(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.text
    assert ready.json()["checks"] == {"database": "ok", "migrations": "ok"}


def test_readyz_refuses_a_database_behind_the_code_but_not_one_ahead(db, client):
    (head,) = health.script_revisions()[0]
    try:
        for version, status in (("0006", 503), ("ffffffffffff", 200)):
            with db.engine.begin() as conn:
                conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": version})
            response = client.get("/readyz")
            assert response.status_code == status, response.text
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '0006'"))
        assert f"code expects ['{head}']" in client.get("/readyz").json()["reasons"][0]
    finally:
        with db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": head})


def test_readyz_names_an_unreachable_redis_and_database(db, tmp_path):
    app = build(db, tmp_path, redis_url="redis://127.0.0.1:1/0")
    with TestClient(app) as c:
        response = c.get("/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["redis"].startswith("unreachable")
    gone = build(db, tmp_path, database_url="postgresql+psycopg://nobody:pw@127.0.0.1:1/none")
    with TestClient(gone) as c:
        body = c.get("/readyz").json()
    assert body["checks"]["database"].startswith("unreachable") and "pw" not in json.dumps(body)


# --- rate limit


def test_each_key_has_its_own_bucket_and_429_says_when_to_retry(db, tmp_path, key):
    with transaction(db.sessions) as s:
        other = departments.create_department(s, "dept-school", "510100", "school").full
    with TestClient(build(db, tmp_path, api_rate="2/60s")) as c:
        assert [c.get("/v1/catalogue", headers=auth(key)).status_code for _ in range(2)] == [
            200,
            200,
        ]
        limited = c.get("/v1/catalogue", headers=auth(key))
        assert limited.status_code == 429
        assert limited.headers["content-type"] == "application/problem+json"
        assert limited.json()["type"].endswith("/rate-limited")
        assert 1 <= int(limited.headers["Retry-After"]) <= 30
        assert c.get("/v1/catalogue", headers=auth(other)).status_code == 200
        assert c.get("/healthz", headers=auth(key)).status_code == 200
        assert 'route="unmatched",status="429"' in c.get("/metrics").text


def test_a_nonsense_rate_refuses_to_start(db, tmp_path):
    with pytest.raises(ConfigurationError, match="FEISHUI_API_RATE"):
        build(db, tmp_path, api_rate="lots")


def test_an_empty_rate_disables_the_limit(db, tmp_path, key):
    with TestClient(build(db, tmp_path, api_rate="")) as c:
        assert {c.get("/v1/catalogue", headers=auth(key)).status_code for _ in range(5)} == {200}


# --- security headers


def test_html_gets_security_headers_and_https_gets_hsts(db, tmp_path):
    app = build(db, tmp_path)

    @app.get("/page", response_class=HTMLResponse)
    def page() -> str:
        return "<p>hi</p>"

    with TestClient(app) as c:
        html, api = c.get("/page"), c.get("/healthz")
    assert "frame-ancestors 'none'" in html.headers["Content-Security-Policy"]
    assert html.headers["X-Frame-Options"] == "DENY"
    assert "Content-Security-Policy" not in api.headers
    assert api.headers["Strict-Transport-Security"].startswith("max-age=")
    plain = build(db, tmp_path, public_base_url="http://127.0.0.1:8000")
    with TestClient(plain) as c:
        assert "Strict-Transport-Security" not in c.get("/healthz").headers
        assert "Strict-Transport-Security" in c.get("https://testserver/healthz").headers


# --- no personal data or secret in any log line


def test_an_end_to_end_flow_logs_neither_the_id_number_nor_the_key(db, tmp_path, key):
    app = build(db, tmp_path, sql_echo=True)

    @app.middleware("http")
    async def careless_debug_log(request: Request, call_next):  # what must never leak
        body = await request.body()
        logging.getLogger("tests.careless").debug(
            "request %s %s headers=%s body=%s",
            request.method,
            request.url.path,
            dict(request.headers),
            body.decode(),
        )
        return await call_next(request)

    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError(f"payer {ID_NUMBER} authorised with {key}")

    stream = io.StringIO()
    handler = logs.make_handler(stream)
    root = logging.getLogger()
    level, root.level = root.level, logging.DEBUG
    root.addHandler(handler)
    try:
        with TestClient(app, raise_server_exceptions=False) as c:
            created = c.post("/v1/notices", json=fine(), headers=auth(key))
            assert created.status_code == 201, created.text
            notice_id = created.json()["id"]
            assert c.get(f"/v1/notices/{notice_id}", headers=auth(key)).status_code == 200
            failed = c.get("/boom", headers=auth(key))
            assert failed.status_code == 500
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    output = stream.getvalue()
    assert len(lines) > 3
    assert ID_NUMBER not in output and key not in output
    assert key.split("_", 3)[3] not in output  # the secret part
    assert any("[REDACTED" in line["message"] for line in lines)
    crash = [line for line in lines if line["message"].startswith("unhandled error")]
    assert crash and crash[0]["request_id"] == failed.headers["X-Request-Id"]
    assert "RuntimeError" in crash[0]["exc"]
