"""Scheduling charges: the one way a charge the member did not start comes into being.

Monthly charges (`billing.py`) and standby shortfall charges (`payments/standby/shortfalls.py`)
both go through `schedule_charges`, a batch at a time and in set-based statements:

1. the charges are inserted with `ON CONFLICT DO NOTHING` (one monthly charge per subscription
   and month is a unique index, so a second run makes none; the rows that conflict come back as
   not scheduled);
2. the months they charge for are accrued in one ledger batch (`ledger.batch.post_accruals`,
   keyed per member and month: whoever accrued the month first wins);
3. every charge already due gets its first attempt (its own id is its Idempotence-Key) in one
   insert. A charge due later keeps its `next_attempt_at`; `create_attempts` makes its attempt
   then, like every retry the policy schedules.

The caller commits, then enqueues `submit(attempt_id)` for the attempts made: the queue carries
pointers only, and the sweeper submits any attempt whose message was lost.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import insert, text
from sqlalchemy.orm import Session

from core.money import format_kopecks
from core.periods import period_start
from ledger.batch import Accrual, post_accruals
from payments.charges.models import ChargeAttempt
from payments.charges.states import AttemptStatus, ChargeKind, ChargeStatus

# The sweeper first looks at an attempt this long after it was made (the first step of the
# re-check backoff in `service.CHECK_BACKOFF`).
FIRST_CHECK = timedelta(minutes=1)

META_ATTEMPT = "vznos_attempt_id"
META_CHARGE = "vznos_charge_id"
META_SUBSCRIPTION = "vznos_subscription_id"


def payment_description(period_month: date) -> str:
    # Shown to the member by the acquirer and in their bank app: neutral on purpose, it must not
    # tell an employer looking over a shoulder that this is a trade union.
    return f"Взнос за {period_month.month:02d}.{period_month.year}"


def payment_metadata(
    attempt_id: uuid.UUID, charge_id: uuid.UUID, subscription_id: uuid.UUID
) -> dict[str, str]:
    return {
        META_ATTEMPT: str(attempt_id),
        META_CHARGE: str(charge_id),
        META_SUBSCRIPTION: str(subscription_id),
    }


def saved_card_payment_body(
    attempt_id: uuid.UUID,
    *,
    charge_id: uuid.UUID,
    subscription_id: uuid.UUID,
    period_month: date,
    amount_kopecks: int,
    currency: str,
) -> dict[str, Any]:
    """The body of an automatic charge, without the card token: it is added, decrypted, just
    before each send (`service.with_card_token`), so it never rests in plaintext."""
    return {
        "amount": {"value": format_kopecks(amount_kopecks), "currency": currency},
        "capture": True,
        "description": payment_description(period_month),
        "metadata": payment_metadata(attempt_id, charge_id, subscription_id),
    }


@dataclass(frozen=True)
class AttemptDraft:
    """An attempt to insert: the charge's next one, for a saved card."""

    charge_id: uuid.UUID
    subscription_id: uuid.UUID
    attempt_no: int
    period_month: date
    amount_kopecks: int
    currency: str
    shop_id: str
    payment_method_id: uuid.UUID


def insert_attempts(session: Session, drafts: list[AttemptDraft], now: datetime) -> list[uuid.UUID]:
    """Insert the attempts (keys) in one statement; returns their ids in the drafts' order.
    The partial unique index on open attempts refuses a second open attempt of a charge."""
    if not drafts:
        return []
    ids = [uuid.uuid4() for _ in drafts]
    first_check = now + FIRST_CHECK
    session.execute(
        insert(ChargeAttempt),
        [
            {
                "id": attempt_id,
                "charge_id": draft.charge_id,
                "attempt_no": draft.attempt_no,
                "status": AttemptStatus.CREATED,
                "shop_id": draft.shop_id,
                "request_body": saved_card_payment_body(
                    attempt_id,
                    charge_id=draft.charge_id,
                    subscription_id=draft.subscription_id,
                    period_month=draft.period_month,
                    amount_kopecks=draft.amount_kopecks,
                    currency=draft.currency,
                ),
                "payment_method_id": draft.payment_method_id,
                "created_at": now,
                "next_check_at": first_check,
                "checks": 0,
            }
            for attempt_id, draft in zip(ids, drafts, strict=True)
        ],
    )
    return ids


