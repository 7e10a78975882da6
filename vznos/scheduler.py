"""The scheduler: every tick, bill what is due and re-drive whatever is stuck.

Any number of scheduler processes may run; a PostgreSQL advisory lock lets one tick at a time.
"""

from __future__ import annotations

import threading

import structlog
from sqlalchemy import select, text

from core import jobs
from core.db import transaction
from core.periods import format_period, period_of
from members.models import Organization
from vznos.checks import run_checks
from vznos.container import Container

log = structlog.get_logger("vznos.scheduler")

# An arbitrary constant naming "the scheduler tick" among advisory locks.
TICK_LOCK_KEY = 0x767A6E6F73


def tick(container: Container) -> bool:
    """Run one tick if no other scheduler is ticking. Returns whether it ran."""
    with container.engine.connect() as connection:
        got = connection.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": TICK_LOCK_KEY})
        if not got.scalar():
            return False
        try:
            accrue_months(container)
            container.subscriptions.resume_due()
            container.billing.run_due()
            container.shortfalls.charge_due()
            container.billing.notify_expiring_cards()
            container.charges.sweep()
            container.refunds.sweep()
            container.standby.sweep()
            container.shortfalls.settle_late_payroll()
            container.inbox.sweep()
            container.outbound.sweep()
            container.idempotency.sweep()
            check_daily(container)
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": TICK_LOCK_KEY})
            connection.commit()
    return True


def accrue_months(container: Container) -> None:
    """On the first tick of each month (in any organisation's zone), accrue the month."""
    now = container.clock.now()
    with container.sessions() as session:
        zones = list(session.scalars(select(Organization.timezone).distinct()))
    for period in sorted({period_of(now, tz) for tz in zones}):
        key = format_period(period)
        with container.sessions() as session:
            if jobs.finished(session, "dues.accrue", key):
                continue
        container.dues.accrue(period)
        with transaction(container.sessions) as session:
            jobs.mark_finished(session, "dues.accrue", key, container.clock.now())


def check_daily(container: Container) -> None:
    """Once a day, verify the books; violations are logged as errors for someone to act on."""
    key = container.clock.now().date().isoformat()
    with container.sessions() as session:
        if jobs.finished(session, "ledger.check", key):
            return
    violations = run_checks(container)
    for violation in violations:
        log.error("ledger.invariant_violated", check=violation.check, detail=violation.detail)
    with transaction(container.sessions) as session:
        jobs.mark_finished(session, "ledger.check", key, container.clock.now())
    log.info("ledger.checked", violations=len(violations))


def run_forever(container: Container, stop: threading.Event, interval_seconds: float) -> None:
    log.info("scheduler.started", interval_seconds=interval_seconds)
    while not stop.is_set():
        try:
            tick(container)
        except Exception:
            log.exception("scheduler.tick_failed")
        stop.wait(interval_seconds)
    log.info("scheduler.stopped")
