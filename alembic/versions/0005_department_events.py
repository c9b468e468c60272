"""Department webhooks: endpoints, the events outbox and the delivery log.

See docs/decisions/0004-department-events-outbox.md.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "department_webhooks",
        sa.Column("id", BigId, nullable=False),
        sa.Column("department_id", BigId, nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("secret_enc", sa.String(200), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_department_webhooks"),
        sa.UniqueConstraint("department_id", name="uq_department_webhooks_department_id"),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"],
                                name="fk_department_webhooks_department_id_departments"),
    )
    op.create_table(
        "department_events",
        sa.Column("id", BigId, nullable=False),
        sa.Column("department_id", BigId, nullable=False),
        sa.Column("notice_id", BigId, nullable=False),
        sa.Column("type", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TZ, nullable=True),
        sa.Column("delivered_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_department_events"),
        sa.UniqueConstraint("notice_id", "type", name="uq_department_events_notice_id_type"),
        sa.CheckConstraint("type IN ('notice.paid', 'notice.refunded', 'notice.expired')",
                           name="ck_department_events_type"),
        sa.CheckConstraint("state IN ('pending', 'delivered', 'failed', 'no_webhook')",
                           name="ck_department_events_state"),
        sa.CheckConstraint("attempts >= 0", name="ck_department_events_attempts_not_negative"),
        sa.CheckConstraint("state <> 'pending' OR next_attempt_at IS NOT NULL",
                           name="ck_department_events_pending_is_scheduled"),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"],
                                name="fk_department_events_department_id_departments"),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"],
                                name="fk_department_events_notice_id_notices"),
    )
    op.create_index("ix_department_events_state_next_attempt_at", "department_events",
                    ["state", "next_attempt_at"])
    op.create_index("ix_department_events_department_id_id", "department_events",
                    ["department_id", "id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", BigId, nullable=False),
        sa.Column("event_id", BigId, nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(500), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("error", sa.String(500), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("started_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_webhook_deliveries"),
        sa.ForeignKeyConstraint(["event_id"], ["department_events.id"],
                                name="fk_webhook_deliveries_event_id_department_events"),
    )
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("department_events")
    op.drop_table("department_webhooks")
