"""member arrears as last announced: `member.arrears_changed` is raised when they change

Backfilled from the dues months, so the first posting after the upgrade announces a real change
with the right previous value instead of every member's arrears at once.

Revision ID: 0014_member_arrears
Revises: 0008_access
Create Date: 2026-11-23 16:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from core.access import row_security

revision = "0014_member_arrears"
down_revision = "0008_access"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_member_arrears",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("months_owed", sa.Integer(), nullable=False),
        sa.Column("owed_kopecks", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "months_owed >= 0 AND owed_kopecks >= 0",
            name=op.f("ck_ledger_member_arrears_owed_not_negative"),
        ),
        sa.ForeignKeyConstraint(
            ["member_id"], ["members.id"], name=op.f("fk_ledger_member_arrears_member_id_members")
        ),
        sa.PrimaryKeyConstraint("member_id", name=op.f("pk_ledger_member_arrears")),
    )
    op.execute(
        "INSERT INTO ledger_member_arrears (member_id, months_owed, owed_kopecks, updated_at)"
        " SELECT member_id, count(*), sum(accrued_kopecks - paid_kopecks), now()"
        " FROM ledger_dues_months WHERE paid_kopecks < accrued_kopecks GROUP BY member_id"
    )
    for statement in row_security("ledger_member_arrears", member_column="member_id"):
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP POLICY ledger_member_arrears_by_organization ON ledger_member_arrears")
    op.drop_table("ledger_member_arrears")
