"""What to do after the gateway declines an automatic charge, by decline reason: as data.

Three actions:
- `retry`: the reason may pass (no funds today, the issuer was down). A new attempt (a new key)
  is made on the schedule inside the month — `schedule_days` after the first decline, at
  `local_hour` in the organisation's zone — or, when the member's paydays are known, the day
  after the next payday. At most `max_retries` times; the month's end stops it anyway.
- `new_card`: the saved card will not work again (expired, revoked, blocked, fraud): stop, and
  move the subscription to `needs_payment_method` so the member is asked for a new card.
- `stop`: give up on this month's charge without blaming the card (the reason is not a card
  problem, or the limit resets next month); next month is charged as usual.

Every `cancellation_details.reason` YooKassa documents has a row in the default table; an
organisation (or an ancestor) may override rows. Reasons we make up ourselves (a payment the
gateway never created) have their own rows.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from typing import Any

from core.periods import zone


class Action(StrEnum):
    RETRY = "retry"
    NEW_CARD = "new_card"
    STOP = "stop"


@dataclass(frozen=True)
class ReasonRule:
    action: Action
    max_retries: int = 0


# YooKassa's documented reasons (reference: yookassa.md, "Decline reasons").
GATEWAY_REASONS: frozenset[str] = frozenset(
    {
        "3d_secure_failed",
        "call_issuer",
        "canceled_by_merchant",
        "card_expired",
        "country_forbidden",
        "deal_expired",
        "expired_on_capture",
        "expired_on_confirmation",
        "fraud_suspected",
        "general_decline",
        "identification_required",
        "insufficient_funds",
        "internal_timeout",
        "invalid_card_number",
        "invalid_csc",
        "issuer_unavailable",
        "payment_method_limit_exceeded",
        "payment_method_restricted",
        "permission_revoked",
        "unsupported_mobile_operator",
        "rejected_by_timeout",
    }
)
# Our own: the attempt provably never became a payment at the gateway (see the resolver).
NOT_CREATED = "not_created"
KNOWN_REASONS: frozenset[str] = GATEWAY_REASONS | {NOT_CREATED}

_RETRY = Action.RETRY
_NEW_CARD = ReasonRule(Action.NEW_CARD)
_STOP = ReasonRule(Action.STOP)

DEFAULT_RULES: Mapping[str, ReasonRule] = {
    # Soft: may pass later.
    "insufficient_funds": ReasonRule(_RETRY, 3),
    "issuer_unavailable": ReasonRule(_RETRY, 3),
    "internal_timeout": ReasonRule(_RETRY, 3),
    "rejected_by_timeout": ReasonRule(_RETRY, 3),
    "general_decline": ReasonRule(_RETRY, 2),
    "call_issuer": ReasonRule(_RETRY, 1),
    # The card's limit resets with the period: nothing more this month, the card stays.
    "payment_method_limit_exceeded": _STOP,
    # Hard: this card is done; ask the member for a new one.
    "card_expired": _NEW_CARD,
    "permission_revoked": _NEW_CARD,  # the member revoked the autopayment in their bank
    "payment_method_restricted": _NEW_CARD,
    "fraud_suspected": _NEW_CARD,
    "country_forbidden": _NEW_CARD,
    "invalid_card_number": _NEW_CARD,
    "invalid_csc": _NEW_CARD,
    "3d_secure_failed": _NEW_CARD,
    "identification_required": _NEW_CARD,
    # Not a card problem: something on our side or in the flow. Try again once where a fresh
    # attempt can succeed; otherwise leave the month and keep the card.
    "canceled_by_merchant": ReasonRule(_RETRY, 1),
    "expired_on_capture": ReasonRule(_RETRY, 1),
    "expired_on_confirmation": _STOP,  # an autopayment cannot wait for the member
    "deal_expired": _STOP,
    "unsupported_mobile_operator": _STOP,
    NOT_CREATED: ReasonRule(_RETRY, 3),
}
# A reason no table knows (a new one at YooKassa, a 4xx to our request): do not retry blindly.
UNKNOWN_REASON_RULE = _STOP

DEFAULT_SCHEDULE_DAYS: tuple[int, ...] = (1, 3, 7)
DEFAULT_LOCAL_HOUR = 10
MAX_RETRIES = 10


class PolicyError(ValueError):
    """A policy that cannot be used; `field` names the offending part of the request."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class RetryPolicy:
    schedule_days: tuple[int, ...] = DEFAULT_SCHEDULE_DAYS
    local_hour: int = DEFAULT_LOCAL_HOUR
    retry_after_payday: bool = True
    # Only the rows that differ from the default table.
    overrides: Mapping[str, ReasonRule] = field(default_factory=dict)

    def rule_for(self, reason: str | None) -> ReasonRule:
        if reason is None:
            return UNKNOWN_REASON_RULE
        return self.overrides.get(reason) or DEFAULT_RULES.get(reason) or UNKNOWN_REASON_RULE

    def table(self) -> dict[str, ReasonRule]:
        """The whole effective table, every known reason."""
        return {reason: self.rule_for(reason) for reason in sorted(KNOWN_REASONS)}

    def to_data(self) -> dict[str, Any]:
        return {
            "schedule_days": list(self.schedule_days),
            "local_hour": self.local_hour,
            "retry_after_payday": self.retry_after_payday,
            "reasons": {
                reason: {"action": str(rule.action), "max_retries": rule.max_retries}
                for reason, rule in sorted(self.overrides.items())
            },
        }

    @classmethod
    def from_data(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """Build and check a policy; raises PolicyError naming the field at fault."""
        schedule = tuple(int(day) for day in data.get("schedule_days", DEFAULT_SCHEDULE_DAYS))
        if not 1 <= len(schedule) <= MAX_RETRIES:
            raise PolicyError(f"1 to {MAX_RETRIES} retry days are needed", "schedule_days")
        if any(not 1 <= day <= 27 for day in schedule) or list(schedule) != sorted(set(schedule)):
            raise PolicyError(
                "retry days must be increasing whole days between 1 and 27", "schedule_days"
            )
        hour = int(data.get("local_hour", DEFAULT_LOCAL_HOUR))
        if not 0 <= hour <= 23:
            raise PolicyError("local_hour must be 0 to 23", "local_hour")
        overrides: dict[str, ReasonRule] = {}
        for reason, raw in dict(data.get("reasons") or {}).items():
            where = f"reasons.{reason}"
            if reason not in KNOWN_REASONS:
                raise PolicyError(f"unknown decline reason {reason!r}", where)
            try:
                action = Action(raw["action"])
            except (KeyError, ValueError, TypeError) as exc:
                raise PolicyError("action must be retry, new_card or stop", where) from exc
            retries = int(raw.get("max_retries", 0))
            if action == Action.RETRY and not 1 <= retries <= len(schedule):
                raise PolicyError(
                    f"a retry needs 1 to {len(schedule)} retries (one per schedule day)",
                    where + ".max_retries",
                )
            if action != Action.RETRY and retries != 0:
                raise PolicyError("only a retry has retries", where + ".max_retries")
            overrides[reason] = ReasonRule(action, retries)
        return cls(
            schedule_days=schedule,
            local_hour=hour,
            retry_after_payday=bool(data.get("retry_after_payday", True)),
            overrides=overrides,
        )


DEFAULT_POLICY = RetryPolicy()


def at_local_hour(day: date, hour: int, timezone: str) -> datetime:
    return datetime.combine(day, time(hour), tzinfo=zone(timezone))


def day_after_next_payday(after: date, paydays: Sequence[int]) -> date:
    """The first day later than `after` that follows a payday (a payday past a short month's
    end is its last day)."""
    day = after
    for _ in range(62):
        day += timedelta(days=1)
        before = day - timedelta(days=1)
        last = calendar.monthrange(before.year, before.month)[1]
        if any(min(payday, last) == before.day for payday in paydays):
            return day
    raise ValueError("paydays must be days of the month")  # pragma: no cover


def next_retry_at(
    policy: RetryPolicy,
    *,
    retry_no: int,
    first_declined_on: date,
    last_declined_on: date,
    paydays: Sequence[int] | None,
    timezone: str,
) -> datetime:
    """When retry number `retry_no` (1-based) is due, in the member's local daytime."""
    if paydays and policy.retry_after_payday:
        day = day_after_next_payday(last_declined_on, paydays)
    else:
        index = min(retry_no, len(policy.schedule_days)) - 1
        day = first_declined_on + timedelta(days=policy.schedule_days[index])
        day = max(day, last_declined_on + timedelta(days=1))
    return at_local_hour(day, policy.local_hour, timezone)
