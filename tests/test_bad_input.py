"""Bad input at the API edge: a clear 4xx `application/problem+json` naming the field, logged,
and nothing changed — no rows written, nothing sent to the gateway. Never a 500."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator, MutableMapping
from typing import Any

import httpx
import pytest
import structlog
from sqlalchemy import text

from core.serving import BackgroundServer
from payments.gateway.emulator import EmulatorServer
from vznos.container import Container

PROBLEM_JSON = "application/problem+json"
MEMBER = "m-1001"
MEMBER_BODY: dict[str, object] = {
    "organization_code": "ppo-1",
    "full_name": "Иван Петров",
    "email": "ivan@example.org",
    "phone": "+79161234567",
}
# Everything a refused subscription start could have written.
SUBSCRIPTION_TABLES = (
    "subscriptions",
    "charges",
    "charge_attempts",
    "ledger_entries",
    "ledger_postings",
)

Body = Callable[..., dict[str, object]]
Logs = list[MutableMapping[str, Any]]


def assert_problem(response: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    """The response is a problem+json with this status and (when given) this `field`."""
    assert response.status_code != 500, response.text
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM_JSON), response.headers
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("https://")
    assert problem["title"]
    if field is not None:
        assert problem.get("field") == field, problem
    return problem


def assert_logged(logs: Logs, field: str | None) -> None:
    refusals = [e for e in logs if e["event"] in ("request.invalid", "request.refused")]
    assert refusals, logs
    if field is not None:
        assert any(e.get("field") == field for e in refusals), refusals


def count_rows(container: Container, *tables: str) -> dict[str, int]:
    with container.engine.connect() as connection:
        return {
            table: connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            for table in tables
        }


@pytest.fixture
def logs() -> Iterator[Logs]:
    with structlog.testing.capture_logs() as captured:
        yield captured


@pytest.fixture
def member(client: httpx.Client) -> str:
    created = client.put(f"/v1/members/{MEMBER}", json=MEMBER_BODY)
    assert created.status_code == 201, created.text
    return MEMBER


def assert_no_subscription(
    client: httpx.Client, container: Container, emulator: EmulatorServer, external_id: str
) -> None:
    account = client.get(f"/v1/members/{external_id}/account")
    assert account.status_code == 200, account.text
    assert account.json()["lines"] == []
    assert set(count_rows(container, *SUBSCRIPTION_TABLES).values()) == {0}
    assert emulator.state.payments() == []


# --- money ---------------------------------------------------------------------------------

MONEY_CASES = [
    pytest.param({"value": 350, "currency": "RUB"}, "amount.value", id="json-number"),
    pytest.param({"value": 350.0, "currency": "RUB"}, "amount.value", id="json-float"),
    pytest.param({"value": None, "currency": "RUB"}, "amount.value", id="null-value"),
    pytest.param({"value": "-1.00", "currency": "RUB"}, "amount.value", id="negative"),
    pytest.param({"value": "0.00", "currency": "RUB"}, "amount.value", id="zero"),
    pytest.param({"value": "1e3", "currency": "RUB"}, "amount.value", id="exponent"),
    pytest.param({"value": "350.505", "currency": "RUB"}, "amount.value", id="three-decimals"),
    pytest.param({"value": "abc", "currency": "RUB"}, "amount.value", id="letters"),
    pytest.param({"value": "", "currency": "RUB"}, "amount.value", id="empty"),
    pytest.param({"value": " 350.00", "currency": "RUB"}, "amount.value", id="leading-space"),
    pytest.param({"value": "350.00 ", "currency": "RUB"}, "amount.value", id="trailing-space"),
    pytest.param(
        {"value": "350.00\n", "currency": "RUB"},
        "amount.value",
        id="trailing-newline",
    ),
    pytest.param(
        {"value": "350.٠٠", "currency": "RUB"},
        "amount.value",
        id="arabic-indic-digits",
    ),
    pytest.param({"value": "350,00", "currency": "RUB"}, "amount.value", id="decimal-comma"),
    pytest.param({"value": "0350.00", "currency": "RUB"}, "amount.value", id="leading-zero"),
    pytest.param({"value": "350.", "currency": "RUB"}, "amount.value", id="bare-point"),
    pytest.param({"value": "350.00", "currency": "USD"}, "amount.currency", id="usd"),
    pytest.param({"value": "350.00", "currency": "rub"}, "amount.currency", id="lowercase-rub"),
    pytest.param({"value": "350.00"}, "amount.currency", id="missing-currency"),
    pytest.param({"currency": "RUB"}, "amount.value", id="missing-value"),
    pytest.param(
        {"value": "350.00", "currency": "RUB", "note": "x"}, "amount.note", id="extra-key"
    ),
    pytest.param({"value": "350000.01", "currency": "RUB"}, "amount.value", id="over-max"),
    pytest.param(
        {"value": "999999999999999.99", "currency": "RUB"}, "amount.value", id="way-over-max"
    ),
    pytest.param({"value": "0.99", "currency": "RUB"}, "amount.value", id="under-min"),
    pytest.param("350.00", "amount", id="amount-is-a-string"),
    pytest.param(350, "amount", id="amount-is-a-number"),
]


@pytest.mark.parametrize(("amount", "field"), MONEY_CASES)
def test_bad_amount_is_refused_and_nothing_is_charged(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    member: str,
    subscription_body: Body,
    logs: Logs,
    amount: object,
    field: str,
) -> None:
    response = client.post(
        f"/v1/members/{member}/subscriptions", json=subscription_body(amount=amount)
    )
    assert_problem(response, 422, field)
    assert_logged(logs, field)
    assert_no_subscription(client, container, emulator, member)


def test_missing_amount_is_refused(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    member: str,
    subscription_body: Body,
) -> None:
    body = subscription_body()
    del body["amount"]
    response = client.post(f"/v1/members/{member}/subscriptions", json=body)
    assert_problem(response, 422, "amount")
    assert_no_subscription(client, container, emulator, member)


# --- the rest of a subscription start ------------------------------------------------------

CONSENT = {"text_version": "2026-11", "accepted_at": "2026-11-23T06:55:00Z"}

SUBSCRIPTION_CASES = [
    pytest.param({"consent": None}, "consent", id="consent-null"),
    pytest.param(
        {"consent": {"text_version": "2026-11"}}, "consent.accepted_at", id="no-accepted-at"
    ),
    pytest.param(
        {"consent": {**CONSENT, "accepted_at": "2026-11-23T06:55:00"}},
        "consent.accepted_at",
        id="naive-accepted-at",
    ),
    pytest.param(
        {"consent": {**CONSENT, "accepted_at": "yesterday"}},
        "consent.accepted_at",
        id="garbage-accepted-at",
    ),
    pytest.param(
        {"consent": {"accepted_at": CONSENT["accepted_at"]}},
        "consent.text_version",
        id="no-text-version",
    ),
    pytest.param(
        {"consent": {**CONSENT, "text_version": ""}},
        "consent.text_version",
        id="empty-text-version",
    ),
    pytest.param({"consent": {**CONSENT, "ip": "1.2.3.4"}}, "consent.ip", id="consent-extra-key"),
    pytest.param({"consent": "yes"}, "consent", id="consent-is-a-string"),
    pytest.param({"billing_day": 0}, "billing_day", id="billing-day-0"),
    pytest.param({"billing_day": 32}, "billing_day", id="billing-day-32"),
    pytest.param({"billing_day": -1}, "billing_day", id="billing-day-negative"),
    pytest.param({"billing_day": 5.5}, "billing_day", id="billing-day-fraction"),
    pytest.param({"billing_day": None}, "billing_day", id="billing-day-null"),
    pytest.param(
        {"billing_day": "5"},
        "billing_day",
        id="billing-day-string",
    ),
    pytest.param(
        {"billing_day": True},
        "billing_day",
        id="billing-day-bool",
    ),
    pytest.param({"return_url": "not a url"}, "return_url", id="return-url-garbage"),
    pytest.param({"return_url": "ftp://crm.example.org/x"}, "return_url", id="return-url-ftp"),
    pytest.param({"return_url": "javascript:alert(1)"}, "return_url", id="return-url-js"),
    pytest.param({"return_url": ""}, "return_url", id="return-url-empty"),
    pytest.param(
        {"consent": {**CONSENT, "text_version": "2026\x00"}},
        "consent.text_version",
        id="nul-in-text-version",
    ),
    pytest.param({"status": "active"}, "status", id="extra-field-status"),
    pytest.param({"member_id": str(uuid.uuid4())}, "member_id", id="extra-field-member-id"),
]


@pytest.mark.parametrize(("overrides", "field"), SUBSCRIPTION_CASES)
def test_bad_subscription_field_is_refused_and_nothing_is_charged(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    member: str,
    subscription_body: Body,
    logs: Logs,
    overrides: dict[str, object],
    field: str,
) -> None:
    response = client.post(
        f"/v1/members/{member}/subscriptions", json=subscription_body(**overrides)
    )
    assert_problem(response, 422, field)
    assert_logged(logs, field)
    assert_no_subscription(client, container, emulator, member)


@pytest.mark.parametrize("missing", ["consent", "billing_day", "return_url"])
def test_missing_subscription_field_is_refused(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    member: str,
    subscription_body: Body,
    missing: str,
) -> None:
    body = subscription_body()
    del body[missing]
    response = client.post(f"/v1/members/{member}/subscriptions", json=body)
    assert_problem(response, 422, missing)
    assert_no_subscription(client, container, emulator, member)


NOT_JSON_BODIES = [
    pytest.param(b"amount=350", "application/x-www-form-urlencoded", id="form"),
    pytest.param(b"{not json", "application/json", id="broken-json"),
    pytest.param(b"[]", "application/json", id="json-array"),
    pytest.param(b"", "application/json", id="empty"),
    pytest.param(b"\xff\xfe{}", "application/json", id="not-utf8"),
]


@pytest.mark.parametrize(("content", "content_type"), NOT_JSON_BODIES)
def test_subscription_body_that_is_not_a_json_object_is_refused(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    member: str,
    content: bytes,
    content_type: str,
) -> None:
    response = client.post(
        f"/v1/members/{member}/subscriptions",
        content=content,
        headers={"Content-Type": content_type},
    )
    assert_problem(response, 422, "body")
    assert_no_subscription(client, container, emulator, member)


# --- members and organisations -------------------------------------------------------------

MEMBER_CASES = [
    pytest.param({"organization_code": "nope"}, 404, "organization_code", id="unknown-org"),
    pytest.param({"organization_code": "bad code!"}, 422, "organization_code", id="bad-org-code"),
    pytest.param({"email": "not-an-email"}, 422, "email", id="email-garbage"),
    pytest.param({"email": "ivan@"}, 422, "email", id="email-no-domain"),
    pytest.param({"email": ""}, 422, "email", id="email-empty"),
    pytest.param({"phone": "89161234567"}, 422, "phone", id="phone-no-plus"),
    pytest.param({"phone": "+7 916 123-45-67"}, 422, "phone", id="phone-formatted"),
    pytest.param({"phone": "+7916"}, 422, "phone", id="phone-short"),
    pytest.param({"phone": 79161234567}, 422, "phone", id="phone-number"),
    pytest.param({"full_name": ""}, 422, "full_name", id="name-empty"),
    pytest.param({"full_name": "   "}, 422, "full_name", id="name-blank"),
    pytest.param({"full_name": "x" * 301}, 422, "full_name", id="name-too-long"),
    # U+001C–U+001F are space to the contract's `\\s`, though pydantic does not strip them.
    pytest.param({"full_name": "\x1c\x1f"}, 422, "full_name", id="name-separators-only"),
    pytest.param({"joined_on": 0}, 422, "joined_on", id="joined-on-number"),
    pytest.param({"joined_on": 20260115}, 422, "joined_on", id="joined-on-digits"),
    pytest.param({"joined_on": "2026-01-15T00:00:00Z"}, 422, "joined_on", id="joined-on-instant"),
    pytest.param({"status": "active"}, 422, "status", id="extra-field"),
]


@pytest.mark.parametrize(("overrides", "status", "field"), MEMBER_CASES)
def test_bad_member_is_refused_and_not_stored(
    client: httpx.Client,
    container: Container,
    org_code: str,
    logs: Logs,
    overrides: dict[str, object],
    status: int,
    field: str,
) -> None:
    response = client.put("/v1/members/m-2002", json={**MEMBER_BODY, **overrides})
    assert_problem(response, status, field)
    assert_logged(logs, field)
    assert_problem(client.get("/v1/members/m-2002"), 404, "external_id")
    assert count_rows(container, "members") == {"members": 0}


UNSTORABLE_NAMES = [
    pytest.param(b"\\u0000", id="nul"),
    pytest.param(b"\\ud800", id="lone-surrogate"),
]


@pytest.mark.parametrize("escape", UNSTORABLE_NAMES)
def test_member_name_postgres_cannot_store_is_refused(
    client: httpx.Client, container: Container, org_code: str, escape: bytes
) -> None:
    content = b'{"organization_code": "ppo-1", "full_name": "Ivan ' + escape + b'"}'
    response = client.put(
        "/v1/members/m-2002", content=content, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "full_name")
    assert count_rows(container, "members") == {"members": 0}


@pytest.mark.parametrize(
    "name",
    [
        pytest.param("ППО\x00", id="nul"),
        pytest.param("\ud800", id="lone-surrogate"),
    ],
)
def test_organization_name_postgres_cannot_store_is_refused(
    client: httpx.Client, container: Container, name: str
) -> None:
    content = json.dumps({"code": "ppo-2", "name": name}).encode()
    response = client.post(
        "/v1/organizations", content=content, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "name")
    assert count_rows(container, "organizations") == {"organizations": 1}


@pytest.mark.parametrize("missing", ["organization_code", "full_name"])
def test_member_without_a_required_field_is_refused(
    client: httpx.Client, container: Container, org_code: str, missing: str
) -> None:
    body = {k: v for k, v in MEMBER_BODY.items() if k != missing}
    assert_problem(client.put("/v1/members/m-2002", json=body), 422, missing)
    assert count_rows(container, "members") == {"members": 0}


def test_bad_update_leaves_the_member_as_it_was(
    client: httpx.Client, member: str, logs: Logs
) -> None:
    before = client.get(f"/v1/members/{member}").json()
    response = client.put(
        f"/v1/members/{member}", json={**MEMBER_BODY, "full_name": "Пётр", "email": "bad"}
    )
    assert_problem(response, 422, "email")
    assert client.get(f"/v1/members/{member}").json() == before


@pytest.mark.parametrize(("content", "content_type"), NOT_JSON_BODIES)
def test_member_body_that_is_not_a_json_object_is_refused(
    client: httpx.Client, container: Container, org_code: str, content: bytes, content_type: str
) -> None:
    response = client.put(
        "/v1/members/m-2002", content=content, headers={"Content-Type": content_type}
    )
    assert_problem(response, 422, "body")
    assert count_rows(container, "members") == {"members": 0}


BAD_EXTERNAL_IDS = [
    pytest.param("m%201", id="space"),
    pytest.param("%D0%B8%D0%B2%D0%B0%D0%BD", id="cyrillic"),
    pytest.param("x" * 129, id="too-long"),
]


@pytest.mark.parametrize("external_id", BAD_EXTERNAL_IDS)
def test_malformed_external_id_is_refused(
    client: httpx.Client, container: Container, org_code: str, external_id: str
) -> None:
    assert_problem(client.put(f"/v1/members/{external_id}", json=MEMBER_BODY), 422, "external_id")
    assert_problem(client.get(f"/v1/members/{external_id}"), 422, "external_id")
    assert count_rows(container, "members") == {"members": 0}


UNKNOWN_MEMBER_REQUESTS = [
    pytest.param("GET", "/v1/members/nobody", id="get-member"),
    pytest.param("GET", "/v1/members/nobody/account", id="get-account"),
    pytest.param("POST", "/v1/members/nobody/subscriptions", id="start-subscription"),
]


@pytest.mark.parametrize(("method", "path"), UNKNOWN_MEMBER_REQUESTS)
def test_unknown_member_is_404(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    org_code: str,
    subscription_body: Body,
    logs: Logs,
    method: str,
    path: str,
) -> None:
    body = subscription_body() if method == "POST" else None
    response = client.request(method, path, json=body)
    assert_problem(response, 404, "external_id")
    assert_logged(logs, "external_id")
    assert set(count_rows(container, *SUBSCRIPTION_TABLES).values()) == {0}
    assert emulator.state.payments() == []


ORGANIZATION_CASES = [
    pytest.param({"code": "ppo-2", "name": "X", "timezone": "Mars/Base"}, 422, "timezone", id="tz"),
    pytest.param(
        {"code": "ppo-2", "name": "X", "parent_code": "nope"},
        404,
        "parent_code",
        id="unknown-parent",
    ),
    pytest.param({"code": "ppo-1", "name": "X"}, 409, "code", id="existing-code"),
    pytest.param({"code": "bad code", "name": "X"}, 422, "code", id="bad-code"),
    pytest.param({"code": "ppo-2", "name": ""}, 422, "name", id="empty-name"),
    pytest.param({"code": "ppo-2", "name": "X", "id": "1"}, 422, "id", id="extra-field"),
]


@pytest.mark.parametrize(("body", "status", "field"), ORGANIZATION_CASES)
def test_bad_organization_is_refused(
    client: httpx.Client,
    container: Container,
    logs: Logs,
    body: dict[str, object],
    status: int,
    field: str,
) -> None:
    assert_problem(client.post("/v1/organizations", json=body), status, field)
    assert_logged(logs, field)
    assert count_rows(container, "organizations") == {"organizations": 1}


# --- subscriptions by id -------------------------------------------------------------------

SUBSCRIPTION_ID_CASES = [
    pytest.param("GET", str(uuid.uuid4()), 404, id="get-unknown"),
    pytest.param("POST", str(uuid.uuid4()), 404, id="cancel-unknown"),
    pytest.param("GET", "not-a-uuid", 422, id="get-not-uuid"),
    pytest.param("POST", "not-a-uuid", 422, id="cancel-not-uuid"),
    pytest.param("GET", "12345", 422, id="get-number"),
]


@pytest.mark.parametrize(("method", "subscription_id", "status"), SUBSCRIPTION_ID_CASES)
def test_subscription_id_that_names_nothing(
    client: httpx.Client,
    container: Container,
    org_code: str,
    logs: Logs,
    method: str,
    subscription_id: str,
    status: int,
) -> None:
    path = f"/v1/subscriptions/{subscription_id}"
    if method == "POST":
        path += "/cancel"
    assert_problem(client.request(method, path), status, "subscription_id")
    assert_logged(logs, "subscription_id")
    assert count_rows(container, "subscriptions") == {"subscriptions": 0}


# --- one live subscription per member ------------------------------------------------------


def test_second_subscription_while_the_first_is_live_is_409(
    client: httpx.Client,
    container: Container,
    emulator: EmulatorServer,
    member: str,
    subscription_body: Body,
    logs: Logs,
) -> None:
    first = client.post(f"/v1/members/{member}/subscriptions", json=subscription_body())
    assert first.status_code == 201, first.text
    assert first.json()["status"] == "pending_confirmation"
    before = count_rows(container, *SUBSCRIPTION_TABLES)

    second = client.post(
        f"/v1/members/{member}/subscriptions",
        json=subscription_body(amount={"value": "500.00", "currency": "RUB"}, billing_day=10),
    )
    problem = assert_problem(second, 409, "external_id")
    assert problem["subscription_id"] == first.json()["id"]
    assert_logged(logs, "external_id")
    assert count_rows(container, *SUBSCRIPTION_TABLES) == before
    assert len(emulator.state.payments()) == 1
    lines = client.get(f"/v1/members/{member}/account").json()["lines"]
    assert [(line["kind"], line["amount"]["value"]) for line in lines] == [("accrual", "350.00")]


# --- authentication ------------------------------------------------------------------------

ENDPOINTS = [
    pytest.param("POST", "/v1/organizations", {"code": "ppo-9", "name": "X"}, id="create-org"),
    pytest.param("PUT", f"/v1/members/{MEMBER}", MEMBER_BODY, id="upsert-member"),
    pytest.param("GET", f"/v1/members/{MEMBER}", None, id="get-member"),
    pytest.param("GET", f"/v1/members/{MEMBER}/account", None, id="get-account"),
    pytest.param(
        "POST",
        f"/v1/members/{MEMBER}/subscriptions",
        {
            "amount": {"value": "350.00", "currency": "RUB"},
            "billing_day": 5,
            "consent": CONSENT,
            "return_url": "https://crm.example.org/dues/thanks",
        },
        id="start-subscription",
    ),
    pytest.param("GET", f"/v1/subscriptions/{uuid.uuid4()}", None, id="get-subscription"),
    pytest.param("POST", f"/v1/subscriptions/{uuid.uuid4()}/cancel", None, id="cancel"),
]

BAD_CREDENTIALS = [
    pytest.param({"Authorization": "Bearer nope"}, id="bearer-nope"),
    pytest.param({"Authorization": "Bearer vz_not-a-real-key"}, id="bearer-unknown-key"),
    pytest.param({"Authorization": "Bearer"}, id="bearer-without-key"),
    pytest.param({"Authorization": "Basic dXNlcjpwYXNz"}, id="basic"),
    pytest.param({"Authorization": "vz_no-scheme"}, id="no-scheme"),
    pytest.param({}, id="no-header"),
]


@pytest.mark.parametrize("headers", BAD_CREDENTIALS)
@pytest.mark.parametrize(("method", "path", "body"), ENDPOINTS)
def test_bad_api_key_is_401_everywhere(
    api_server: BackgroundServer,
    container: Container,
    emulator: EmulatorServer,
    member: str,
    logs: Logs,
    method: str,
    path: str,
    body: dict[str, object] | None,
    headers: dict[str, str],
) -> None:
    before = count_rows(container, "organizations", "members", *SUBSCRIPTION_TABLES)
    with httpx.Client(base_url=api_server.url, headers=headers, timeout=30) as anonymous:
        response = anonymous.request(method, path, json=body)
    assert_problem(response, 401, None)
    assert_logged(logs, None)
    assert count_rows(container, "organizations", "members", *SUBSCRIPTION_TABLES) == before
    assert emulator.state.payments() == []
