"""No mass assignment (OWASP API3, reliability T23): every request body the app accepts, and
every object nested in one, forbids unknown fields; sending `status`, `id`, an organisation or
an amount field the operation does not take is a 422 naming it, and changes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from limits import parse_many
from sqlalchemy import text

from vznos.container import Container
from vznos.contract import generated_openapi

SMUGGLED = ("id", "status", "organization_id", "amount_kopecks", "created_at", "role")
METHODS = ("post", "put", "patch")


def _request_schemas(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                yield path, method, body["schema"]


def _objects(spec: dict[str, Any], schema: dict[str, Any], seen: set[str]) -> Iterator[str]:
    """Names (or inline paths) of every object schema reachable from `schema`, checked."""
    ref = schema.get("$ref")
    if ref:
        name = ref.rsplit("/", 1)[-1]
        if name in seen:
            return
        seen.add(name)
        target = spec["components"]["schemas"][name]
        if target.get("type") == "object" or "properties" in target:
            assert target.get("additionalProperties") is False, f"{name} accepts unknown fields"
            yield name
        yield from _objects(spec, target, seen)
        return
    for key in ("anyOf", "oneOf", "allOf", "prefixItems"):
        for part in schema.get(key, []):
            yield from _objects(spec, part, seen)
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            yield from _objects(spec, schema[key], seen)
    for sub in schema.get("properties", {}).values():
        yield from _objects(spec, sub, seen)


def test_every_request_model_forbids_unknown_fields() -> None:
    spec = generated_openapi()
    checked: set[str] = set()
    bodies = list(_request_schemas(spec))
    assert len(bodies) >= 10  # the walk found the API's writes
    for path, method, schema in bodies:
        if path.startswith("/webhooks/"):
            continue  # YooKassa's notification: its shape is YooKassa's, stored as it came
        assert "$ref" in schema or schema.get("type") != "object", (
            f"{method.upper()} {path}: an inline object body escapes this check"
        )
        checked.update(_objects(spec, schema, set()))
    for expected in ("MemberUpsert", "SubscriptionCreate", "MoneyIn", "Consent"):
        assert expected in checked


def _example(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema["$ref"].rsplit("/", 1)[-1]
    component = spec["components"]["schemas"][ref]
    examples = component.get("examples")
    return dict(examples[0]) if examples else {}


def _path_of(spec: dict[str, Any], path: str, method: str) -> str:
    for parameter in spec["paths"][path][method].get("parameters", []):
        if parameter["in"] == "path":
            schema = parameter["schema"]
            example = parameter.get("example") or schema.get("examples", [None])[0]
            if example is None:
                example = "00000000-0000-4000-8000-000000000000" if schema.get("format") else "x-1"
            path = path.replace("{" + parameter["name"] + "}", str(example))
    return path


def test_smuggled_fields_are_refused_by_name(client: httpx.Client, container: Container) -> None:
    spec = generated_openapi()
    # Hundreds of requests in a second: the rate limit has its own test.
    container.rate_limiter.items = parse_many("100000/second")
    with container.engine.connect() as connection:
        before = connection.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one()
    tried = 0
    for path, method, schema in _request_schemas(spec):
        if path.startswith("/webhooks/") or "$ref" not in schema:
            continue
        example = _example(spec, schema)
        url = _path_of(spec, path, method)
        for field in SMUGGLED:
            if field in example:
                continue
            answer = client.request(method, url, json={**example, field: "x"})
            assert answer.status_code == 422, (method, path, field, answer.text)
            problem = answer.json()
            if example:
                assert problem["field"] == field, (method, path, problem)
            else:  # no example to start from: the smuggled field is among the errors
                assert field in [e["field"] for e in problem["errors"]], (method, path, problem)
            assert problem["type"].endswith("/invalid-input")
            tried += 1
    assert tried >= 50
    with container.engine.connect() as connection:
        for table in ("organizations", "members", "subscriptions", "ledger_entries", "refunds"):
            rows = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            assert rows == (1 if table == "organizations" else 0), table
        after = connection.execute(text("SELECT count(*) FROM idempotency_keys")).scalar_one()
    assert after == before  # refusals release their keys


@pytest.mark.parametrize("field", SMUGGLED)
def test_nested_objects_refuse_fields_too(client: httpx.Client, field: str) -> None:
    client.put("/v1/members/m-1", json={"organization_code": "ppo-1", "full_name": "Анна"})
    body = {
        "amount": {"value": "350.00", "currency": "RUB", field: 1},
        "billing_day": 5,
        "consent": {"text_version": "2026-11", "accepted_at": "2026-11-23T06:55:00Z"},
        "return_url": "https://crm.example.org/dues/thanks",
    }
    answer = client.post("/v1/members/m-1/subscriptions", json=body)
    assert answer.status_code == 422
    assert answer.json()["field"] == f"amount.{field}"


def _resolved(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if ref:
        resolved: dict[str, Any] = spec["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        return resolved
    return schema


def _temporal_fields(spec: dict[str, Any], schema: dict[str, Any], prefix: str) -> Iterator[str]:
    """Dotted names of the `date` / `date-time` fields of a request body (nested included)."""
    schema = _resolved(spec, schema)
    for name, sub in schema.get("properties", {}).items():
        for part in [sub, *sub.get("anyOf", [])]:
            part = _resolved(spec, part)
            if part.get("format") in ("date", "date-time"):
                yield prefix + name
            elif "properties" in part:
                yield from _temporal_fields(spec, part, f"{prefix}{name}.")


def _with(body: dict[str, Any], dotted: str, value: object) -> dict[str, Any]:
    head, _, rest = dotted.partition(".")
    if not rest:
        return {**body, head: value}
    inner = body.get(head)
    return {**body, head: _with(inner if isinstance(inner, dict) else {}, rest, value)}


# A JSON number is not a date (pydantic's lax mode read it as a Unix timestamp), and a date-time
# is RFC 3339: a bare date or one without an offset is refused too.
NOT_DATES: tuple[object, ...] = (0, 20260115, 1.5, "20260115", "2026-01-15T00:00:00", True)


def test_dates_and_instants_are_strings_of_their_format(
    client: httpx.Client, container: Container
) -> None:
    spec = generated_openapi()
    container.rate_limiter.items = parse_many("100000/second")
    tried: set[str] = set()
    for path, method, schema in _request_schemas(spec):
        if path.startswith("/webhooks/") or "$ref" not in schema:
            continue
        example = _example(spec, schema)
        url = _path_of(spec, path, method)
        for field in _temporal_fields(spec, schema, ""):
            for value in NOT_DATES:
                answer = client.request(method, url, json=_with(example, field, value))
                assert answer.status_code == 422, (method, path, field, value, answer.text)
                fields = [e["field"] for e in answer.json()["errors"]]
                assert field in fields, (method, path, field, value, answer.json())
            tried.add(f"{method} {path} {field}")
    for path, operations in spec["paths"].items():
        get = operations.get("get")
        for parameter in (get or {}).get("parameters", []):
            formats = [parameter["schema"], *parameter["schema"].get("anyOf", [])]
            if parameter["in"] != "query" or not any(
                f.get("format") == "date-time" for f in formats
            ):
                continue
            for value in ("0", "0.5", "1700000000", "2026-11-23", "2026-11-23T07:00:00"):
                answer = client.get(_path_of(spec, path, "get"), params={parameter["name"]: value})
                assert answer.status_code in (404, 422), (path, parameter["name"], answer.text)
                if answer.status_code == 422:  # other required parameters may be named too
                    fields = [e["field"] for e in answer.json()["errors"]]
                    assert parameter["name"] in fields, answer.json()
            tried.add(f"get {path} {parameter['name']}")
    # The walk found them: a member's dates, a consent's instant, a key's expiry, the queries.
    assert {
        "put /v1/members/{external_id} joined_on",
        "post /v1/members/{external_id}/subscriptions consent.accepted_at",
        "post /v1/api-keys expires_at",
        "get /v1/audit-events until",
        "get /v1/payments created_from",
    } <= tried, tried
    with container.engine.connect() as connection:
        for table in ("members", "subscriptions", "ledger_entries", "api_keys"):
            rows = connection.execute(text(f"SELECT count(*) FROM {table}")).scalar_one()
            assert rows == (1 if table == "api_keys" else 0), table
