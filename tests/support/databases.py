"""Scratch PostgreSQL databases for tests and the migration check."""

from __future__ import annotations

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
