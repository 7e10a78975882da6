"""ledger guards per statement, not per row; a maintained arrears summary per member

The journal's guards stay in the database but cost a few statements per batch instead of three
PL/pgSQL calls per entry:

- every INSERT into `ledger_postings` is checked once, after the statement, over all rows it
  wrote: each entry it touched was written by this same transaction (`created_xact`), has at
  least two postings and sums to zero per currency, and each posting is in its account's
  currency. So an entry's postings go in with one statement (all of them), and nothing can be
  added to an entry once its transaction has committed;
- every INSERT into `ledger_entries` is checked once that its rows carry the transaction's own
  id, so `created_xact` cannot be forged to reopen an old entry;
- at commit, one deferred call per entry checks only that the entry has postings at all (the
  statement check already proved any entry with postings balanced).

`ledger_arrears_summary` keeps, per member and organisation, the months owed and their kopecks:
recomputed from `ledger_dues_months` by a statement trigger for the members each statement
touched, so every writer keeps it right; `vznos ledger check` compares it with the months.

Revision ID: 0013_ledger_statement_guards
Revises: 0014_member_arrears
Create Date: 2026-11-23 16:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013_ledger_statement_guards"
down_revision = "0014_member_arrears"
branch_labels = None
depends_on = None

GUARDS = [
    "DROP TRIGGER ledger_postings_balanced ON ledger_postings",
    "DROP TRIGGER ledger_entries_balanced ON ledger_entries",
    "DROP FUNCTION ledger_entry_balanced()",
    "DROP TRIGGER ledger_postings_currency ON ledger_postings",
    "DROP FUNCTION ledger_posting_currency()",
    # The statement check below proves both references for every posting inserted, at one
    # join per statement instead of two foreign-key lookups per row; entries already can be
    # neither changed nor removed, and accounts now cannot either.
    "ALTER TABLE ledger_postings DROP CONSTRAINT fk_ledger_postings_entry_id_ledger_entries",
    "ALTER TABLE ledger_postings DROP CONSTRAINT fk_ledger_postings_account_id_ledger_accounts",
    """
    CREATE TRIGGER ledger_accounts_append_only BEFORE UPDATE OR DELETE ON ledger_accounts
        FOR EACH ROW EXECUTE FUNCTION ledger_forbid_change()
    """,
    "REVOKE UPDATE, DELETE, TRUNCATE ON ledger_accounts FROM vznos_app",
    """
    CREATE FUNCTION ledger_entries_own_transaction() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF EXISTS (
            SELECT 1 FROM new_entries WHERE created_xact IS DISTINCT FROM txid_current()
        ) THEN
            RAISE EXCEPTION 'a journal entry''s created_xact must be the transaction writing it'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER ledger_entries_own_transaction AFTER INSERT ON ledger_entries
        REFERENCING NEW TABLE AS new_entries
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_entries_own_transaction()
    """,
    """
    CREATE FUNCTION ledger_postings_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        entry uuid;
        missing boolean;
        late boolean;
        unbalanced boolean;
    BEGIN
        -- Every posting names an account that exists, in the account's currency (this check
        -- stands in for the foreign key; accounts can be neither changed nor removed).
        SELECT p.entry_id, a.id IS NULL INTO entry, missing FROM new_postings p
            LEFT JOIN ledger_accounts a ON a.id = p.account_id
            WHERE a.id IS NULL OR a.currency <> p.currency LIMIT 1;
        IF FOUND AND missing THEN
            RAISE EXCEPTION 'a posting of entry % names an unknown account', entry
                USING ERRCODE = 'foreign_key_violation';
        ELSIF FOUND THEN
            RAISE EXCEPTION 'a posting of entry % differs from its account''s currency', entry
                USING ERRCODE = 'check_violation';
        END IF;
        -- Every entry touched exists, was written by this transaction, and its postings in
        -- this statement are at least two and sum to zero per currency...
        SELECT x.entry_id, e.id IS NULL, e.created_xact IS DISTINCT FROM txid_current(),
            x.unbalanced INTO entry, missing, late, unbalanced
            FROM (
                SELECT s.entry_id, sum(s.n) AS n, bool_or(s.total <> 0) AS unbalanced FROM (
                    SELECT entry_id, count(*) AS n, sum(amount_kopecks) AS total
                    FROM new_postings GROUP BY entry_id, currency
                ) s GROUP BY s.entry_id
            ) x
            LEFT JOIN ledger_entries e ON e.id = x.entry_id
            WHERE x.unbalanced OR x.n < 2 OR e.id IS NULL
                OR e.created_xact IS DISTINCT FROM txid_current()
            LIMIT 1;
        IF FOUND AND missing THEN
            RAISE EXCEPTION 'postings name an unknown journal entry %', entry
                USING ERRCODE = 'foreign_key_violation';
        ELSIF FOUND AND late THEN
            RAISE EXCEPTION 'journal entry % was posted by an earlier transaction', entry
                USING ERRCODE = 'check_violation', HINT = 'post a new entry instead';
        ELSIF FOUND AND unbalanced THEN
            RAISE EXCEPTION 'journal entry % does not balance', entry
                USING ERRCODE = 'check_violation';
        ELSIF FOUND THEN
            RAISE EXCEPTION 'journal entry % has fewer than two postings', entry
                USING ERRCODE = 'check_violation';
        END IF;
        -- ...and they are all its postings: none came in an earlier statement.
        IF (SELECT count(*) FROM ledger_postings
            WHERE entry_id IN (SELECT entry_id FROM new_postings))
            <> (SELECT count(*) FROM new_postings) THEN
            RAISE EXCEPTION 'an entry''s postings are written by one statement, all at once'
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
        REFERENCING NEW TABLE AS new_postings
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_postings_balanced()
    """,
    """
    CREATE FUNCTION ledger_entry_posted() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM ledger_postings WHERE entry_id = NEW.id) THEN
            RAISE EXCEPTION 'journal entry % has fewer than two postings', NEW.id
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_entries_posted AFTER INSERT ON ledger_entries
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_entry_posted()
    """,
]

GUARDS_DOWN = [
    "GRANT UPDATE, DELETE, TRUNCATE ON ledger_accounts TO vznos_app",
    "DROP TRIGGER ledger_accounts_append_only ON ledger_accounts",
    "ALTER TABLE ledger_postings ADD CONSTRAINT fk_ledger_postings_entry_id_ledger_entries"
    " FOREIGN KEY (entry_id) REFERENCES ledger_entries (id)",
    "ALTER TABLE ledger_postings ADD CONSTRAINT fk_ledger_postings_account_id_ledger_accounts"
    " FOREIGN KEY (account_id) REFERENCES ledger_accounts (id)",
    "DROP TRIGGER ledger_entries_posted ON ledger_entries",
    "DROP FUNCTION ledger_entry_posted()",
    "DROP TRIGGER ledger_postings_balanced ON ledger_postings",
    "DROP FUNCTION ledger_postings_balanced()",
    "DROP TRIGGER ledger_entries_own_transaction ON ledger_entries",
    "DROP FUNCTION ledger_entries_own_transaction()",
    """
    CREATE FUNCTION ledger_posting_currency() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.currency <> (SELECT currency FROM ledger_accounts WHERE id = NEW.account_id) THEN
            RAISE EXCEPTION 'posting currency % differs from its account''s', NEW.currency
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END $$
    """,
    """
    CREATE TRIGGER ledger_postings_currency BEFORE INSERT ON ledger_postings
        FOR EACH ROW EXECUTE FUNCTION ledger_posting_currency()
    """,
    """
    CREATE FUNCTION ledger_entry_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        entry uuid := (to_jsonb(NEW) ->> TG_ARGV[0])::uuid;
    BEGIN
        IF (SELECT count(*) FROM ledger_postings WHERE entry_id = entry) < 2 THEN
            RAISE EXCEPTION 'journal entry % has fewer than two postings', entry
                USING ERRCODE = 'check_violation';
        END IF;
        IF EXISTS (
            SELECT 1 FROM ledger_postings WHERE entry_id = entry
            GROUP BY currency HAVING sum(amount_kopecks) <> 0
        ) THEN
            RAISE EXCEPTION 'journal entry % does not balance', entry
                USING ERRCODE = 'check_violation';
        END IF;
        RETURN NULL;
    END $$
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_entries_balanced AFTER INSERT ON ledger_entries
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced('id')
    """,
    """
    CREATE CONSTRAINT TRIGGER ledger_postings_balanced AFTER INSERT ON ledger_postings
        DEFERRABLE INITIALLY DEFERRED
        FOR EACH ROW EXECUTE FUNCTION ledger_entry_balanced('entry_id')
    """,
]

# The summary is the database's own bookkeeping: the function runs as its owner so that a
# treasurer's row-level security (which hides other organisations' months) cannot make it
# recompute a member from part of their months.
ARREARS = [
    """
    CREATE FUNCTION ledger_refresh_arrears_summary() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = public AS $$
    BEGIN
        IF NOT EXISTS (SELECT 1 FROM changed_months) THEN
            RETURN NULL;
        END IF;
        WITH touched AS (SELECT DISTINCT member_id FROM changed_months),
        fresh AS (
            SELECT d.member_id, d.organization_id, count(*) AS months,
                sum(d.accrued_kopecks - d.paid_kopecks) AS kopecks,
                min(d.period_month) AS oldest
            FROM touched t JOIN ledger_dues_months d ON d.member_id = t.member_id
            WHERE d.paid_kopecks < d.accrued_kopecks
            GROUP BY d.member_id, d.organization_id
        ),
        paid_up AS (
            DELETE FROM ledger_arrears_summary a USING touched t
            WHERE a.member_id = t.member_id AND NOT EXISTS (
                SELECT 1 FROM fresh f
                WHERE f.member_id = a.member_id AND f.organization_id = a.organization_id
            )
        )
        INSERT INTO ledger_arrears_summary AS a
            (member_id, organization_id, months_owed, owed_kopecks, oldest_unpaid)
        SELECT member_id, organization_id, months, kopecks, oldest FROM fresh
        ON CONFLICT (member_id, organization_id) DO UPDATE SET
            months_owed = excluded.months_owed, owed_kopecks = excluded.owed_kopecks,
            oldest_unpaid = excluded.oldest_unpaid
        WHERE (a.months_owed, a.owed_kopecks, a.oldest_unpaid)
            IS DISTINCT FROM (excluded.months_owed, excluded.owed_kopecks, excluded.oldest_unpaid);
        RETURN NULL;
    END $$
    """,
    # New months only add to what their members owe (the monthly accrual's case).
    """
    CREATE FUNCTION ledger_add_arrears_summary() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = public AS $$
    BEGIN
        INSERT INTO ledger_arrears_summary AS a
            (member_id, organization_id, months_owed, owed_kopecks, oldest_unpaid)
        SELECT member_id, organization_id, count(*), sum(accrued_kopecks - paid_kopecks),
            min(period_month)
        FROM changed_months WHERE paid_kopecks < accrued_kopecks
        GROUP BY member_id, organization_id
        ON CONFLICT (member_id, organization_id) DO UPDATE SET
            months_owed = a.months_owed + excluded.months_owed,
            owed_kopecks = a.owed_kopecks + excluded.owed_kopecks,
            oldest_unpaid = least(a.oldest_unpaid, excluded.oldest_unpaid);
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER ledger_dues_months_inserted AFTER INSERT ON ledger_dues_months
        REFERENCING NEW TABLE AS changed_months
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_add_arrears_summary()
    """,
    # Changed or removed months: their members are recomputed from their months. A dues month
    # never changes member (its key); recomputing whole members covers a month moving between
    # organisations.
    """
    CREATE TRIGGER ledger_dues_months_updated AFTER UPDATE ON ledger_dues_months
        REFERENCING NEW TABLE AS changed_months
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refresh_arrears_summary()
    """,
    """
    CREATE TRIGGER ledger_dues_months_deleted AFTER DELETE ON ledger_dues_months
        REFERENCING OLD TABLE AS changed_months
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_refresh_arrears_summary()
    """,
    """
    CREATE FUNCTION ledger_clear_arrears_summary() RETURNS trigger LANGUAGE plpgsql
        SECURITY DEFINER SET search_path = public AS $$
    BEGIN
        DELETE FROM ledger_arrears_summary;
        RETURN NULL;
    END $$
    """,
    """
    CREATE TRIGGER ledger_dues_months_truncated AFTER TRUNCATE ON ledger_dues_months
        FOR EACH STATEMENT EXECUTE FUNCTION ledger_clear_arrears_summary()
    """,
    # Members owing two months or more: what the arrears list reads, in member order.
    "CREATE INDEX ix_ledger_arrears_summary_owing ON ledger_arrears_summary (member_id)"
    " INCLUDE (organization_id, months_owed, owed_kopecks, oldest_unpaid)"
    " WHERE months_owed >= 2",
    "ALTER TABLE ledger_arrears_summary ENABLE ROW LEVEL SECURITY",
    "CREATE POLICY ledger_arrears_summary_by_organization ON ledger_arrears_summary"
    " USING (vznos_org_visible(organization_id)) WITH CHECK (vznos_org_visible(organization_id))",
    # The months already there.
    "INSERT INTO ledger_arrears_summary"
    " (member_id, organization_id, months_owed, owed_kopecks, oldest_unpaid)"
    " SELECT member_id, organization_id, count(*), sum(accrued_kopecks - paid_kopecks),"
    " min(period_month) FROM ledger_dues_months WHERE paid_kopecks < accrued_kopecks"
    " GROUP BY member_id, organization_id",
]


def upgrade() -> None:
    # Entries written before this migration have none: nothing can be added to them.
    op.add_column("ledger_entries", sa.Column("created_xact", sa.BigInteger(), nullable=True))
    op.execute("ALTER TABLE ledger_entries ALTER COLUMN created_xact SET DEFAULT txid_current()")
    for statement in GUARDS:
        op.execute(statement)
    op.create_table(
        "ledger_arrears_summary",
        sa.Column("member_id", sa.Uuid(), nullable=False),
        sa.Column("organization_id", sa.Uuid(), nullable=False),
        sa.Column("months_owed", sa.Integer(), nullable=False),
        sa.Column("owed_kopecks", sa.BigInteger(), nullable=False),
        sa.Column("oldest_unpaid", sa.Date(), nullable=False),
        sa.CheckConstraint(
            "months_owed > 0 AND owed_kopecks > 0",
            name=op.f("ck_ledger_arrears_summary_owing_something"),
        ),
        sa.PrimaryKeyConstraint(
            "member_id", "organization_id", name=op.f("pk_ledger_arrears_summary")
        ),
    )
    for statement in ARREARS:
        op.execute(statement)


def downgrade() -> None:
    op.drop_table("ledger_arrears_summary")
    op.execute("DROP TRIGGER ledger_dues_months_truncated ON ledger_dues_months")
    op.execute("DROP TRIGGER ledger_dues_months_inserted ON ledger_dues_months")
    op.execute("DROP TRIGGER ledger_dues_months_updated ON ledger_dues_months")
    op.execute("DROP TRIGGER ledger_dues_months_deleted ON ledger_dues_months")
    op.execute("DROP FUNCTION ledger_clear_arrears_summary()")
    op.execute("DROP FUNCTION ledger_add_arrears_summary()")
    op.execute("DROP FUNCTION ledger_refresh_arrears_summary()")
    for statement in GUARDS_DOWN:
        op.execute(statement)
    op.drop_column("ledger_entries", "created_xact")
