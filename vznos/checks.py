"""Every invariant of the books, from each domain, in one run."""

from __future__ import annotations

from ledger.checks import LEDGER_CHECKS, Violation
from payments.charges.checks import every_card_payment_posted_once
from vznos.container import Container

CHECKS = (*LEDGER_CHECKS, every_card_payment_posted_once)


def run_checks(container: Container) -> list[Violation]:
    violations: list[Violation] = []
    with container.sessions() as session:
        for check in CHECKS:
            violations.extend(check(session))
    return violations
