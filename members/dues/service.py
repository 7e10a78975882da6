"""Dues plans, each member's plan over time, and the monthly accrual of what members owe."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

import structlog
from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from core.errors import InvalidInput, NotFound
from core.money import MoneyOut
from core.periods import format_period, parse_period, period_start
from ledger.batch import Accrual, post_accruals
from members.dues.schemas import (
    DuesPlanIn,
    DuesPlanOut,
    MemberPlanIn,
    MemberPlanOut,
    bp_to_percent,
    percent_to_bp,
)
from members.models import DuesPlan, MemberDuesPlan, Organization
from members.service import Principal, visible_member, visible_organization

log = structlog.get_logger("members.dues")

AccrualRule = Literal["member_on_first_day", "member_any_day"]


class DuesPlanNotFound(NotFound):
    type_slug = "dues-plan-not-found"
    title = "Dues plan not found"


class WageRequired(InvalidInput):
    type_slug = "declared-wage-required"
    title = "A declared wage is required"


def monthly_amount(
    kind: str,
    amount_kopecks: int | None,
    rate_bp: int | None,
    minimum_kopecks: int | None,
    maximum_kopecks: int | None,
    wage_kopecks: int | None,
) -> int:
    """What a month costs by a plan. Percentages round half up to the kopeck."""
    if kind == "fixed":
        return int(amount_kopecks or 0)
    if kind == "exempt":
        return 0
    if wage_kopecks is None or rate_bp is None:
        return 0
    amount = (wage_kopecks * rate_bp + 5_000) // 10_000
    if minimum_kopecks is not None:
        amount = max(amount, minimum_kopecks)
    if maximum_kopecks is not None:
        amount = min(amount, maximum_kopecks)
    return amount


def member_monthly_amount(session: Session, member_id: uuid.UUID, period: date) -> int | None:
    """What the member's plan asks for a month; None when the member has no plan then."""
    row = session.execute(
        select(DuesPlan, MemberDuesPlan.declared_wage_kopecks)
        .join(MemberDuesPlan, MemberDuesPlan.plan_id == DuesPlan.id)
        .where(MemberDuesPlan.member_id == member_id, MemberDuesPlan.effective_from <= period)
        .order_by(MemberDuesPlan.effective_from.desc())
        .limit(1)
    ).first()
    if row is None:
        return None
    plan, wage = row
    return monthly_amount(
        plan.kind,
        plan.amount_kopecks,
        plan.rate_bp,
        plan.minimum_kopecks,
        plan.maximum_kopecks,
        wage,
    )


def plan_out(plan: DuesPlan, org_code: str) -> DuesPlanOut:
    def money(kopecks: int | None) -> MoneyOut | None:
        return MoneyOut.of(kopecks) if kopecks is not None else None

    return DuesPlanOut(
        code=plan.code,
        organization_code=org_code,
        name=plan.name,
        kind=plan.kind,
        amount=money(plan.amount_kopecks),
        percent=bp_to_percent(plan.rate_bp) if plan.rate_bp is not None else None,
        minimum=money(plan.minimum_kopecks),
        maximum=money(plan.maximum_kopecks),
        category=plan.category,
    )


def ancestors_and_self(session: Session, organization_id: uuid.UUID) -> list[uuid.UUID]:
    chain = []
    current: uuid.UUID | None = organization_id
    while current is not None and current not in chain:
        chain.append(current)
        org = session.get(Organization, current)
        current = org.parent_id if org else None
    return chain


@dataclass(frozen=True)
class AccrualResult:
    period_month: date
    accrued: int
    batches: int


