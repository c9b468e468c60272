"""Notices: departments, API keys, the catalogue, notices, notice items, idempotency keys.

Issuing a notice posts nothing to the ledger (docs/decisions/0002-notices-post-nothing-until-paid.md).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TZ = sa.DateTime(timezone=True)
KINDS = "kind IN ('traffic_fine', 'tuition', 'service_fee')"


def _fk(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([column], [f"{target}.id"],
                                   name=f"fk_{table}_{column}_{target}")


def upgrade() -> None:
    _departments_and_keys()
    _catalogue()
    _notices()
    _notice_items()
    _idempotency_keys()


def _departments_and_keys() -> None:
    op.create_table(
        "departments",
        sa.Column("id", BigId, nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("region_code", sa.String(6), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_departments"),
        sa.UniqueConstraint("name", name="uq_departments_name"),
        sa.CheckConstraint("kind IN ('police', 'school', 'agency')", name="ck_departments_kind"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", BigId, nullable=False),
        sa.Column("department_id", BigId, nullable=False),
        sa.Column("prefix", sa.String(8), nullable=False),
        sa.Column("secret_hash", sa.String(80), nullable=False),
        sa.Column("scopes", sa.String(200), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("revoked_at", TZ, nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("prefix", name="uq_api_keys_prefix"),
        _fk("api_keys", "department_id", "departments"),
    )
    op.create_index("ix_api_keys_department_id", "api_keys", ["department_id"])


def _catalogue() -> None:
    op.create_table(
        "catalogue_items",
        sa.Column("id", BigId, nullable=False),
        sa.Column("code", sa.String(32), nullable=False),
        sa.Column("name_zh", sa.String(200), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=True),
        sa.Column("max_amount", sa.BigInteger(), nullable=False),
        sa.Column("late_fee_rule", sa.JSON(), nullable=False),
        sa.Column("shares", sa.JSON(), nullable=False),
        sa.Column("revenue_code", sa.String(16), nullable=False),
        sa.Column("budget_level", sa.String(16), nullable=False),
        sa.Column("department_kinds", sa.JSON(), nullable=False),
        sa.Column("department_names", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_catalogue_items"),
        sa.UniqueConstraint("code", name="uq_catalogue_items_code"),
        sa.CheckConstraint(KINDS, name="ck_catalogue_items_kind"),
        sa.CheckConstraint("budget_level IN ('central', 'provincial', 'city', 'county')",
                           name="ck_catalogue_items_budget_level"),
        sa.CheckConstraint("amount IS NULL OR amount > 0",
                           name="ck_catalogue_items_amount_positive"),
        sa.CheckConstraint("max_amount > 0", name="ck_catalogue_items_max_amount_positive"),
    )


def _notices() -> None:
    op.create_table(
        "notices",
        sa.Column("id", BigId, nullable=False),
        sa.Column("department_id", BigId, nullable=False),
        sa.Column("payment_code", sa.String(20), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("principal", sa.BigInteger(), nullable=False),
        sa.Column("late_fee_rule", sa.JSON(), nullable=False),
        sa.Column("decision_date", sa.Date(), nullable=True),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=False),
        sa.Column("reference", sa.String(64), nullable=False),
        sa.Column("description", sa.String(500), nullable=False),
        sa.Column("payer_name_enc", sa.String(700), nullable=False),
        sa.Column("payer_name_masked", sa.String(100), nullable=False),
        sa.Column("payer_id_number_enc", sa.String(200), nullable=True),
        sa.Column("payer_id_number_masked", sa.String(32), nullable=True),
        sa.Column("payer_id_number_hash", sa.String(64), nullable=True),
        sa.Column("payer_phone_enc", sa.String(200), nullable=True),
        sa.Column("return_url", sa.String(500), nullable=True),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("updated_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notices"),
        sa.UniqueConstraint("payment_code", name="uq_notices_payment_code"),
        _fk("notices", "department_id", "departments"),
        sa.CheckConstraint(KINDS, name="ck_notices_kind"),
        sa.CheckConstraint(
            "status IN ('unpaid', 'paid', 'cancelled', 'expired', 'refunded')",
            name="ck_notices_status"),
        sa.CheckConstraint("principal > 0", name="ck_notices_principal_positive"),
        sa.CheckConstraint("expires_on >= due_date", name="ck_notices_expires_after_due"),
    )
    for columns in (["department_id", "id"], ["department_id", "reference"],
                    ["department_id", "created_at"], ["department_id", "due_date"],
                    ["status", "expires_on"], ["payer_id_number_hash"]):
        op.create_index(f"ix_notices_{'_'.join(columns)}", "notices", columns)


def _notice_items() -> None:
    op.create_table(
        "notice_items",
        sa.Column("id", BigId, nullable=False),
        sa.Column("notice_id", BigId, nullable=False),
        sa.Column("line_no", sa.Integer(), nullable=False),
        sa.Column("catalogue_item_id", BigId, nullable=False),
        sa.Column("item_code", sa.String(32), nullable=False),
        sa.Column("name_zh", sa.String(200), nullable=False),
        sa.Column("name_en", sa.String(200), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("shares", sa.JSON(), nullable=False),
        sa.Column("revenue_code", sa.String(16), nullable=False),
        sa.Column("budget_level", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notice_items"),
        sa.UniqueConstraint("notice_id", "line_no", name="uq_notice_items_notice_id_line_no"),
        _fk("notice_items", "notice_id", "notices"),
        _fk("notice_items", "catalogue_item_id", "catalogue_items"),
        sa.CheckConstraint("quantity > 0", name="ck_notice_items_quantity_positive"),
        sa.CheckConstraint("unit_amount > 0", name="ck_notice_items_unit_amount_positive"),
        sa.CheckConstraint("amount > 0", name="ck_notice_items_amount_positive"),
    )
    op.create_index("ix_notice_items_catalogue_item_id", "notice_items", ["catalogue_item_id"])


def _idempotency_keys() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column("id", BigId, nullable=False),
        sa.Column("department_id", BigId, nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("response_status", sa.Integer(), nullable=True),
        sa.Column("response_body", sa.JSON(), nullable=True),
        sa.Column("created_at", TZ, nullable=False),
        sa.Column("expires_at", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_idempotency_keys"),
        sa.UniqueConstraint("department_id", "key",
                            name="uq_idempotency_keys_department_id_key"),
        _fk("idempotency_keys", "department_id", "departments"),
        sa.CheckConstraint("state IN ('in_progress', 'completed')",
                           name="ck_idempotency_keys_state"),
    )
    op.create_index("ix_idempotency_keys_expires_at", "idempotency_keys", ["expires_at"])


def downgrade() -> None:
    for table in ("idempotency_keys", "notice_items", "notices", "catalogue_items",
                  "api_keys", "departments"):
        op.drop_table(table)
