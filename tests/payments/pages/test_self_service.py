"""My auto-pay over HTTP: what the page shows, cancel with a confirmation, change card (the new
card replaces the old one only when its payment succeeds), pay what is overdue (one payment,
allocated by the ledger to exactly the overdue months)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import httpx
from sqlalchemy import select

from core.clock import ManualClock
from core.outbox import Event
from ledger.models import DuesMonth, JournalEntry
from members.service import Principal
from payments.charges.models import Charge, ChargeAttempt
from payments.gateway.emulator import EmulatorServer
from payments.gateway.emulator.testing import complete_checkout
from payments.subscriptions.models import Subscription
from tests.conftest import Subscribe
from tests.payments.pages.conftest import IssueLink, card_of, card_token_of
from tests.payments.pages.test_links import csrf_of
from vznos.container import Container

DECEMBER = date(2026, 12, 1)
JANUARY = date(2027, 1, 1)
DECLINING_CARD = "5555555555554600"  # insufficient_funds
VISA = "4111111111111111"


def pay_at_checkout(answer: httpx.Response, card_number: str) -> None:
    """Follow a page's 303 to the acquirer, pay there, and come back as the browser would."""
    assert answer.status_code == 303, answer.text
    paid = complete_checkout(answer.headers["location"], card_number=card_number)
    assert paid.status_code == 303, paid.text
    back = httpx.get(paid.headers["location"], follow_redirects=True)
    assert back.status_code == 200


def charges_of(container: Container, kind: str) -> list[Charge]:
    with container.sessions() as session:
        return list(
            session.scalars(select(Charge).where(Charge.kind == kind).order_by(Charge.created_at))
        )


def decline_month(
    container: Container, emulator: EmulatorServer, subscription_id: uuid.UUID, period: date
) -> None:
    # A reason the retry policy does not retry inside the month: the month fails at once.
    emulator.state.script_outcomes(
        card_token_of(container, subscription_id), ["payment_method_limit_exceeded"]
    )
    container.billing.run(period)
    with container.sessions() as session:
        attempt_id = session.scalar(
            select(ChargeAttempt.id)
            .join(Charge, Charge.id == ChargeAttempt.charge_id)
            .where(Charge.subscription_id == subscription_id, Charge.period_month == period)
        )
    assert attempt_id is not None
    container.charges.submit(attempt_id)


def test_the_page_shows_status_card_next_charge_and_payments(
    subscribe: Subscribe, issue_link: IssueLink
) -> None:
    subscribe()
    page = httpx.get(issue_link("manage"))
    assert page.status_code == 200
    assert 'data-status="active"' in page.text
    assert "•••• 4444" in page.text
    assert "5 декабря 2026" in page.text  # billing day 5, November is paid
    assert "350,00\xa0₽" in page.text
    assert "Оплачено" in page.text
    assert 'id="pay-overdue"' not in page.text  # nothing overdue, no button
    english = httpx.get(issue_link("manage"), params={"lang": "en"})
    assert "December 5, 2026" in english.text and "Paid" in english.text


def test_cancel_asks_for_confirmation_then_stops_at_once(
    container: Container, principal: Principal, subscribe: Subscribe, issue_link: IssueLink
) -> None:
    subscription_id = subscribe()
    url = issue_link("manage")
    confirm = httpx.get(url + "/cancel")
    assert confirm.status_code == 200
    assert "Отключить автоплатёж?" in confirm.text
    assert container.subscriptions.get(principal, subscription_id).status == "active"

    done = httpx.post(url + "/cancel", data={"csrf": csrf_of(confirm.text, "cancel"), "lang": "ru"})
    assert done.status_code == 303
    assert done.headers["location"].endswith("notice=canceled")
    after = container.subscriptions.get(principal, subscription_id)
    assert after.status == "canceled"
    assert after.cancel_cause == "by_member"
    again = httpx.post(url + "/cancel", data={"csrf": csrf_of(confirm.text, "cancel")})
    assert again.status_code == 303  # idempotent, not an error
    with container.sessions() as session:
        events = session.scalars(select(Event).where(Event.type == "subscription.canceled")).all()
    assert [event.payload["cause"] for event in events] == ["by_member"]
    page = httpx.get(url)
    assert 'data-status="canceled"' in page.text
    assert 'id="change-card"' not in page.text