@dataclass(frozen=True)
class ChargeDraft:
    """A charge to schedule on a saved card."""

    subscription_id: uuid.UUID
    member_id: uuid.UUID
    organization_id: uuid.UUID
    timezone: str
    period_month: date
    kind: ChargeKind
    amount_kopecks: int
    currency: str
    # The month's dues to accrue if nothing accrued the month yet (0: accrue nothing).
    accrual_kopecks: int
    # Not attempted before this; a charge due by `now` gets its first attempt at once.
    not_before: datetime
    # No retry at or after this instant (None: the end of the charge's month).
    retry_until: datetime | None
    shop_id: str
    payment_method_id: uuid.UUID
    # When the member was told of this charge (`charge.upcoming`), if in this transaction.
    upcoming_notice_at: datetime | None = None


@dataclass(frozen=True)
class ScheduledCharge:
    draft: ChargeDraft
    charge_id: uuid.UUID
    attempt_id: uuid.UUID | None  # None: not due yet, `create_attempts` makes it when it is


def schedule_charges(
    session: Session, drafts: list[ChargeDraft], *, now: datetime
) -> list[ScheduledCharge]:
    """Insert the charges that do not exist yet, accrue their months, and make the first
    attempt of those already due. Returns the charges inserted (a conflict is not one)."""
    if not drafts:
        return []
    ids = [uuid.uuid4() for _ in drafts]
    due = [draft.not_before <= now for draft in drafts]
    inserted = set(
        session.scalars(
            text(
                "INSERT INTO charges (id, subscription_id, member_id, organization_id,"
                " period_month, kind, status, amount_kopecks, currency, created_at,"
                " upcoming_notice_at, next_attempt_at, retry_until)"
                " SELECT id, sub, member, org, period, kind, :status, amount, currency, :now,"
                " notice, next_at, until FROM unnest("
                " CAST(:ids AS uuid[]), CAST(:subs AS uuid[]), CAST(:members AS uuid[]),"
                " CAST(:orgs AS uuid[]), CAST(:periods AS date[]), CAST(:kinds AS text[]),"
                " CAST(:amounts AS bigint[]), CAST(:currencies AS text[]),"
                " CAST(:notices AS timestamptz[]), CAST(:next_ats AS timestamptz[]),"
                " CAST(:untils AS timestamptz[]))"
                " AS c(id, sub, member, org, period, kind, amount, currency, notice, next_at,"
                " until)"
                # Whichever unique index refuses it (one monthly charge per subscription and
                # month), the charge exists already: nothing more to do for it.
                " ON CONFLICT DO NOTHING RETURNING id"
            ),
            {
                "status": str(ChargeStatus.PENDING),
                "now": now,
                "ids": ids,
                "subs": [d.subscription_id for d in drafts],
                "members": [d.member_id for d in drafts],
                "orgs": [d.organization_id for d in drafts],
                "periods": [d.period_month for d in drafts],
                "kinds": [str(d.kind) for d in drafts],
                "amounts": [d.amount_kopecks for d in drafts],
                "currencies": [d.currency for d in drafts],
                "notices": [d.upcoming_notice_at for d in drafts],
                # An attempt made now consumes the charge's due time.
                "next_ats": [
                    None if is_due else d.not_before for d, is_due in zip(drafts, due, strict=True)
                ],
                "untils": [d.retry_until for d in drafts],
            },
        )
    )
    scheduled = [
        (draft, charge_id, is_due)
        for draft, charge_id, is_due in zip(drafts, ids, due, strict=True)
        if charge_id in inserted
    ]
    post_accruals(
        session,
        [
            Accrual(
                member_id=draft.member_id,
                organization_id=draft.organization_id,
                timezone=draft.timezone,
                period_month=draft.period_month,
                amount_kopecks=draft.accrual_kopecks,
                occurred_at=min(now, period_start(draft.period_month, draft.timezone)),
                source_type="charge",
                source_id=str(charge_id),
            )
            for draft, charge_id, _ in scheduled
            if draft.accrual_kopecks > 0
        ],
        recorded_at=now,
    )
    due_now = [(draft, charge_id) for draft, charge_id, is_due in scheduled if is_due]
    attempt_ids = dict(
        zip(
            [charge_id for _, charge_id in due_now],
            insert_attempts(
                session,
                [
                    AttemptDraft(
                        charge_id=charge_id,
                        subscription_id=draft.subscription_id,
                        attempt_no=1,
                        period_month=draft.period_month,
                        amount_kopecks=draft.amount_kopecks,
                        currency=draft.currency,
                        shop_id=draft.shop_id,
                        payment_method_id=draft.payment_method_id,
                    )
                    for draft, charge_id in due_now
                ],
                now,
            ),
            strict=True,
        )
    )
    return [
        ScheduledCharge(draft, charge_id, attempt_ids.get(charge_id))
        for draft, charge_id, _ in scheduled
    ]
