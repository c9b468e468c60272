"""Receipts: the signed electronic receipts, append-only like the ledger.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

PG_FUNCTION = """
CREATE FUNCTION receipts_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'receipts are append-only: % on % is refused', TG_OP, TG_TABLE_NAME
    USING ERRCODE = 'restrict_violation',
          HINT = 'an issued receipt is published and signed; it is never changed';
END $$;
"""


def upgrade() -> None:
    op.create_table(
        "receipts",
        sa.Column("id", BigId, nullable=False),
        sa.Column("number", sa.String(32), nullable=False),
        sa.Column("check_code", sa.String(8), nullable=False),
        sa.Column("notice_id", BigId, nullable=False),
        sa.Column("attempt_id", BigId, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.Column("key_id", sa.String(32), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_receipts"),
        sa.UniqueConstraint("number", name="uq_receipts_number"),
        sa.UniqueConstraint("notice_id", name="uq_receipts_notice_id"),
        sa.UniqueConstraint("attempt_id", name="uq_receipts_attempt_id"),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.id"],
                                name="fk_receipts_notice_id_notices"),
        sa.ForeignKeyConstraint(["attempt_id"], ["payment_attempts.id"],
                                name="fk_receipts_attempt_id_payment_attempts"),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(PG_FUNCTION)
        op.execute("CREATE TRIGGER receipts_append_only BEFORE UPDATE OR DELETE ON receipts "
                   "FOR EACH ROW EXECUTE FUNCTION receipts_refuse_change()")
        op.execute("CREATE TRIGGER receipts_no_truncate BEFORE TRUNCATE ON receipts "
                   "FOR EACH STATEMENT EXECUTE FUNCTION receipts_refuse_change()")
    else:
        for op_name in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER receipts_no_{op_name.lower()} BEFORE {op_name} ON receipts "
                f"BEGIN SELECT RAISE(ABORT, 'receipts are append-only: {op_name} on receipts "
                "is refused'); END")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE receipts")
        op.execute("DROP FUNCTION receipts_refuse_change()")
    else:
        op.drop_table("receipts")
