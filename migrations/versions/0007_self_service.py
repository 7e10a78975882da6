"""member self-service: consents with time and IP, self-service charges

A member's consent to autopayment terms is stored as given (text version, a hash of the exact
text shown, language, time, IP address, browser). Charges the member starts from the
self-service pages (a card change, paying what is overdue) are not the month's charge: they are
excluded from the one-charge-per-subscription-and-month rule, and an overdue payment records
the months it covers.

Revision ID: 0007_self_service
Revises: 0004_recurring_engine
Create Date: 2026-11-23 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0007_self_service"
down_revision = "0004_recurring_engine"
branch_labels = None
depends_on = None

MONTHLY_KINDS = "kind IN ('initial', 'recurring')"


def upgrade() -> None:
    op.create_table(
        "member_consents",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("text_version", sa.String(length=64), nullable=False),
        sa.Column("text_sha256", sa.String(length=64), nullable=False),
        sa.Column("language", sa.String(length=8), nullable=False),
        sa.Column("accepted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ip_address", postgresql.INET(), nullable=True),
        sa.Column("user_agent", sa.String(length=512), nullable=True),
        sa.Column("source_type", sa.String(length=32), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_member_consents_member_id_members")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_member_consents")),
    )
    op.create_index(
        op.f("ix_member_consents_member_id"), "member_consents", ["member_id"], unique=False
    )
    op.add_column(
        "charges", sa.Column("covered_months", postgresql.ARRAY(sa.Date()), nullable=True)
    )
    op.drop_index("uq_charges_subscription_period", table_name="charges")
    op.create_index(
        "uq_charges_subscription_period",
        "charges",
        ["subscription_id", "period_month"],
        unique=True,
        postgresql_where=sa.text(MONTHLY_KINDS),
    )


def downgrade() -> None:
    op.drop_index("uq_charges_subscription_period", table_name="charges")
    # The old index cannot hold self-service charges beside the month's charge.
    op.execute(
        "DELETE FROM charge_attempts WHERE charge_id IN "
        "(SELECT id FROM charges WHERE kind NOT IN ('initial', 'recurring'))"
    )
    op.execute("DELETE FROM charges WHERE kind NOT IN ('initial', 'recurring')")
    op.create_index(
        "uq_charges_subscription_period",
        "charges",
        ["subscription_id", "period_month"],
        unique=True,
    )
    op.drop_column("charges", "covered_months")
    op.drop_index(op.f("ix_member_consents_member_id"), table_name="member_consents")
    op.drop_table("member_consents")
