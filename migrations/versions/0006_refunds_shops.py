"""refunds and one shop per organisation

Revision ID: 0006_refunds_shops
Revises: 0012
Create Date: 2026-11-23 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0006_refunds_shops"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "refunds",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("charge_id", sa.Uuid(), nullable=False),
        sa.Column("attempt_id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("gateway_payment_id", sa.String(length=64), nullable=False),
        sa.Column("amount_kopecks", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(length=3), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("request_body", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("gateway_refund_id", sa.String(length=64), nullable=True),
        sa.Column("cancellation_party", sa.String(length=32), nullable=True),
        sa.Column("cancellation_reason", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=False),
        sa.Column("client_key", sa.String(length=200), nullable=True),
        sa.Column("client_request_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("submitted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("settled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("checks", sa.SmallInteger(), nullable=False),
        sa.CheckConstraint("amount_kopecks > 0", name=op.f("ck_refunds_amount_positive")),
        sa.CheckConstraint(
            "status IN ('created', 'submitting', 'pending', 'succeeded', 'canceled')",
            name=op.f("ck_refunds_status_known"),
        ),
        sa.ForeignKeyConstraint(
            ["attempt_id"],
            ["charge_attempts.id"],
            name=op.f("fk_refunds_attempt_id_charge_attempts"),
        ),
        sa.ForeignKeyConstraint(
            ["charge_id"], ["charges.id"], name=op.f("fk_refunds_charge_id_charges")
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_refunds_member_id_members")
        ),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_refunds_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refunds")),
        sa.UniqueConstraint("gateway_refund_id", name=op.f("uq_refunds_gateway_refund_id")),
    )
    op.create_index("ix_refunds_charge_id", "refunds", ["charge_id", "created_at"], unique=False)
    op.create_index(
        "uq_refunds_charge_client_key", "refunds", ["charge_id", "client_key"], unique=True
    )
    op.create_index(
        "ix_refunds_open_due",
        "refunds",
        ["next_check_at"],
        unique=False,
        postgresql_where=sa.text("status IN ('created', 'submitting', 'pending')"),
    )
    op.create_table(
        "gateway_shops",
        sa.Column("shop_id", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("secret_sealed", sa.String(length=1000), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_gateway_shops_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("shop_id", name=op.f("pk_gateway_shops")),
    )
    op.create_index(
        "uq_gateway_shops_one_active_per_org",
        "gateway_shops",
        ["organization_id"],
        unique=True,
        postgresql_where=sa.text("active"),
    )


def downgrade() -> None:
    op.drop_index("uq_gateway_shops_one_active_per_org", table_name="gateway_shops")
    op.drop_table("gateway_shops")
    op.drop_index("ix_refunds_open_due", table_name="refunds")
    op.drop_index("uq_refunds_charge_client_key", table_name="refunds")
    op.drop_index("ix_refunds_charge_id", table_name="refunds")
    op.drop_table("refunds")