def test_change_card_replaces_the_card_only_when_its_payment_succeeds(
    container: Container,
    principal: Principal,
    subscribe: Subscribe,
    issue_link: IssueLink,
) -> None:
    subscription_id = subscribe()
    old_card = card_of(container, subscription_id)
    url = issue_link("manage")
    card_csrf = csrf_of(httpx.get(url).text, "card")
    declined = httpx.post(url + "/card", data={"csrf": card_csrf})
    pay_at_checkout(declined, DECLINING_CARD)
    assert card_of(container, subscription_id).id == old_card.id
    assert container.subscriptions.get(principal, subscription_id).status == "active"
    [failed] = charges_of(container, "card_change")
    assert failed.status == "failed" and failed.amount_kopecks == 100

    pay_at_checkout(httpx.post(url + "/card", data={"csrf": card_csrf}), VISA)
    new_card = card_of(container, subscription_id)
    assert new_card.id != old_card.id
    assert new_card.card_last4 == "1111"
    assert container.subscriptions.get(principal, subscription_id).status == "active"
    succeeded = charges_of(container, "card_change")[-1]
    assert succeeded.status == "succeeded"
    with container.sessions() as session:
        posted = session.scalar(
            select(JournalEntry).where(JournalEntry.source_id == str(succeeded.id))
        )
    assert posted is not None  # the rouble is the member's: a payment in their account
    assert "•••• 1111" in httpx.get(url).text


def test_pay_overdue_is_one_payment_for_exactly_the_overdue_months(
    container: Container,
    principal: Principal,
    emulator: EmulatorServer,
    clock: ManualClock,
    subscribe: Subscribe,
    issue_link: IssueLink,
    client: httpx.Client,
) -> None:
    subscription_id = subscribe()  # November paid; billing day 5
    clock.set(datetime(2026, 12, 6, 9, 0, tzinfo=UTC))
    decline_month(container, emulator, subscription_id, DECEMBER)
    clock.set(datetime(2027, 1, 6, 9, 0, tzinfo=UTC))
    decline_month(container, emulator, subscription_id, JANUARY)
    assert container.subscriptions.get(principal, subscription_id).status == "past_due"

    url = issue_link("manage")
    page = httpx.get(url).text
    assert "Не оплачено месяцев: 2 (декабрь 2026, январь 2027), всего 700,00\xa0₽." in page
    overdue_csrf = (
        page.split('action="/my/autopay/')[1].split('name="csrf" value="')[1].split('"')[0]
    )
    pay_at_checkout(httpx.post(url + "/overdue", data={"csrf": overdue_csrf}), VISA)

    [arrears] = charges_of(container, "arrears")
    assert arrears.status == "succeeded"
    assert arrears.amount_kopecks == 700_00
    assert arrears.covered_months == [DECEMBER, JANUARY]
    with container.sessions() as session:
        months = {
            m.period_month: (m.accrued_kopecks, m.paid_kopecks)
            for m in session.scalars(select(DuesMonth))
        }
        entry = session.scalar(
            select(JournalEntry).where(JournalEntry.source_id == str(arrears.id))
        )
    assert months == {
        date(2026, 11, 1): (350_00, 350_00),
        DECEMBER: (350_00, 350_00),
        JANUARY: (350_00, 350_00),
    }
    assert entry is not None and entry.description == "Card payment for 2026-12, 2027-01"
    listed = client.get("/v1/payments", params={"member": "m-1"}).json()
    [api_view] = [p for p in listed["data"] if p["kind"] == "arrears"]
    assert api_view["months"] == ["2026-12", "2027-01"]
    after = container.subscriptions.get(principal, subscription_id)
    assert after.status == "active"
    assert after.card is not None and after.card.last4 == "1111"  # the card paid with is kept
    assert 'id="pay-overdue"' not in httpx.get(url).text
    nothing = httpx.post(url + "/overdue", data={"csrf": overdue_csrf})
    assert nothing.status_code == 409
    assert "Задолженности нет." in nothing.text


def test_a_month_auto_pay_is_still_collecting_is_not_overdue(
    container: Container,
    emulator: EmulatorServer,
    clock: ManualClock,
    subscribe: Subscribe,
) -> None:
    subscription_id = subscribe()
    clock.set(datetime(2026, 12, 6, 9, 0, tzinfo=UTC))
    decline_month(container, emulator, subscription_id, DECEMBER)
    clock.set(datetime(2027, 1, 6, 9, 0, tzinfo=UTC))
    container.billing.run(JANUARY)  # January's charge exists and is not settled yet
    with container.sessions() as session:
        member_id = session.scalar(select(Charge.member_id).limit(1))
    assert member_id is not None
    overdue = container.subscriptions.overdue(member_id)
    assert overdue.periods == [DECEMBER]
    assert overdue.total_kopecks == 350_00


def test_a_standby_card_is_not_changed_by_a_payment(
    container: Container, subscribe: Subscribe, issue_link: IssueLink
) -> None:
    subscription_id = subscribe()
    url = issue_link("manage")
    card_csrf = csrf_of(httpx.get(url).text, "card")
    with container.sessions.begin() as session:
        # Standby is entered by its own flow; here only the state matters.
        session.get(Subscription, subscription_id).status = "standby"  # type: ignore[union-attr]
    assert 'id="change-card"' not in httpx.get(url).text
    refused = httpx.post(url + "/card", data={"csrf": card_csrf})
    assert refused.status_code == 409
    assert charges_of(container, "card_change") == []
