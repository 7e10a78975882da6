"""unpaid dues months: a covering partial index for arrears reads

Revision ID: 0012
Revises: 0003
Create Date: 2026-11-23 13:30:00
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_ledger_dues_months_unpaid", table_name="ledger_dues_months")
    op.execute(
        "CREATE INDEX ix_ledger_dues_months_unpaid ON ledger_dues_months"
        " (member_id, period_month) INCLUDE (organization_id, accrued_kopecks, paid_kopecks)"
        " WHERE paid_kopecks < accrued_kopecks"
    )


def downgrade() -> None:
    op.drop_index("ix_ledger_dues_months_unpaid", table_name="ledger_dues_months")
    op.execute(
        "CREATE INDEX ix_ledger_dues_months_unpaid ON ledger_dues_months (member_id)"
        " WHERE paid_kopecks < accrued_kopecks"
    )
