"""Every model of every feature, so that Alembic and tests see the whole schema."""

from clearing import audit_models  # noqa: F401
from clearing.db import Base
from clearing.ledger import models as ledger_models  # noqa: F401
from clearing.payments import models as payments_models  # noqa: F401
from notices import event_models as events_models  # noqa: F401
from notices import models as notices_models  # noqa: F401
from notices import receipt_models  # noqa: F401
from reconciliation import models as reconciliation_models  # noqa: F401

metadata = Base.metadata
