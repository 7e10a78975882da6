"""The scheduler bills a subscription on its billing day in its organisation's time zone, once."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import func, select

from core.clock import ManualClock
from members.schemas import OrganizationCreate
from payments.charges.models import Charge
from payments.charges.states import ChargeKind
from tests.conftest import Subscribe
from vznos.container import Container
from vznos.scheduler import tick


def recurring_charges(container: Container) -> list[tuple[date, str]]:
    with container.sessions() as session:
        rows = session.execute(
            select(Charge.period_month, Charge.status)
            .where(Charge.kind == ChargeKind.RECURRING)
            .order_by(Charge.period_month)
        ).all()
    return [(row[0], row[1]) for row in rows]


def test_billing_day_comes_in_the_organizations_time_zone(
    container: Container, clock: ManualClock, subscribe: Subscribe, org_code: str
) -> None:
    container.organizations.create(
        OrganizationCreate(
            code="ppo-vl", name="ППО порта", parent_code=org_code, timezone="Asia/Vladivostok"
        ),
        None,
    )
    subscribe("m-vl", "ppo-vl", billing_day=5)

    clock.set(datetime(2026, 12, 4, 13, 30, tzinfo=UTC))  # 23:30 on the 4th in Vladivostok
    assert tick(container)
    assert recurring_charges(container) == []

    clock.set(datetime(2026, 12, 4, 14, 30, tzinfo=UTC))  # 00:30 on the 5th in Vladivostok
    tick(container)
    assert [period for period, _ in recurring_charges(container)] == [date(2026, 12, 1)]

    tick(container)  # the next tick finds the month already charged
    with container.sessions() as session:
        assert session.scalar(select(func.count()).select_from(Charge)) == 2


def test_a_billing_day_past_the_months_end_is_its_last_day(
    container: Container, clock: ManualClock, subscribe: Subscribe
) -> None:
    clock.set(datetime(2027, 1, 20, 9, 0, tzinfo=UTC))
    subscribe(billing_day=31)
    clock.set(datetime(2027, 2, 27, 12, 0, tzinfo=UTC))
    tick(container)
    assert recurring_charges(container) == []
    clock.set(datetime(2027, 2, 28, 6, 0, tzinfo=UTC))  # 09:00 on the 28th in Moscow
    tick(container)
    assert [period for period, _ in recurring_charges(container)] == [date(2027, 2, 1)]


def test_billing_never_reaches_back_before_the_subscription(
    container: Container, subscribe: Subscribe
) -> None:
    subscribe()
    assert container.billing.run(date(2026, 10, 1)).charges_created == 0
    assert container.billing.run(date(2026, 11, 1)).charges_created == 0  # paid at checkout
    assert container.billing.run(date(2026, 12, 1)).charges_created == 1
