"""One notice and its lines in one statement on PostgreSQL, on the driver.

``POST /v1/notices`` writes one ``notices`` row and its ``notice_items``. Through SQLAlchemy
that was two statements; here it is one, ``WITH new_notice AS (INSERT ... ON CONFLICT
(payment_code) DO NOTHING RETURNING id) INSERT INTO notice_items SELECT new_notice.id, ...
FROM new_notice CROSS JOIN unnest(<one array per column>)``, run by
:func:`clearing.db.pg_execute` (docs/performance.md, "Single notices"). A payment code already
taken inserts neither the notice nor its lines, and the caller draws another code.

The SQL is generated once per set of columns from the tables themselves (names, types, which
columns are JSON), so a column added to the models is carried without editing SQL here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from psycopg.types.json import Json
from sqlalchemy import JSON, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from clearing.db import pg_execute
from notices.models import Notice, NoticeItem

_NOTICES: Table = Notice.__table__  # type: ignore[assignment]
_ITEMS: Table = NoticeItem.__table__  # type: ignore[assignment]


def insert_notice(
    session: Session, row: dict[str, Any], lines: Sequence[dict[str, Any]]
) -> int | None:
    """Insert the notice ``row`` and its ``lines`` (without ``notice_id``); the notice's id, or
    None when its payment code is taken (then nothing is inserted)."""
    notice_columns, line_columns = tuple(row), tuple(lines[0])
    sql, notice_json, line_json = _statement(notice_columns, line_columns)
    params = {f"n_{c}": Json(v) if c in notice_json else v for c, v in row.items()}
    for c in line_columns:
        values = [line[c] for line in lines]
        params[f"l_{c}"] = [json.dumps(v) for v in values] if c in line_json else values
    rows = pg_execute(session, sql, params)
    return rows[0][0] if rows else None


@lru_cache(maxsize=8)
def _statement(
    notice_columns: tuple[str, ...], line_columns: tuple[str, ...]
) -> tuple[str, frozenset[str], frozenset[str]]:
    """(SQL, the notice's JSON columns, the lines' JSON columns) for these columns."""
    notice_json = _json_columns(_NOTICES, notice_columns)
    line_json = _json_columns(_ITEMS, line_columns)
    # Each line column travels as one array of its column's type; JSON as text, cast per value.
    arrays = ", ".join(
        f"%(l_{c})s::{'TEXT' if c in line_json else _pg_type(_ITEMS, c)}[]" for c in line_columns
    )
    picked = ", ".join(f"lines.{c}::JSON" if c in line_json else f"lines.{c}" for c in line_columns)
    sql = (
        f"WITH new_notice AS (INSERT INTO notices ({', '.join(notice_columns)}) "
        f"VALUES ({', '.join(f'%(n_{c})s' for c in notice_columns)}) "
        "ON CONFLICT (payment_code) DO NOTHING RETURNING id), "
        f"new_lines AS (INSERT INTO notice_items (notice_id, {', '.join(line_columns)}) "
        f"SELECT new_notice.id, {picked} FROM new_notice "
        f"CROSS JOIN unnest({arrays}) AS lines ({', '.join(line_columns)}) RETURNING notice_id) "
        "SELECT id FROM new_notice"
    )
    return sql, notice_json, line_json


def _json_columns(table: Table, columns: tuple[str, ...]) -> frozenset[str]:
    return frozenset(c for c in columns if isinstance(table.c[c].type, JSON))


def _pg_type(table: Table, column: str) -> str:
    return table.c[column].type.compile(dialect=postgresql.dialect())
