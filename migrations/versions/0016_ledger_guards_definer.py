"""the journal's guards see every row, whatever the caller's row-level security

The statement check on `ledger_postings` joins `ledger_entries` and `ledger_accounts`, which
migration 0015 put under row-level security. Run as the caller, a treasurer's narrower view
would make an entry or account it cannot read look missing, and a correct posting be refused.
A guard must judge the books as they are, so its functions run as their owner.

Revision ID: 0016_ledger_guards_definer
Revises: 0015_row_security_everywhere
Create Date: 2026-11-23 17:36:00
"""

from __future__ import annotations

from alembic import op

revision = "0016_ledger_guards_definer"
down_revision = "0015_row_security_everywhere"
branch_labels = None
depends_on = None

GUARDS = ("ledger_postings_balanced()", "ledger_entry_posted()")


def upgrade() -> None:
    for function in GUARDS:
        op.execute(f"ALTER FUNCTION {function} SECURITY DEFINER SET search_path = public")


def downgrade() -> None:
    for function in GUARDS:
        op.execute(f"ALTER FUNCTION {function} SECURITY INVOKER RESET search_path")
