"""A member's arrears (the months not fully paid and what they still owe), remembered per member
so that a change raises one `member.arrears_changed` event in the same transaction.

Posting code calls `track` once per transaction step with the members whose dues months it
touched (one journal entry, or a whole accrual batch). One statement compares each member's
arrears now with the remembered value and records the differences; one more writes their
events. A posting that leaves the arrears as they were (an overpayment kept as credit, a
recompute that rebuilds the same months) raises nothing.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection
from datetime import date, datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.money import CURRENCY, format_kopecks
from core.outbox import EventType, emit_many
from core.periods import format_period

# The members' arrears as the dues months say now (an index-only scan of the unpaid months),
# against what was remembered; the changed ones are remembered and returned with what the
# event needs. The member's row is already locked by the caller's balance update, so two
# postings for one member cannot both see the same "previous".
_CHANGES = text(
    "WITH touched AS (SELECT DISTINCT unnest(CAST(:members AS uuid[])) AS member_id),"
    " owed AS ("
    "  SELECT t.member_id, count(d.member_id) AS months,"
    "  coalesce(sum(d.accrued_kopecks - d.paid_kopecks), 0) AS kopecks,"
    "  min(d.period_month) AS oldest"
    "  FROM touched t LEFT JOIN ledger_dues_months d"
    "  ON d.member_id = t.member_id AND d.paid_kopecks < d.accrued_kopecks"
    "  GROUP BY t.member_id),"
    " changed AS ("
    "  SELECT o.member_id, o.months, o.kopecks, o.oldest,"
    "  coalesce(a.months_owed, 0) AS previous_months,"
    "  coalesce(a.owed_kopecks, 0) AS previous_kopecks"
    "  FROM owed o LEFT JOIN ledger_member_arrears a ON a.member_id = o.member_id"
    "  WHERE o.months <> coalesce(a.months_owed, 0) OR o.kopecks <> coalesce(a.owed_kopecks, 0)),"
    " remembered AS ("
    "  INSERT INTO ledger_member_arrears (member_id, months_owed, owed_kopecks, updated_at)"
    "  SELECT member_id, months, kopecks, :now FROM changed"
    "  ON CONFLICT (member_id) DO UPDATE SET months_owed = excluded.months_owed,"
    "  owed_kopecks = excluded.owed_kopecks, updated_at = excluded.updated_at)"
    " SELECT c.member_id, c.months, c.kopecks, c.oldest, c.previous_months, c.previous_kopecks,"
    " m.external_id, m.organization_id"
    " FROM changed c JOIN members m ON m.id = c.member_id ORDER BY c.member_id"
)


def track(session: Session, member_ids: Collection[uuid.UUID], *, now: datetime) -> int:
    """Raise `member.arrears_changed` for each of these members whose arrears differ from the
    last announced value. Runs in the caller's transaction; returns how many were raised."""
    if not member_ids:
        return 0
    rows = session.execute(_CHANGES, {"members": list(member_ids), "now": now}).all()
    emit_many(
        session,
        type=EventType.MEMBER_ARREARS_CHANGED,
        occurred_at=now,
        events=[
            (
                row.organization_id,
                arrears_payload(
                    member_id=row.member_id,
                    member_external_id=row.external_id,
                    months_owed=int(row.months),
                    owed_kopecks=int(row.kopecks),
                    oldest_unpaid=row.oldest,
                    previous_months_owed=int(row.previous_months),
                    previous_owed_kopecks=int(row.previous_kopecks),
                ),
            )
            for row in rows
        ],
    )
    return len(rows)


def arrears_payload(
    *,
    member_id: uuid.UUID,
    member_external_id: str,
    months_owed: int,
    owed_kopecks: int,
    oldest_unpaid: date | None,
    previous_months_owed: int,
    previous_owed_kopecks: int,
) -> dict[str, Any]:
    """The event's `data` (documented in webhooks/outbound/catalog.py and openapi.yaml)."""
    return {
        "member_id": str(member_id),
        "member_external_id": member_external_id,
        "months_owed": months_owed,
        "amount_owed": _money(owed_kopecks),
        "oldest_unpaid_period": format_period(oldest_unpaid) if oldest_unpaid else None,
        "previous_months_owed": previous_months_owed,
        "previous_amount_owed": _money(previous_owed_kopecks),
    }


def _money(kopecks: int) -> dict[str, str]:
    # The shape of every amount in the API (`MoneyOut`); zero is "0.00", not absent.
    return {"value": format_kopecks(kopecks), "currency": CURRENCY}
