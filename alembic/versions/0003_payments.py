"""Payments: attempts (one settling attempt per notice), refunds, notifications, nonces.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
ATTEMPT_STATES = ("created", "redirected", "pending", "succeeded", "duplicate", "failed",
                  "expired", "cancelled")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def upgrade() -> None:
    op.create_table(
        "payment_attempts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("order_id", sa.String(32), nullable=False),
        sa.Column("notice_id", BigId, nullable=False),
        sa.Column("settles_notice_id", BigId, nullable=True),
        sa.Column("gateway", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(16), nullable=False),
        sa.Column("routing_reason", sa.String(300), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("late_fee", sa.BigInteger(), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("gateway_txn_id", sa.String(64), nullable=True),
        sa.Column("paid_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("journal_entry_id", BigId, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("state", ATTEMPT_STATES), name="ck_payment_attempts_state"),
        sa.CheckConstraint("amount > 0", name="ck_payment_attempts_amount_positive"),
        sa.CheckConstraint("amount = principal + late_fee", name="ck_payment_attempts_amount_sum"),
        sa.CheckConstraint("settles_notice_id IS NULL OR settles_notice_id = notice_id",
                           name="ck_payment_attempts_settles_own_notice"),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"],
                                name="fk_payment_attempts_notice_id_notices"),
        sa.ForeignKeyConstraint(["journal_entry_id"], ["journal_entries.id"],
                                name="fk_payment_attempts_journal_entry_id_journal_entries"),
        sa.PrimaryKeyConstraint("id", name="pk_payment_attempts"),
        sa.UniqueConstraint("order_id", name="uq_payment_attempts_order_id"),
        sa.UniqueConstraint("settles_notice_id", name="uq_payment_attempts_settles_notice_id"),
    )
    op.create_index("ix_payment_attempts_notice_id", "payment_attempts", ["notice_id"])
    op.create_index("ix_payment_attempts_state_updated_at", "payment_attempts",
                    ["state", "updated_at"])
    op.create_table(
        "refunds",
        sa.Column("id", BigId, nullable=False),
        sa.Column("refund_id", sa.String(32), nullable=False),
        sa.Column("notice_id", BigId, nullable=False),
        sa.Column("attempt_id", BigId, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.String(300), nullable=False),
        sa.Column("gateway_refund_id", sa.String(64), nullable=True),
        sa.Column("failure", sa.String(300), nullable=True),
        sa.Column("journal_entry_id", BigId, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(_in("state", ("submitted", "succeeded", "failed")),
                           name="ck_refunds_state"),
        sa.CheckConstraint(_in("kind", ("requested", "duplicate")), name="ck_refunds_kind"),
        sa.CheckConstraint("amount > 0", name="ck_refunds_amount_positive"),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"],
                                name="fk_refunds_notice_id_notices"),
        sa.ForeignKeyConstraint(["attempt_id"], ["payment_attempts.id"],
                                name="fk_refunds_attempt_id_payment_attempts"),
        sa.ForeignKeyConstraint(["journal_entry_id"], ["journal_entries.id"],
                                name="fk_refunds_journal_entry_id_journal_entries"),
        sa.PrimaryKeyConstraint("id", name="pk_refunds"),
        sa.UniqueConstraint("refund_id", name="uq_refunds_refund_id"),
    )
    op.create_index("ix_refunds_notice_id", "refunds", ["notice_id"])
    op.create_index("ix_refunds_attempt_id", "refunds", ["attempt_id"])
    op.create_table(
        "gateway_notifications",
        sa.Column("id", BigId, nullable=False),
        sa.Column("gateway", sa.String(32), nullable=False),
        sa.Column("event_id", sa.String(100), nullable=True),
        sa.Column("order_id", sa.String(32), nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_gateway_notifications"),
    )
    op.create_index("ix_gateway_notifications_order_id", "gateway_notifications", ["order_id"])
    op.create_table(
        "gateway_nonces",
        sa.Column("gateway", sa.String(32), nullable=False),
        sa.Column("nonce", sa.String(100), nullable=False),
        sa.Column("seen_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("gateway", "nonce", name="pk_gateway_nonces"),
    )


def downgrade() -> None:
    for table in ("gateway_nonces", "gateway_notifications", "refunds", "payment_attempts"):
        op.drop_table(table)
