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
from datetime import datetime
from operator import itemgetter
from typing import Any

import psycopg
from sqlalchemy import JSON, Column, DateTime, Table, func, insert, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

_SQLITE_CHUNK = 500
#: ``json.dumps(value, ensure_ascii=False, separators=(",", ":"))``, built once.
_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def allocate_ids(session: Session, table: Table, count: int) -> list[int]:
    """``count`` fresh primary keys for ``table``, reserved for this transaction."""
    if _is_postgres(session):
        # One array, not ``count`` rows: the driver reads it in one go, far cheaper client-side.
        query = text(
            "SELECT array(SELECT nextval(pg_get_serial_sequence(:table, 'id')) "
            "FROM generate_series(1, :count))"
        )
        return list(session.scalar(query, {"table": table.name, "count": count}))
    start = session.scalar(select(func.max(table.c.id))) or 0
    return list(range(start + 1, start + count + 1))


def existing_values(session: Session, column: Column[Any], values: Sequence[str]) -> set[str]:
    """Which of ``values`` (strings without commas, such as payment codes) are already in
    ``column`` (one query on PostgreSQL)."""
    if not values:
        return set()
    if _is_postgres(session):
        # One text parameter, split by the server: the driver formats an array parameter
        # element by element, which cost ten times the query itself for 10,000 codes.
        joined = ",".join(values)
        if joined.count(",") != len(values) - 1:
            raise ValueError("values must not contain commas")
        query = text(
            f"SELECT {column.name} FROM {column.table.name} "  # names from the model
            f"WHERE {column.name} = ANY(string_to_array(:values, ','))"
        )
        return set(session.scalars(query, {"values": joined}))
    found: set[str] = set()
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
    values_of = itemgetter(*columns) if len(columns) > 1 else lambda row: (row[columns[0]],)
    texts = _column_texts(table, columns)
    driver = session.connection().connection.driver_connection
    statement = f"COPY {table.name} ({', '.join(columns)}) FROM STDIN"
    try:
        with driver.cursor() as cursor, cursor.copy(statement) as copy:
            for row in rows:
                values = list(values_of(row))
                for index, text in texts:
                    values[index] = text(values[index])
                copy.write_row(values)
    except psycopg.errors.IntegrityError as exc:
        # Raised by the driver directly: present it as SQLAlchemy would, so callers catch one type.
        raise IntegrityError(statement, None, exc) from exc


def _column_texts(table: Table, columns: list[str]) -> list[tuple[int, Callable[[Any], Any]]]:
    """The columns whose values are turned into COPY text here, by position, and how.

    JSON values are encoded here (the driver does not adapt a dict). Timestamps too: the rows
    of a batch share one ``now``, which the driver would format again for every row.
    """
    texts: list[tuple[int, Callable[[Any], Any]]] = []
    for index, name in enumerate(columns):
        kind = table.c[name].type
        if isinstance(kind, JSON):
            texts.append((index, _json_encoder()))
        elif isinstance(kind, DateTime):
            texts.append((index, _timestamp_encoder()))
    return texts


def _json_encoder() -> Callable[[Any], str]:
    """A JSON encoder that encodes each object once (rows often share one rule or share map).

    Keyed on identity, valid while the rows are alive: use one encoder per COPY only.
    """
    encoded: dict[int, str] = {}

    def encode(value: Any) -> str:
        if type(value) is dict and not value:
            return "{}"  # most notices have no metadata: each is a distinct empty dict
        text = encoded.get(id(value))
        if text is None:
            text = encoded[id(value)] = _JSON.encode(value)
        return text

    return encode


def _timestamp_encoder() -> Callable[[datetime | None], str | None]:
    """ISO 8601 text of a timestamp (NULL stays NULL), formatted once per object.

    Keyed on identity, valid while the rows are alive: use one encoder per COPY only.
    """
    encoded: dict[int, str] = {}

    def encode(value: datetime | None) -> str | None:
        if value is None:
            return None
        text = encoded.get(id(value))
        if text is None:
            text = encoded[id(value)] = value.isoformat()
        return text

    return encode


def _is_postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"
