"""``alembic check`` on a fresh SQLite file and a fresh PostgreSQL database.

Usage: python -m tests.check_migrations POSTGRES_URL
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from sqlalchemy import make_url

from clearing import migrate
from tests.support.databases import recreate_database


def fresh_postgres(url: str) -> str:
    target = make_url(url).set(database=make_url(url).database + "_migrations")
    target_url = target.render_as_string(hide_password=False)
    recreate_database(target_url)
    return target_url


def main(pg_url: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_url = f"sqlite:///{Path(tmp) / 'check.db'}"
        for name, url in (("SQLite", sqlite_url), ("PostgreSQL", fresh_postgres(pg_url))):
            migrate.upgrade(url)
            migrate.check(url)
            print(f"alembic check: models and migrations agree on {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
