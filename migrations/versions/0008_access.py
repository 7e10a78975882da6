"""access: API key scopes, expiry and rotation; treasurers; the audit log; row-level security

Row-level security binds `vznos_app` (neither owner nor superuser): member-owned rows are
visible only to a transaction whose `vznos.org_ids` setting names their organisation (`*` for
the application's own background work; unset, nothing). The audit log is append-only like the
journal.

Revision ID: 0008_access
Revises: 0005_standby
Create Date: 2026-11-23 13:30:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from core.access import VISIBILITY_FUNCTIONS, row_security

revision = "0008_access"
down_revision = "0005_standby"
branch_labels = None
depends_on = None

EVERY_SCOPE = (
    "members:write",
    "subscriptions:write",
    "payments:read",
    "refunds:write",
    "reconciliation:write",
    "webhooks:manage",
    "admin",
)

# Member-owned tables and the column that says whose they are.
OWNED_BY_ORGANIZATION = {
    "members": "organization_id",
    "subscriptions": "organization_id",
    "charges": "organization_id",
    "ledger_dues_months": "organization_id",
    "refunds": "organization_id",
}
OWNED_BY_MEMBER = {"payment_methods": "member_id", "member_dues_plans": "member_id"}

AUDIT_GUARDS = [
    """
    CREATE FUNCTION audit_forbid_change() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'audit log is append-only: % on % refused', TG_OP, TG_TABLE_NAME
            USING ERRCODE = 'insufficient_privilege';
    END $$
    """,
    """
    CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events
        FOR EACH ROW EXECUTE FUNCTION audit_forbid_change()
    """,
    "REVOKE UPDATE, DELETE, TRUNCATE ON audit_events FROM vznos_app",
]


def upgrade() -> None:
    op.add_column(
        "api_keys",
        sa.Column(
            "scopes",
            postgresql.ARRAY(sa.String(length=40)),
            nullable=False,
            server_default=sa.text("ARRAY[" + ", ".join(f"'{s}'" for s in EVERY_SCOPE) + "]"),
        ),
    )
    op.alter_column("api_keys", "scopes", server_default=None)
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("replaced_by_id", sa.Uuid(), nullable=True))
    op.create_foreign_key(
        op.f("fk_api_keys_replaced_by_id_api_keys"),
        "api_keys",
        "api_keys",
        ["replaced_by_id"],
        ["id"],
    )
    op.create_table(
        "treasurers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("login", sa.String(length=100), nullable=False),
        sa.Column("display_name", sa.String(length=300), nullable=False),
        sa.Column("password_hash", sa.String(length=200), nullable=False),
        sa.Column("totp_secret", sa.String(length=64), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("scopes", postgresql.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_treasurers_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treasurers")),
        sa.UniqueConstraint("login", name=op.f("uq_treasurers_login")),
    )
    op.create_index(
        op.f("ix_treasurers_organization_id"), "treasurers", ["organization_id"], unique=False
    )
    op.create_table(
        "treasurer_sessions",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("treasurer_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["treasurer_id"],
            ["treasurers.id"],
            name=op.f("fk_treasurer_sessions_treasurer_id_treasurers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_treasurer_sessions")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_treasurer_sessions_token_hash")),
    )
    op.create_index(
        op.f("ix_treasurer_sessions_treasurer_id"),
        "treasurer_sessions",
        ["treasurer_id"],
        unique=False,
    )
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.Uuid(), nullable=True),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=True),
        sa.Column("subject_type", sa.String(length=40), nullable=False),
        sa.Column("subject_id", sa.String(length=128), nullable=False),
        sa.Column("details", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name=op.f("fk_audit_events_organization_id_organizations"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_events")),
        sa.UniqueConstraint("sequence", name=op.f("uq_audit_events_sequence")),
    )
    op.create_index(
        "ix_audit_events_organization_sequence",
        "audit_events",
        ["organization_id", "sequence"],
        unique=False,
    )
    for statement in AUDIT_GUARDS + VISIBILITY_FUNCTIONS:
        op.execute(statement)
    for table, column in OWNED_BY_ORGANIZATION.items():
        for statement in row_security(table, organization_column=column):
            op.execute(statement)
    for table, column in OWNED_BY_MEMBER.items():
        for statement in row_security(table, member_column=column):
            op.execute(statement)
    # An attempt is visible with its charge (whose own policy applies inside the subquery).
    op.execute("ALTER TABLE charge_attempts ENABLE ROW LEVEL SECURITY")
    attempt_visible = (
        "current_setting('vznos.org_ids', true) = '*'"
        " OR EXISTS (SELECT 1 FROM charges c WHERE c.id = charge_id)"
    )
    op.execute(
        "CREATE POLICY charge_attempts_by_organization ON charge_attempts"
        f" USING ({attempt_visible}) WITH CHECK ({attempt_visible})"
    )


def downgrade() -> None:
    op.execute("DROP POLICY charge_attempts_by_organization ON charge_attempts")
    op.execute("ALTER TABLE charge_attempts DISABLE ROW LEVEL SECURITY")
    for table in (*OWNED_BY_ORGANIZATION, *OWNED_BY_MEMBER):
        op.execute(f"DROP POLICY {table}_by_organization ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    op.execute("DROP FUNCTION vznos_member_visible(uuid)")
    op.execute("DROP FUNCTION vznos_org_visible(uuid)")
    op.drop_table("audit_events")
    op.execute("DROP FUNCTION audit_forbid_change()")
    op.drop_index(op.f("ix_treasurer_sessions_treasurer_id"), table_name="treasurer_sessions")
    op.drop_table("treasurer_sessions")
    op.drop_index(op.f("ix_treasurers_organization_id"), table_name="treasurers")
    op.drop_table("treasurers")
    op.drop_constraint(op.f("fk_api_keys_replaced_by_id_api_keys"), "api_keys", type_="foreignkey")
    op.drop_column("api_keys", "replaced_by_id")
    op.drop_column("api_keys", "expires_at")
    op.drop_column("api_keys", "scopes")
