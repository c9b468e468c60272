"""Database engine, sessions and the transaction edge.

One request or one job is one transaction: application code flushes, the edge
(:func:`transaction`) commits. :func:`run_in_transaction` retries serialization failures and
deadlocks on PostgreSQL and "database is locked" on SQLite.
"""

from __future__ import annotations

import functools
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, MetaData, create_engine, event, make_url
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.expression import Executable

T = TypeVar("T")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """Declarative base of every model."""

    metadata = MetaData(naming_convention=NAMING)


def make_engine(url: str, *, echo: bool = False, pool_size: int = 10) -> Engine:
    """An engine for ``url``; SQLite gets foreign keys, WAL and write-intent transactions."""
    if url.startswith("sqlite"):
        _ensure_sqlite_dir(url)
        engine = create_engine(url, echo=echo, connect_args={"timeout": 30})
        _configure_sqlite(engine)
        return engine
    return create_engine(
        url, echo=echo, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True
    )


def _ensure_sqlite_dir(url: str) -> None:
    path = make_url(url).database
    if path and path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):  # type: ignore[no-untyped-def]
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):  # type: ignore[no-untyped-def]
        # Why IMMEDIATE: a deferred transaction that reads then writes fails at once with
        # SQLITE_BUSY under concurrency instead of waiting; IMMEDIATE takes the write lock first.
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


RETRYABLE_SQLSTATES = {"40001", "40P01"}  # serialization_failure, deadlock_detected


def is_retryable(exc: BaseException) -> bool:
    """A transient concurrency failure that a fresh transaction may not hit again."""
    if isinstance(exc, DBAPIError):
        sqlstate = getattr(exc.orig, "sqlstate", None)
        if sqlstate in RETRYABLE_SQLSTATES:
            return True
        if isinstance(exc, OperationalError) and "database is locked" in str(exc.orig):
            return True
    return False


@functools.cache
def pg_sql(statement: Executable) -> str:
    """A prebuilt Core ``statement`` compiled once for PostgreSQL and psycopg, as the SQL text
    :func:`pg_execute` takes: one source for both databases, the driver's cost on PostgreSQL.
    For statements whose parameters and columns need no SQLAlchemy type processing (no JSON
    parameters; the driver loads json columns itself)."""
    from sqlalchemy.dialects.postgresql.psycopg import PGDialect_psycopg

    return str(statement.compile(dialect=PGDialect_psycopg()))


