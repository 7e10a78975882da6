"""`openapi.yaml` is the contract: it must equal what the application generates."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from core.errors import PROBLEM_BASE, DomainError
from core.http import EDGE_PROBLEMS, HTTP_METHODS, PROBLEM_JSON
from vznos.contract import generated_openapi
from vznos.problems import subclasses

ROOT = Path(__file__).resolve().parent.parent


def test_openapi_yaml_matches_the_application() -> None:
    committed = yaml.safe_load((ROOT / "openapi.yaml").read_text(encoding="utf-8"))
    generated = generated_openapi()
    assert committed == generated, (
        "openapi.yaml drifted from the app: review the change, then run "
        "`vznos openapi --write openapi.yaml`"
    )


def test_every_route_is_documented() -> None:
    paths = generated_openapi()["paths"]
    for required in (
        "/v1/members/{external_id}",
        "/v1/members/{external_id}/subscriptions",
        "/v1/members/{external_id}/account",
        "/v1/subscriptions/{subscription_id}",
        "/v1/subscriptions/{subscription_id}/cancel",
        "/v1/organizations",
        "/webhooks/yookassa",
        "/healthz",
        "/readyz",
    ):
        assert required in paths


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            if method in HTTP_METHODS:
                yield path, method, operation


def test_every_error_answer_is_the_one_problem_schema() -> None:
    """A CRM parses one shape for every 4xx/5xx: `Problem`, as application/problem+json."""
    spec = generated_openapi()
    checked = 0
    for path, method, operation in _operations(spec):
        for code, response in operation["responses"].items():
            if int(code) < 400:
                continue
            assert list(response["content"]) == [PROBLEM_JSON], (method, path, code)
            media = response["content"][PROBLEM_JSON]
            assert media["schema"] == {"$ref": "#/components/schemas/Problem"}, (method, path)
            if "example" in media:
                assert media["example"]["status"] == int(code)
            checked += 1
    assert checked > 300


def test_the_problem_schema_lists_every_type_the_code_can_answer_with() -> None:
    spec = generated_openapi()
    problem = spec["components"]["schemas"]["Problem"]
    listed = set(problem["properties"]["type"]["examples"])
    raised = {PROBLEM_BASE + cls.type_slug for cls in subclasses(DomainError)}
    edge = {PROBLEM_BASE + slug for slug in EDGE_PROBLEMS}
    assert raised | edge <= listed
    # The types the CRM branches on most, by name: a rename would break integrations.
    for slug in ("invalid-input", "not-found", "missing-scope", "rate-limited", "member-erased"):
        assert f"`{PROBLEM_BASE}{slug}`" in problem["description"]
    assert {"type", "title", "status"} <= set(problem["required"])


def test_a_problem_type_always_comes_with_the_same_status() -> None:
    """A CRM branches on `type`: one type answered with two statuses is two errors under one
    name (refunds once said 409 for a reused Idempotency-Key where the rest said 422)."""
    generated_openapi()  # imports every module that defines errors
    statuses: dict[str, set[int]] = {}
    classes: list[type[DomainError]] = [DomainError, *subclasses(DomainError)]
    for cls in classes:
        statuses.setdefault(cls.type_slug, set()).add(cls.status)
    assert {slug: s for slug, s in statuses.items() if len(s) > 1} == {}


def test_every_operation_is_described_and_every_body_has_an_example() -> None:
    spec = generated_openapi()
    schemas = spec["components"]["schemas"]
    for path, method, operation in _operations(spec):
        assert operation.get("description"), f"{method.upper()} {path} has no description"
        body = operation.get("requestBody", {}).get("content", {}).get("application/json")
        if body is None or path.startswith("/webhooks/"):
            continue
        schema = body["schema"]
        schema = next((s for s in schema.get("anyOf", []) if "$ref" in s), schema)
        target = schemas[schema["$ref"].rsplit("/", 1)[-1]] if "$ref" in schema else schema
        assert target.get("examples") or body.get("example"), f"{method.upper()} {path}"


def test_links_name_real_operations_and_their_parameters() -> None:
    """Links tell a CRM (and schemathesis' stateful phase) what to do with what it created."""
    spec = generated_openapi()
    by_id = {op["operationId"]: op for _, _, op in _operations(spec)}
    links = [
        (path, link)
        for path, _, operation in _operations(spec)
        for response in operation["responses"].values()
        for link in response.get("links", {}).values()
    ]
    assert len(links) >= 30
    for source, link in links:
        target = by_id[link["operationId"]]
        declared = {p["name"] for p in target.get("parameters", []) if p["in"] == "path"}
        assert set(link["parameters"]) == declared, (source, link)
        for expression in link["parameters"].values():
            assert expression.startswith(("$response.body#/", "$request.path.")), expression
    created = spec["paths"]["/v1/members/{external_id}/subscriptions"]["post"]["responses"]["201"]
    assert "GetSubscription" in created["links"]


def test_upserting_puts_document_both_answers() -> None:
    spec = generated_openapi()
    for path in ("/v1/members/{external_id}", "/v1/organizations/{code}"):
        responses = spec["paths"][path]["put"]["responses"]
        assert {"200", "201"} <= set(responses), path
