"""The process's wiring: settings -> engine -> session factory, built once per process."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from clearing.config import Settings, get_settings
from clearing.db import make_engine, make_sessionmaker


@dataclass(frozen=True)
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]


def build_runtime(settings: Settings) -> Runtime:
    settings.check_production()
    engine = make_engine(settings.effective_database_url(), echo=settings.sql_echo)
    return Runtime(settings, engine, make_sessionmaker(engine))


@lru_cache(maxsize=1)
def get_runtime() -> Runtime:
    return build_runtime(get_settings())