def pg_execute(session: Session, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` (psycopg ``%(name)s`` parameters; a statement that returns rows) on the
    session's PostgreSQL connection, in its transaction, and return the rows.

    For the few fixed-shape statements of the hot paths (the settling capture, a single notice),
    whose cost is otherwise mostly SQLAlchemy's execution layer: about 48 us of client CPU per
    statement against 12 us on the driver (decision 0008). psycopg prepares a statement on the
    server once it has run 5 times on a connection. The engine's ``before_cursor_execute`` and
    ``after_cursor_execute`` listeners are called as SQLAlchemy calls them (a listener cannot
    rewrite the statement here). A driver error is raised as SQLAlchemy's
    :class:`DBAPIError`, as if SQLAlchemy had run the statement, so :func:`run_in_transaction`
    still retries deadlocks and serialization failures."""
    return pg_execute_on(session.connection(), sql, params)


def pg_execute_on(conn: Connection, sql: str, params: dict[str, Any]) -> list[tuple[Any, ...]]:
    """:func:`pg_execute` on a Core connection: in its transaction, or on its own when the
    connection comes from :func:`pg_autocommit`."""
    import psycopg  # only PostgreSQL gets here; SQLite needs no psycopg

    cur = _driver_cursor(conn, sql)
    # A companion's statements are reported to its application engine's listeners (tracing,
    # logging, tests), as if that engine had run them.
    owner = owner_engine(conn.engine)
    dispatch = conn.dispatch if owner is conn.engine else owner.dispatch
    events = conn._has_events or owner._has_events  # what SQLAlchemy itself checks
    try:
        if events:  # tracing, logging and tests see the statement as if SQLAlchemy ran it
            dispatch.before_cursor_execute(conn, cur, sql, params, None, False)
        cur.execute(sql, params)
        rows = cur.fetchall()  # not cur.description: it builds a Column per column
        if events:
            dispatch.after_cursor_execute(conn, cur, sql, params, None, False)
        return rows
    except psycopg.Error as exc:
        raise DBAPIError.instance(sql, params, exc, psycopg.Error) from exc


@contextmanager
def pg_autocommit(engine: Engine) -> Iterator[Connection]:
    """A PostgreSQL connection on which each :func:`pg_execute_on` statement is its own
    transaction: no ``BEGIN`` and no ``COMMIT``, two round trips fewer. For a caller whose one
    write is one statement (the optimistic capture, decision 0010).

    The connection comes from a companion pool of ``engine`` (:func:`autocommit_engine`): its
    connections are in the driver's autocommit for life, and it does not ping a connection at
    checkout. The caller must therefore treat a lost connection as a reason to do its work the
    ordinary way: its statements are one-statement transactions, so a failed one left nothing
    behind, and the ordinary path (pinged, in a transaction) looks again before it writes.
    :func:`discard_if_broken` drops such a connection from the pool."""
    with autocommit_engine(engine).connect() as conn:
        yield conn


def owner_engine(engine: Engine) -> Engine:
    """The application's engine of a companion (:func:`autocommit_engine`), else ``engine``."""
    owner = _parents.get(engine)
    parent = owner() if owner is not None else None
    return engine if parent is None else parent


def discard_if_broken(conn: Connection) -> None:
    """If ``conn``'s DBAPI connection is lost: invalidate it, and start its pool afresh (as
    SQLAlchemy does on a disconnect it detects itself): a lost connection most often means the
    server restarted or the network failed, and the other pooled connections are gone too."""
    driver = conn.connection.driver_connection
    if driver is None or driver.closed or getattr(driver, "broken", False):
        conn.invalidate()
        conn.engine.dispose()


_companions: weakref.WeakKeyDictionary[Engine, Engine] = weakref.WeakKeyDictionary()
_companions_lock = threading.Lock()
_parents: weakref.WeakKeyDictionary[Engine, weakref.ref[Engine]] = weakref.WeakKeyDictionary()
"""Companion -> its engine, both weakly: the engine keeps its companion alive (the dispose
listener), not the other way round."""


def autocommit_engine(engine: Engine) -> Engine:
    """The companion of a PostgreSQL ``engine`` for :func:`pg_autocommit`: the same database and
    pool size, ``isolation_level="AUTOCOMMIT"`` (set once per connection, when it opens), no
    pre-ping. Made on first use, one per engine, and disposed with it."""
    companion = _companions.get(engine)
    if companion is not None:
        return companion
    with _companions_lock:
        companion = _companions.get(engine)
        if companion is None:
            pool = engine.pool
            companion = create_engine(
                engine.url,
                echo=engine.echo,
                isolation_level="AUTOCOMMIT",
                pool_size=pool.size(),  # type: ignore[attr-defined]
                max_overflow=pool._max_overflow,  # type: ignore[attr-defined]
                pool_pre_ping=False,
            )
            _parents[companion] = weakref.ref(engine)
            event.listen(engine, "engine_disposed", lambda _e: companion.dispose())
            _companions[engine] = companion
    return companion


_CURSORS_KEY = "feishui.pg_execute.cursors"
_MAX_CURSORS = 32


def _driver_cursor(conn: Connection, sql: str) -> Any:
    """One psycopg cursor per statement and DBAPI connection, kept in the pool's record of the
    connection for its life. A cursor keeps its adaptation context (the dumper found for each
    parameter type, which is most of the cost of sending the settling capture's 45 parameters)
    only while it runs the same query object again: a cursor shared by two statements would
    look every dumper up again at each switch. The hot paths run a handful of fixed statements;
    past :data:`_MAX_CURSORS` the connection's cursors are closed and made anew. A connection
    is checked out to one thread at a time, and so are its cursors."""
    record = conn.connection
    driver = record.driver_connection
    cursors: dict[str, Any] = record.info.setdefault(_CURSORS_KEY, {})
    cur = cursors.get(sql)
    if cur is None or cur.closed or cur.connection is not driver:
        if len(cursors) >= _MAX_CURSORS:
            for old in cursors.values():
                old.close()
            cursors.clear()
        cur = cursors[sql] = driver.cursor()  # type: ignore[union-attr]
    return cur


def run_in_transaction(
    factory: sessionmaker[Session], work: Callable[[Session], T], *, attempts: int = 8
) -> T:
    """Run ``work`` in its own transaction, retrying transient concurrency failures."""
    for attempt in range(1, attempts + 1):
        try:
            with transaction(factory) as session:
                return work(session)
        except DBAPIError as exc:
            if not is_retryable(exc) or attempt == attempts:
                raise
            time.sleep(min(0.2, 0.005 * 2**attempt))
    raise AssertionError("unreachable")
