"""An organisation's retry policy over HTTP: the default, its own, inherited by its subtree; a
table with an unknown reason is a 422 naming it and nothing changes; the policy drives the
engine."""

from __future__ import annotations

from datetime import date

import httpx

from members.schemas import OrganizationCreate
from payments.gateway.emulator import EmulatorServer
from payments.retries.policy import KNOWN_REASONS
from tests.conftest import Subscribe
from tests.payments.test_recurring_engine import submit_created
from vznos.container import Container

DECEMBER = date(2026, 12, 1)


def test_the_default_policy_covers_every_reason(client: httpx.Client) -> None:
    answer = client.get("/v1/organizations/ppo-1/retry-policy")
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["source"] == "default"
    assert body["schedule_days"] == [1, 3, 7]
    assert set(body["reasons"]) == KNOWN_REASONS
    assert body["reasons"]["insufficient_funds"] == {"action": "retry", "max_retries": 3}
    assert body["reasons"]["permission_revoked"]["action"] == "new_card"


def test_an_organizations_policy_is_inherited_by_its_subtree(
    client: httpx.Client, container: Container
) -> None:
    container.organizations.create(
        OrganizationCreate(code="ppo-1-shop", name="Цех", parent_code="ppo-1"), None
    )
    answer = client.put(
        "/v1/organizations/ppo-1/retry-policy",
        json={
            "schedule_days": [2, 5],
            "local_hour": 12,
            "reasons": {"insufficient_funds": {"action": "retry", "max_retries": 2}},
        },
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["source"] == "own"
    child = client.get("/v1/organizations/ppo-1-shop/retry-policy").json()
    assert child["source"] == "inherited"
    assert child["inherited_from"] == "ppo-1"
    assert child["schedule_days"] == [2, 5]
    assert child["reasons"]["insufficient_funds"]["max_retries"] == 2
    assert child["reasons"]["general_decline"]["max_retries"] == 2  # a default row stays


def test_bad_tables_are_refused_naming_the_field_and_change_nothing(client: httpx.Client) -> None:
    before = client.get("/v1/organizations/ppo-1/retry-policy").json()
    cases = [
        ({"reasons": {"no_such_reason": {"action": "stop"}}}, "reasons.no_such_reason"),
        (
            {"reasons": {"insufficient_funds": {"action": "retry", "max_retries": 4}}},
            "reasons.insufficient_funds.max_retries",
        ),
        ({"schedule_days": [3, 1]}, "schedule_days"),
        ({"schedule_days": [1, 40]}, "schedule_days"),
    ]
    for body, field in cases:
        answer = client.put("/v1/organizations/ppo-1/retry-policy", json=body)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["field"] == field, answer.json()
    wrong_action = client.put(
        "/v1/organizations/ppo-1/retry-policy",
        json={"reasons": {"insufficient_funds": {"action": "pray"}}},
    )
    assert wrong_action.status_code == 422
    assert client.get("/v1/organizations/ppo-1/retry-policy").json() == before
    unknown = client.get("/v1/organizations/nowhere/retry-policy")
    assert unknown.status_code == 404


def test_the_policy_drives_the_engine(
    client: httpx.Client, container: Container, emulator: EmulatorServer, subscribe: Subscribe
) -> None:
    subscription_id = subscribe()
    client.put(
        "/v1/organizations/ppo-1/retry-policy",
        json={"reasons": {"insufficient_funds": {"action": "new_card"}}},
    )
    method = str(emulator.state.payments()[0]["payment_method_id"])
    emulator.state.script_outcomes(method, ["insufficient_funds"])
    container.billing.run(DECEMBER)
    submit_created(container)
    view = client.get(f"/v1/subscriptions/{subscription_id}").json()
    assert view["status"] == "needs_payment_method"
    assert view["last_charge"]["period"] == "2026-12"
    assert view["last_charge"]["attempts"][0]["decision"] == "new_card"
