"""Remittances: a day may have top-up batches (``sequence``), for settlements that arrive late.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-29

``sequence`` is 1 for the day's first batch (every existing row) and counts up for each top-up.
The unique key moves from (treasury, business_date) to (treasury, business_date, sequence).
Expand-compatible: the old release writes sequence 1 through the server default, and the new key
refuses what the old one refused for those rows.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("remittances") as batch:
        batch.add_column(
            sa.Column("sequence", sa.Integer(), nullable=False, server_default=sa.text("1"))
        )
        batch.drop_constraint("uq_remittances_treasury_business_date", type_="unique")
        batch.create_unique_constraint(
            "uq_remittances_treasury_business_date_sequence",
            ["treasury", "business_date", "sequence"],
        )
        batch.create_check_constraint("ck_remittances_sequence_positive", "sequence >= 1")


def downgrade() -> None:
    op.execute("DELETE FROM remittances WHERE sequence > 1")  # top-ups cannot be kept
    with op.batch_alter_table("remittances") as batch:
        batch.drop_constraint("ck_remittances_sequence_positive", type_="check")
        batch.drop_constraint("uq_remittances_treasury_business_date_sequence", type_="unique")
        batch.create_unique_constraint(
            "uq_remittances_treasury_business_date", ["treasury", "business_date"]
        )
        batch.drop_column("sequence")
