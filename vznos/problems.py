"""The contract's errors: one `Problem` schema (RFC 9457, `application/problem+json`) that every
4xx and 5xx answer of the API references, and the catalogue of its stable `type` values.

The catalogue is read from the code, not written by hand: every `DomainError` subclass the app
imports, plus the few problems the edge renders itself. A type that appears or disappears
changes `openapi.yaml`, so the drift test makes every change of the catalogue a reviewed one.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from http import HTTPStatus
from typing import Any

from core.errors import PROBLEM_BASE, DomainError
from core.http import EDGE_PROBLEMS, PROBLEM_JSON

PROBLEM_REF = "#/components/schemas/Problem"


def subclasses(cls: type[DomainError]) -> Iterator[type[DomainError]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from subclasses(sub)


def problem_catalog() -> list[tuple[str, int, str]]:
    """(type, status, title) of every problem the API can answer with, by status (the app's
    modules must be imported: they define the errors). A type comes with one status
    (tests/test_openapi.py holds it)."""
    found: dict[tuple[str, int], str] = {}
    classes: list[type[DomainError]] = [DomainError, *subclasses(DomainError)]
    for cls in classes:
        found.setdefault((PROBLEM_BASE + cls.type_slug, cls.status), cls.title)
    for slug, (status, title) in EDGE_PROBLEMS.items():
        found.setdefault((PROBLEM_BASE + slug, status), title)
    return sorted(
        ((uri, status, title) for (uri, status), title in found.items()),
        key=lambda row: (row[1], row[0]),
    )


def _problem_schema(catalog: list[tuple[str, int, str]]) -> dict[str, Any]:
    rows = "\n".join(f"| `{uri}` | {status} | {title} |" for uri, status, title in catalog)
    return {
        "title": "Problem",
        "type": "object",
        "description": (
            "An error (RFC 9457). `type` is stable: branch on it, not on `title` or `detail`, "
            "which are for people and may change. `field` names the input at fault (a dotted "
            "path into the body, or a path/query parameter; `body` when the body as a whole is "
            "wrong). Further members may appear (e.g. `refund_id` for an earlier refund).\n\n"
            "| type | status | title |\n| --- | --- | --- |\n" + rows
        ),
        "properties": {
            "type": {
                "type": "string",
                "format": "uri",
                "description": "Stable identifier of the kind of error (see the table above)",
                "examples": sorted({uri for uri, _, _ in catalog}),
            },
            "title": {"type": "string", "description": "Short summary of the type"},
            "status": {"type": "integer", "description": "The HTTP status code"},
            "detail": {"type": "string", "description": "What went wrong this time"},
            "field": {"type": "string", "description": "The input at fault"},
            "instance": {"type": "string"},
            "errors": {
                "type": "array",
                "description": "Every invalid input, when a request has several (422)",
                "items": {
                    "type": "object",
                    "properties": {
                        "field": {"type": "string"},
                        "message": {"type": "string"},
                    },
                    "required": ["field", "message"],
                },
            },
        },
        "required": ["type", "title", "status"],
    }


def _example(status: int, catalog: list[tuple[str, int, str]]) -> dict[str, Any] | None:
    generic = {
        400: "malformed-body",
        401: "invalid-credentials",
        403: "missing-scope",
        404: "not-found",
        409: "conflict",
        410: "gone",
        413: "payload-too-large",
        422: "invalid-input",
        429: "rate-limited",
        503: "service-unavailable",
    }.get(status)
    titles = {(uri, code): title for uri, code, title in catalog}
    title = titles.get((PROBLEM_BASE + str(generic), status))
    if title is None:
        return None
    example: dict[str, Any] = {
        "type": PROBLEM_BASE + str(generic),
        "title": title,
        "status": status,
        "detail": EXAMPLE_DETAILS.get(status, HTTPStatus(status).phrase),
    }
    if status in (400, 413, 422):
        example["field"] = "body"
    if status == 422:
        example["errors"] = [{"field": "body", "message": EXAMPLE_DETAILS[422][6:]}]
    return example


EXAMPLE_DETAILS = {
    401: "missing or invalid API key",
    403: "this API key lacks the scope the operation needs",
    404: "nothing with this id in the caller's organisation subtree",
    409: "the request conflicts with the object's current state",
    413: "the body is larger than 1048576 bytes",
    422: "body: Input should be a valid dictionary or object",
    429: "too many requests from this API key; retry in 1 s",
}


def document_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """The OpenAPI document with every problem response pointing at the one `Problem` schema,
    with an example, and the catalogue of `type` values in that schema."""
    document = copy.deepcopy(schema)
    catalog = problem_catalog()
    document.setdefault("components", {}).setdefault("schemas", {})["Problem"] = _problem_schema(
        catalog
    )
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict):
                continue
            for code, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if not str(code).isdigit() or int(code) < 400 or PROBLEM_JSON not in content:
                    continue
                media: dict[str, Any] = {"schema": {"$ref": PROBLEM_REF}}
                example = _example(int(code), catalog)
                if example is not None:
                    media["example"] = example
                content[PROBLEM_JSON] = media
                if response.get("description") in (None, "", "Problem"):
                    response["description"] = HTTPStatus(int(code)).phrase
    return document
