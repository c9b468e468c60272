"""ASGI factories for the HTTP benchmarks (``bench/notices.py``, ``bench/capture.py``).

    uvicorn --factory bench._apps:feishui_app # the real API, settings from FEISHUI_*
    uvicorn --factory bench._apps:bare_app # the baseline: bare FastAPI, one INSERT

``feishui_app`` is ``api.app.create_app`` on ``build_runtime(Settings())`` (the environment's
``FEISHUI_*`` settings), without the simulators (the benchmarks build notifies themselves).

``bare_app`` is the baseline: a minimal FastAPI app on the same driver and engine settings as the
application (``clearing.db.make_engine``: sync psycopg 3 through SQLAlchemy Core, pool_pre_ping),
with sync (thread-pool) endpoints like the application's:

- ``POST /bare``: parse a JSON object, INSERT it as one row into ``bare_rows``, answer 201 with
  the new id;
- ``POST /bare/batch``: a body ``{"notices": [...]}`` (validated as ``list[Any]`` like
  ``BatchCreate``), every element COPYed as one row into ``bare_rows`` in one transaction,
  answer the ids;
- ``GET /ping``.

The table is created by the benchmark (:data:`BARE_DDL`).
"""

from __future__ import annotations

import gc
import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from fastapi import FastAPI  # noqa: E402
from fastapi.responses import JSONResponse  # noqa: E402
from pydantic import BaseModel, Field  # noqa: E402
from sqlalchemy import text  # noqa: E402

BARE_DDL = """
CREATE TABLE IF NOT EXISTS bare_rows (
    id bigserial PRIMARY KEY,
    payload text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""


def feishui_app() -> FastAPI:
    """The application as served: ``create_app`` on the environment's settings."""
    from api.app import create_app
    from clearing.config import Settings
    from clearing.logs import configure_logging
    from clearing.runtime import build_runtime

    settings = Settings()
    configure_logging(settings.log_level, json=settings.log_json)
    app = create_app(build_runtime(settings), simulators=False)
    gc.freeze()  # as api/asgi.py does for the production server
    return app


class _Batch(BaseModel):
    notices: list[Any] = Field(min_length=1, max_length=10_000)


def bare_app() -> FastAPI:
    """The baseline: bare FastAPI, one INSERT (or one COPY) per request."""
    from clearing.db import make_engine

    engine = make_engine(os.environ["FEISHUI_DATABASE_URL"])
    insert = text("INSERT INTO bare_rows (payload) VALUES (:payload) RETURNING id")
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/ping")
    def ping() -> dict[str, str]:
        return {"ok": "pong"}

    @app.post("/bare", status_code=201)
    def bare(body: dict[str, Any]) -> JSONResponse:
        with engine.begin() as conn:
            new_id = conn.execute(
                insert, {"payload": json.dumps(body, ensure_ascii=False)}
            ).scalar_one()
        return JSONResponse({"id": new_id}, status_code=201)

    @app.post("/bare/batch")
    def bare_batch(body: _Batch) -> JSONResponse:
        with engine.begin() as conn:
            ids = list(
                conn.execute(
                    text(
                        "SELECT nextval(pg_get_serial_sequence('bare_rows', 'id')) "
                        "FROM generate_series(1, :n)"
                    ),
                    {"n": len(body.notices)},
                ).scalars()
            )
            driver = conn.connection.driver_connection
            with driver.cursor() as cur, cur.copy("COPY bare_rows (id, payload) FROM STDIN") as cp:
                for id_, item in zip(ids, body.notices, strict=True):
                    cp.write_row((id_, json.dumps(item, ensure_ascii=False)))
        return JSONResponse({"results": [{"index": i, "id": id_} for i, id_ in enumerate(ids)]})

    gc.freeze()  # the same treatment as feishui_app
    return app
