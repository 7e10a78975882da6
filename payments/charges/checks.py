"""The payments side of the ledger's invariants."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from ledger.checks import Violation


def every_card_payment_posted_once(session: Session) -> list[Violation]:
    """Every payment the gateway confirmed has exactly one ledger entry."""
    rows = session.execute(
        text(
            "SELECT a.id, a.gateway_payment_id, count(e.id) AS entries"
            " FROM charge_attempts a LEFT JOIN ledger_entries e"
            " ON e.idempotency_key = 'payment:' || a.gateway_payment_id"
            " WHERE a.status = 'succeeded' GROUP BY a.id, a.gateway_payment_id"
            " HAVING count(e.id) <> 1"
        )
    ).all()
    return [
        Violation(
            "every_card_payment_posted_once",
            f"attempt {r.id} (gateway payment {r.gateway_payment_id}) has {r.entries} entries",
        )
        for r in rows
    ]
