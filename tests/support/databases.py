"""Scratch PostgreSQL databases for tests and the migration check."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import make_url, text

from clearing.db import make_engine


def _on_server(url: str, *statements: str) -> None:
    """Run ``statements`` in autocommit on the ``postgres`` database of ``url``'s server."""
    server = make_url(url).set(database="postgres")
    admin = make_engine(server.render_as_string(hide_password=False))
    try:
        with admin.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for statement in statements:
                conn.execute(text(statement))
    finally:
        admin.dispose()


def recreate_database(url: str) -> None:
    """Drop (connections and all) and create the database ``url`` names: empty, no tables."""
    name = make_url(url).database
    _on_server(url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)', f'CREATE DATABASE "{name}"')


def drop_database(url: str) -> None:
    _on_server(url, f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')


@contextmanager
def empty_database(
    kind: str,
    base_url: str,
    tmp_path: Path,
    name: str,
    *,
    unavailable: Callable[[str, Exception], None],
) -> Iterator[str]:
    """An empty database of its own (no tables), for a test that migrates it up and down: a
    SQLite file under ``tmp_path``, or the PostgreSQL database ``<base_url's>_<name>`` on
    ``base_url``'s server, dropped afterwards. ``unavailable`` is called (and is expected to
    raise: fail or skip) when the PostgreSQL database cannot be made."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / f'{name}.db'}"
        return
    target = make_url(base_url)
    target_url = target.set(database=f"{target.database}_{name}").render_as_string(
        hide_password=False
    )
    try:
        recreate_database(target_url)
    except Exception as exc:
        unavailable("PostgreSQL", exc)
    try:
        yield target_url
    finally:
        drop_database(target_url)
