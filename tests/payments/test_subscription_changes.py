"""Changes from the CRM: a new amount from a month, pause and resume (the scheduler resumes on
the date), cancel; all idempotent and reflected in the next charge; bad input is a 4xx."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime

import httpx
from sqlalchemy import select, text

from core.clock import ManualClock
from members.schemas import OrganizationCreate
from payments.charges.models import Charge
from tests.conftest import Subscribe, with_idempotency_key
from vznos.container import Container

DECEMBER, JANUARY = date(2026, 12, 1), date(2027, 1, 1)


def charge_amounts(container: Container) -> dict[date, int]:
    with container.sessions() as session:
        rows = session.execute(select(Charge.period_month, Charge.amount_kopecks)).all()
    return {row[0]: row[1] for row in rows}


def event_types(container: Container) -> list[str]:
    with container.engine.connect() as connection:
        return list(connection.scalars(text("SELECT type FROM events ORDER BY sequence")))


def test_a_new_amount_applies_from_its_month(
    client: httpx.Client, container: Container, subscribe: Subscribe
) -> None:
    sid = subscribe()
    change = {"amount": {"value": "420.00", "currency": "RUB"}, "effective_from": "2027-01"}
    answer = client.patch(f"/v1/subscriptions/{sid}", json=change)
    assert answer.status_code == 200, answer.text
    assert answer.json()["amount_changes"] == [
        {"effective_from": "2027-01", "amount": {"value": "420.00", "currency": "RUB"}}
    ]
    assert answer.json()["next_charge_amount"]["value"] == "350.00"  # December still 350
    again = client.patch(f"/v1/subscriptions/{sid}", json=change)
    assert again.status_code == 200
    assert event_types(container).count("subscription.changed") == 1  # idempotent

    container.billing.run(DECEMBER)
    container.billing.run(JANUARY)
    assert charge_amounts(container)[DECEMBER] == 350_00
    assert charge_amounts(container)[JANUARY] == 420_00

    # A month already charged cannot change; nor can the past.
    late = client.patch(
        f"/v1/subscriptions/{sid}",
        json={"amount": {"value": "500.00", "currency": "RUB"}, "effective_from": "2027-01"},
    )
    assert late.status_code == 409
    assert late.json()["field"] == "effective_from"


def test_bad_amount_changes_are_refused_naming_the_field(
    client: httpx.Client, container: Container, subscribe: Subscribe
) -> None:
    sid = subscribe()
    cases = [
        ({"amount": {"value": "420.00", "currency": "RUB"}, "effective_from": "2026-10"}, 422),
        ({"amount": {"value": "0.50", "currency": "RUB"}, "effective_from": "2027-01"}, 422),
        ({"amount": {"value": "420.00", "currency": "RUB"}, "effective_from": "2027-13"}, 422),
        ({"amount": {"value": "420.00", "currency": "RUB"}}, 422),
    ]
    for body, status in cases:
        answer = client.patch(f"/v1/subscriptions/{sid}", json=body)
        assert answer.status_code == status, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json().get("field"), answer.json()
    assert "subscription.changed" not in event_types(container)
    missing = client.patch(
        f"/v1/subscriptions/{uuid.uuid4()}",
        json={"amount": {"value": "420.00", "currency": "RUB"}, "effective_from": "2027-01"},
    )
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")


def test_pause_until_a_date_charges_nothing_and_the_scheduler_resumes(
    client: httpx.Client, container: Container, clock: ManualClock, subscribe: Subscribe
) -> None:
    sid = subscribe()
    paused = client.post(f"/v1/subscriptions/{sid}/pause", json={"resume_on": "2027-01-01"})
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert paused.json()["paused_until"] == "2027-01-01"
    again = client.post(f"/v1/subscriptions/{sid}/pause", json={"resume_on": "2027-01-01"})
    assert again.json()["status"] == "paused"
    assert container.billing.run(DECEMBER).charges_created == 0

    clock.set(datetime(2026, 12, 31, 20, 59, tzinfo=UTC))  # 23:59 on 31 December in Moscow
    assert container.subscriptions.resume_due() == 0
    clock.set(datetime(2026, 12, 31, 21, 0, tzinfo=UTC))
    assert container.subscriptions.resume_due() == 1
    view = client.get(f"/v1/subscriptions/{sid}").json()
    assert view["status"] == "active"
    assert view["status_history"][-1]["cause"] == "resume_date_reached"
    assert "subscription.resumed" in event_types(container)
    assert container.billing.run(JANUARY).charges_created == 1


def test_pause_and_resume_by_the_crm(
    client: httpx.Client, container: Container, subscribe: Subscribe
) -> None:
    sid = subscribe()
    assert client.post(f"/v1/subscriptions/{sid}/pause", json={}).json()["paused_until"] is None
    resumed = client.post(f"/v1/subscriptions/{sid}/resume")
    assert resumed.status_code == 200
    assert resumed.json()["status"] == "active"
    assert client.post(f"/v1/subscriptions/{sid}/resume").json()["status"] == "active"
    past = client.post(f"/v1/subscriptions/{sid}/pause", json={"resume_on": "2026-11-01"})
    assert past.status_code == 422
    assert past.json()["field"] == "resume_on"
    assert event_types(container).count("subscription.paused") == 1


def test_cancel_is_idempotent_and_final(
    client: httpx.Client, container: Container, subscribe: Subscribe
) -> None:
    sid = subscribe()
    first = client.post(f"/v1/subscriptions/{sid}/cancel", json={"cause": "membership_ended"})
    assert first.status_code == 200, first.text
    assert first.json()["cancel_cause"] == "membership_ended"
    second = client.post(f"/v1/subscriptions/{sid}/cancel")
    assert second.status_code == 200
    assert second.json()["cancel_cause"] == "membership_ended"
    assert event_types(container).count("subscription.canceled") == 1
    for action, body in (("pause", {}), ("resume", None)):
        refused = client.post(f"/v1/subscriptions/{sid}/{action}", json=body)
        assert refused.status_code == 409, refused.text
    bad_cause = client.post(f"/v1/subscriptions/{sid}/cancel", json={"cause": "whim"})
    assert bad_cause.status_code == 422


def test_a_foreign_subscription_is_not_found(
    client: httpx.Client, container: Container, api_server: object, subscribe: Subscribe
) -> None:
    sid = subscribe()
    container.organizations.create(OrganizationCreate(code="other", name="Другой"), None)
    other_key = container.access.create_api_key("other", "other", ["admin"])[1]
    other = httpx.Client(
        base_url=str(client.base_url),
        headers={"Authorization": f"Bearer {other_key}"},
        event_hooks={"request": [with_idempotency_key]},
    )
    with other:
        for method, path, body in (
            ("GET", "", None),
            (
                "PATCH",
                "",
                {"amount": {"value": "1.00", "currency": "RUB"}, "effective_from": "2027-01"},
            ),
            ("POST", "/cancel", None),
            ("POST", "/pause", {}),
            ("POST", "/resume", None),
        ):
            answer = other.request(method, f"/v1/subscriptions/{sid}{path}", json=body)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.headers["content-type"].startswith("application/problem+json")
    assert client.get(f"/v1/subscriptions/{sid}").json()["status"] == "active"
