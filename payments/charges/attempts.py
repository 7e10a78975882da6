"""A charge attempt before and around its gateway call: what is sent (the body, with the saved
card's token decrypted just before each send), its key (the attempt's own id, committed before
any call), and when an attempt whose outcome is unknown is looked at again."""

from __future__ import annotations

import random
import uuid
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from core.crypto import CryptoError
from core.money import format_kopecks
from members.pii import DataKeyMissing, MemberVault
from payments.charges import repository
from payments.charges.models import Charge, ChargeAttempt
from payments.charges.scheduling import (
    FIRST_CHECK,
    payment_description,
    payment_metadata,
)
from payments.charges.states import AttemptStatus, ChargeKind
from payments.retries.policy import NOT_CREATED
from payments.subscriptions.models import PaymentMethod

# How long the sweeper waits before looking at an open attempt again, by how often it looked.
CHECK_BACKOFF = (
    FIRST_CHECK,
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=6),
    timedelta(hours=20),
)
CHECK_BACKOFF_CEILING = timedelta(hours=24)
# Re-checks are spread by up to this fraction on top of the backoff or the gateway's hint, so
# attempts that failed together (a 429 storm, an outage) do not come back together.
CHECK_JITTER_FRACTION = 0.25
# How long YooKassa honours an idempotence key (yookassa.md: 24 h from the first request).
KEY_LIFETIME = timedelta(hours=24)
# Our clock and the gateway's may disagree a little: search the payment list from a bit earlier.
LIST_SEARCH_SLACK = timedelta(minutes=10)
NOT_CREATED_REASON = NOT_CREATED


def next_check_delay(checks: int) -> timedelta:
    return CHECK_BACKOFF[checks] if checks < len(CHECK_BACKOFF) else CHECK_BACKOFF_CEILING


def recheck_delay(checks: int, retry_after_seconds: float | None, rng: random.Random) -> timedelta:
    """When to look at an unknown outcome again: the backoff for this many checks, never sooner
    than the gateway's own hint (429 Retry-After, 202 retry_after), plus jitter on top."""
    delay = next_check_delay(checks)
    if retry_after_seconds is not None:
        delay = max(delay, timedelta(seconds=retry_after_seconds))
    return delay * (1 + rng.uniform(0, CHECK_JITTER_FRACTION))


def charge_description(charge: Charge) -> str:
    """What the acquirer shows for a charge (at most 128 characters, neutral like the above)."""
    if charge.kind == ChargeKind.CARD_CHANGE:
        return "Привязка карты для взносов"
    months = charge.covered_months or []
    if charge.kind == ChargeKind.ARREARS and len(months) > 1:
        first, last = months[0], months[-1]
        return f"Взносы за {first.month:02d}.{first.year}–{last.month:02d}.{last.year}"
    return payment_description(charge.period_month)


def metadata_for(attempt_id: uuid.UUID, charge: Charge) -> dict[str, str]:
    return payment_metadata(attempt_id, charge.id, charge.subscription_id)


def initial_payment_body(attempt_id: uuid.UUID, charge: Charge, return_url: str) -> dict[str, Any]:
    return {
        "amount": {"value": format_kopecks(charge.amount_kopecks), "currency": charge.currency},
        "capture": True,
        "save_payment_method": True,
        "payment_method_data": {"type": "bank_card"},
        "confirmation": {"type": "redirect", "return_url": return_url},
        "description": charge_description(charge),
        "metadata": metadata_for(attempt_id, charge),
    }


class CardTokenUnreadable(Exception):
    """The saved card's token cannot be decrypted: its member was erased."""


def gateway_token_aad_parts(method: PaymentMethod) -> tuple[str, str, uuid.UUID]:
    return PaymentMethod.__tablename__, "gateway_token_ciphertext", method.id


def card_token(session: Session, vault: MemberVault, method: PaymentMethod) -> str:
    if method.gateway_token_ciphertext is None:
        raise CardTokenUnreadable(f"payment method {method.id} has no token")
    table, column, row_id = gateway_token_aad_parts(method)
    try:
        return vault.decrypt(
            session, method.member_id, table, column, row_id, method.gateway_token_ciphertext
        )
    except (DataKeyMissing, CryptoError) as exc:
        raise CardTokenUnreadable(f"payment method {method.id}: {exc}") from exc


def with_card_token(session: Session, vault: MemberVault, attempt: ChargeAttempt) -> dict[str, Any]:
    """The attempt's body as sent: the stored body plus, for an automatic charge, the token."""
    body = dict(attempt.request_body)
    if attempt.payment_method_id is not None:
        method = session.get(PaymentMethod, attempt.payment_method_id)
        assert method is not None
        body["payment_method_id"] = card_token(session, vault, method)
    return body


def add_attempt(
    session: Session,
    charge: Charge,
    *,
    shop_id: str,
    body_for: Any,
    now: datetime,
    payment_method_id: uuid.UUID | None = None,
) -> ChargeAttempt:
    """Create the charge's next attempt with its key. The caller commits before any call."""
    previous = repository.last_attempt(session, charge.id)
    attempt_id = uuid.uuid4()
    attempt = ChargeAttempt(
        id=attempt_id,
        charge_id=charge.id,
        attempt_no=(previous.attempt_no + 1) if previous else 1,
        status=AttemptStatus.CREATED,
        shop_id=shop_id,
        request_body=body_for(attempt_id),
        payment_method_id=payment_method_id,
        created_at=now,
        next_check_at=now + next_check_delay(0),
        checks=0,
    )
    session.add(attempt)
    return attempt


def parse_gateway_time(value: Any) -> datetime | None:
    """A YooKassa timestamp (ISO 8601, `Z` for UTC), or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