class DuesService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        *,
        accrual_rule: AccrualRule = "member_on_first_day",
        batch_size: int = 5_000,
        workers: int = 2,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._rule = accrual_rule
        self._batch_size = batch_size
        self._workers = max(workers, 1)

    def upsert_plan(self, principal: Principal, code: str, data: DuesPlanIn) -> DuesPlanOut:
        now = self._clock.now()
        with transaction(self._sessions) as session:
            org = visible_organization(
                session, principal, data.organization_code, "organization_code"
            )
            values: dict[str, Any] = {
                "organization_id": org.id,
                "name": data.name,
                "kind": data.kind,
                "amount_kopecks": data.amount.kopecks if data.amount else None,
                "rate_bp": percent_to_bp(data.percent) if data.percent else None,
                "minimum_kopecks": data.minimum.kopecks if data.minimum else None,
                "maximum_kopecks": data.maximum.kopecks if data.maximum else None,
                "category": data.category,
                "updated_at": now,
            }
            existing = session.scalar(select(DuesPlan).where(DuesPlan.code == code))
            if existing is not None and not principal.can_see(existing.organization_id):
                raise DuesPlanNotFound(f"no dues plan {code!r}", field="code")
            session.execute(
                insert(DuesPlan)
                .values(id=uuid.uuid4(), code=code, created_at=now, **values)
                .on_conflict_do_update(index_elements=["code"], set_=values)
            )
            plan = session.scalar(select(DuesPlan).where(DuesPlan.code == code))
            assert plan is not None
            return plan_out(plan, org.code)

    def set_member_plan(
        self, principal: Principal, external_id: str, data: MemberPlanIn
    ) -> MemberPlanOut:
        """From a month on, the member pays by this plan (replacing the plan from that month)."""
        effective_from = parse_period(data.effective_from)
        now = self._clock.now()
        with transaction(self._sessions) as session:
            member = visible_member(session, principal, external_id)
            plan = session.scalar(select(DuesPlan).where(DuesPlan.code == data.plan_code))
            if plan is None or plan.organization_id not in ancestors_and_self(
                session, member.organization_id
            ):
                raise DuesPlanNotFound(
                    f"no dues plan {data.plan_code!r} for this member's organisation",
                    field="plan_code",
                )
            if plan.kind == "percent_of_wage" and data.declared_wage is None:
                raise WageRequired(
                    "a percent_of_wage plan needs the member's declared wage",
                    field="declared_wage",
                )
            wage = data.declared_wage.kopecks if data.declared_wage else None
            session.execute(
                insert(MemberDuesPlan)
                .values(
                    id=uuid.uuid4(),
                    member_id=member.id,
                    plan_id=plan.id,
                    effective_from=effective_from,
                    declared_wage_kopecks=wage,
                    created_at=now,
                )
                .on_conflict_do_update(
                    index_elements=["member_id", "effective_from"],
                    set_={"plan_id": plan.id, "declared_wage_kopecks": wage},
                )
            )
        return MemberPlanOut(
            plan_code=plan.code,
            effective_from=format_period(effective_from),
            declared_wage=MoneyOut.of(wage) if wage is not None else None,
        )

    def accrue(self, period: date) -> AccrualResult:
        """Accrue a month for every member with a plan and an active membership. Streams the
        members in batches (memory stays flat: one batch per worker); running it again accrues
        nobody twice.

        `workers` threads each take a share of the organisations, so they never touch the same
        member or organisation account (no lock waits between them), and while one waits on
        PostgreSQL the other prepares its next batch in Python: the run uses two cores."""
        organizations = self._sessions_scalar_ids("SELECT id FROM organizations ORDER BY id")
        shares = [organizations[n :: self._workers] for n in range(self._workers)]
        shares = [share for share in shares if share]
        if len(shares) <= 1:
            accrued, batches = self._accrue_share(period, organizations)
        else:
            with ThreadPoolExecutor(max_workers=len(shares)) as pool:
                futures = [
                    pool.submit(copy_context().run, self._accrue_share, period, share)
                    for share in shares
                ]
                results = [future.result() for future in futures]
            accrued = sum(result[0] for result in results)
            batches = sum(result[1] for result in results)
        log.info("dues.accrued", period=format_period(period), accrued=accrued)
        return AccrualResult(period, accrued, batches)

    def _sessions_scalar_ids(self, query: str) -> list[uuid.UUID]:
        with self._sessions() as session:
            return list(session.scalars(text(query)))

    def _accrue_share(self, period: date, organizations: list[uuid.UUID]) -> tuple[int, int]:
        """Accrue the month for the members of these organisations, batch by batch in member
        order; returns (members accrued, batches)."""
        accrued = batches = 0
        after = uuid.UUID(int=0)
        starts: dict[str, datetime] = {}
        while True:
            now = self._clock.now()
            with transaction(self._sessions) as session:
                rows = session.execute(
                    text(_DUE_MEMBERS.format(membership=_MEMBERSHIP[self._rule])),
                    {
                        "period": period,
                        "key_suffix": ":" + format_period(period),
                        "after": after,
                        "orgs": organizations,
                        "limit": self._batch_size,
                    },
                ).all()
                if not rows:
                    break
                after = rows[-1].id
                items = []
                for row in rows:
                    start = starts.get(row.timezone)
                    if start is None:
                        start = starts[row.timezone] = period_start(period, row.timezone)
                    items.append(
                        Accrual(
                            member_id=row.id,
                            organization_id=row.organization_id,
                            timezone=row.timezone,
                            period_month=period,
                            amount_kopecks=monthly_amount(
                                row.kind,
                                row.amount_kopecks,
                                row.rate_bp,
                                row.minimum_kopecks,
                                row.maximum_kopecks,
                                row.declared_wage_kopecks,
                            ),
                            occurred_at=min(now, start),
                            source_type="dues_plan",
                            source_id=str(row.plan_id),
                        )
                    )
                accrued += post_accruals(session, items, recorded_at=now)
                batches += 1
        return accrued, batches


_MEMBERSHIP = {
    # A month is owed if the person was a member on its first day.
    "member_on_first_day": (
        "(m.joined_on IS NULL OR m.joined_on <= :period)"
        " AND (m.left_on IS NULL OR m.left_on >= :period)"
    ),
    # A month is owed if the person was a member on any day of it.
    "member_any_day": (
        "(m.joined_on IS NULL OR m.joined_on < (:period + interval '1 month'))"
        " AND (m.left_on IS NULL OR m.left_on >= :period)"
    ),
}

_DUE_MEMBERS = """
SELECT m.id, m.organization_id, o.timezone, a.plan_id, a.declared_wage_kopecks,
       p.kind, p.amount_kopecks, p.rate_bp, p.minimum_kopecks, p.maximum_kopecks
FROM members m
JOIN organizations o ON o.id = m.organization_id
JOIN LATERAL (
    SELECT mp.plan_id, mp.declared_wage_kopecks FROM member_dues_plans mp
    WHERE mp.member_id = m.id AND mp.effective_from <= :period
    ORDER BY mp.effective_from DESC LIMIT 1
) a ON true
JOIN dues_plans p ON p.id = a.plan_id
WHERE m.id > :after AND m.organization_id = ANY(:orgs) AND {membership}
  AND NOT EXISTS (
    SELECT 1 FROM ledger_entries e
    WHERE e.idempotency_key = 'accrual:' || m.id::text || :key_suffix
  )
ORDER BY m.id
LIMIT :limit
"""
