"""Every model of every feature, so that Alembic and tests see the whole schema."""

from clearing.db import Base
from clearing.ledger import models as ledger_models  # noqa: F401

metadata = Base.metadata
