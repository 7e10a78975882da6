"""row-level security beyond the member tables: webhooks, the audit log, shortfalls, subscription
history, consents and card bindings, and the ledger

Each policy is a cheap predicate: `vznos_org_visible(organization_id)` on an indexed owner
column, or, for a child row, an EXISTS on its parent's primary key (whose own policy applies
inside), as `charge_attempts` already does.

The ledger is the posting path, so it gets no per-row lookup on writes:
- `ledger_entries` is read by organisation (or, for a member who changed organisation, by the
  member) and written under a policy that only asks for an organisation context;
- `ledger_accounts` and `ledger_balances` have no organisation owner (an account belongs to a
  member, an organisation or the system, and a child's posting credits its ancestors' accounts
  through the shares): they are readable only inside some organisation context, which a raw
  connection as `vznos_app` does not have;
- `ledger_postings` gets no policy at all: the monthly accrual writes them with COPY, which
  PostgreSQL refuses on a table whose row-level security binds the writer. A posting alone
  holds an entry id, an account id and an amount, no member or organisation.

Background work binds no actor and so runs with `*` (every organisation), as before.

Revision ID: 0015_row_security_everywhere
Revises: 0013_ledger_statement_guards
Create Date: 2026-11-23 16:30:00
"""

from __future__ import annotations

from alembic import op

from core.access import row_security

revision = "0015_row_security_everywhere"
down_revision = "0013_ledger_statement_guards"
branch_labels = None
depends_on = None

BY_ORGANIZATION = {
    "webhook_endpoints": "organization_id",
    "payroll_shortfalls": "organization_id",
}
BY_MEMBER = {"member_consents": "member_id", "card_bindings": "member_id"}
# Child table → (column, parent table): visible with its parent row.
BY_PARENT = {
    "webhook_deliveries": ("endpoint_id", "webhook_endpoints"),
    "webhook_delivery_attempts": ("delivery_id", "webhook_deliveries"),
    "subscription_status_changes": ("subscription_id", "subscriptions"),
    "subscription_amount_changes": ("subscription_id", "subscriptions"),
}
EVERYTHING = "current_setting('vznos.org_ids', true) = '*'"
IN_CONTEXT = "coalesce(current_setting('vznos.org_ids', true), '') <> ''"
CONTEXT_ONLY = ("ledger_accounts", "ledger_balances")
AUDIT_VISIBLE = "vznos_org_visible(organization_id)"
ENTRY_VISIBLE = (
    "vznos_org_visible(organization_id)"
    " OR (member_id IS NOT NULL AND vznos_member_visible(member_id))"
)


def upgrade() -> None:
    for table, column in BY_ORGANIZATION.items():
        for statement in row_security(table, organization_column=column):
            op.execute(statement)
    for table, column in BY_MEMBER.items():
        for statement in row_security(table, member_column=column):
            op.execute(statement)
    for table, (column, parent) in BY_PARENT.items():
        parent_visible = f"EXISTS (SELECT 1 FROM {parent} p WHERE p.id = {column})"  # noqa: S608
        visible = f"{EVERYTHING} OR {parent_visible}"
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_by_organization ON {table}"
            f" USING ({visible}) WITH CHECK ({visible})"
        )
    # Read by organisation; appended in any organisation context: an audit row may be about
    # an organisation created in the same transaction (not yet in the caller's setting), and an
    # audit row must never be lost to a policy.
    for table, visible in (("ledger_entries", ENTRY_VISIBLE), ("audit_events", AUDIT_VISIBLE)):
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(f"CREATE POLICY {table}_by_organization ON {table} FOR SELECT USING ({visible})")
        op.execute(
            f"CREATE POLICY {table}_in_context ON {table} FOR INSERT WITH CHECK ({IN_CONTEXT})"
        )
    for table in CONTEXT_ONLY:
        op.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        op.execute(
            f"CREATE POLICY {table}_in_context ON {table}"
            f" USING ({IN_CONTEXT}) WITH CHECK ({IN_CONTEXT})"
        )


def downgrade() -> None:
    for table in CONTEXT_ONLY:
        op.execute(f"DROP POLICY {table}_in_context ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    for table in ("ledger_entries", "audit_events"):
        op.execute(f"DROP POLICY {table}_in_context ON {table}")
        op.execute(f"DROP POLICY {table}_by_organization ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
    for table in (*BY_PARENT, *BY_MEMBER, *BY_ORGANIZATION):
        op.execute(f"DROP POLICY {table}_by_organization ON {table}")
        op.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
