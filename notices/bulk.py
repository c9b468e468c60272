"""Bulk inserts for batches of notices: ids allocated up front, rows loaded in one pass.

PostgreSQL loads rows with ``COPY … FROM STDIN`` (an order of magnitude faster than a
multi-row INSERT for thousands of rows, which psycopg must parse client-side) and takes ids
from the table's sequence. SQLite uses ``executemany`` and takes ids after ``max(id)``, which
is safe there because every transaction holds the database's write lock from its start
(``BEGIN IMMEDIATE``, see :mod:`clearing.db`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from sqlalchemy import JSON, Column, Table, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

_SQLITE_CHUNK = 500


def allocate_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` fresh primary keys for ``table``, reserved for this transaction."""
    if _is_postgres(session):
        query = text(
            "SELECT nextval(pg_get_serial_sequence(:table, 'id')) FROM generate_series(1, :count)"
        )
        return list(session.scalars(query, {"table": table.name, "count": count}))
    start = session.scalar(select(func.max(table.c.id))) or 0
    return list(range(start + 1, start + count + 1))


def existing_values(session: Session, column: Column[Any], values: Sequence[Any]) -> set[Any]:
    """Which of ``values`` are already in ``column`` (one array query on PostgreSQL)."""
    if _is_postgres(session):
        query = text(
            f"SELECT {column.name} FROM {column.table.name} "  # names from the model
            f"WHERE {column.name} = ANY(:values)"
        )
        return set(session.scalars(query, {"values": list(values)}))
    found: set[Any] = set()
    for start in range(0, len(values), _SQLITE_CHUNK):
        chunk = values[start : start + _SQLITE_CHUNK]
        found.update(session.scalars(select(column).where(column.in_(chunk))))
    return found


def insert_rows(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert ``rows`` (dicts keyed by column name, all with the same keys) into ``table``."""
    if not rows:
        return
    if _is_postgres(session):
        _copy(session, table, rows)
    else:
        session.execute(insert(table), list(rows))


def _copy(session: Session, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    columns = list(rows[0])
    json_columns = {c for c in columns if isinstance(table.c[c].type, JSON)}
    encode = _json_encoder()
    driver = session.connection().connection.driver_connection
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                copy.write_row([encode(row[c]) if c in json_columns else row[c] for c in columns])
    except psycopg.errors.IntegrityError as exc:
        # Raised by the driver directly: present it as SQLAlchemy would, so callers catch one type.
        raise IntegrityError(statement, None, exc) from exc


def _json_encoder() -> Callable[[Any], str]:
    """A JSON encoder that encodes each object once (rows often share one rule or share map).

    Keyed on identity, valid while the rows are alive: use one encoder per COPY only.
    """
    encoded: dict[int, str] = {}

    def encode(value: Any) -> str:
        text = encoded.get(id(value))
        if text is None:
            text = encoded[id(value)] = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return text

    return encode


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
