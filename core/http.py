"""HTTP edge plumbing: every error leaves as `application/problem+json`."""

from __future__ import annotations

import re
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BeforeValidator
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import PROBLEM_BASE, DomainError

log = structlog.get_logger("http")

PROBLEM_JSON = "application/problem+json"
HTTP_METHODS = frozenset({"get", "put", "post", "delete", "patch", "options", "head", "trace"})

PROBLEM_SCHEMA: dict[str, Any] = {
    "content": {
        PROBLEM_JSON: {
            "schema": {
                "type": "object",
                "properties": {
                    "type": {"type": "string"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "field": {"type": "string"},
                },
                "required": ["type", "title", "status"],
            }
        }
    }
}


# Problems the edge renders itself (not raised as a DomainError): slug → (status, title).
EDGE_PROBLEMS: dict[str, tuple[int, str]] = {
    "malformed-body": (400, "There was an error parsing the body"),
    "not-found": (404, "Not Found"),
    "method-not-allowed": (405, "Method Not Allowed"),
    "internal-error": (500, "Internal error"),
    "not-ready": (503, "Not ready"),
}


def _integral(value: Any) -> int | None:
    # JSON Schema's "integer" includes 25.0; a string "25" or a boolean is refused.
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise ValueError("Input should be a valid integer")


# An integer in a request body, as JSON Schema means it: `Annotated[int, Field(...), INTEGRAL]`
# (the constraints before it, so that they reach the schema).
INTEGRAL = BeforeValidator(_integral)


def _number(value: Any) -> Any:
    # JSON Schema's "number" is neither a boolean nor a string (pydantic would read `false` as
    # 0.0 and "2" as 2.0).
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    raise ValueError("Input should be a valid number")


# A number (not only integers) in a request body: `Annotated[float, Field(...), NUMBER]`.
NUMBER = BeforeValidator(_number)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"description": "Problem", **PROBLEM_SCHEMA} for status in statuses}


def problem(status: int, slug: str, title: str, detail: str, **extra: Any) -> JSONResponse:
    body = {"type": PROBLEM_BASE + slug, "title": title, "status": status, "detail": detail}
    body.update({k: v for k, v in extra.items() if v is not None})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def _field_of(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "path", "query", "header")]
    return ".".join(parts) or "body"


def _documented_methods(request: Request) -> list[str]:
    app = request.app
    table: list[tuple[re.Pattern[str], list[str]]] | None = getattr(
        app.state, "documented_methods", None
    )
    if table is None:
        table = []
        for template, operations in app.openapi().get("paths", {}).items():
            parts = re.split(r"(\{[^/{}]+\})", template)
            regex = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
            methods = [m.upper() for m in operations if m in HTTP_METHODS]
            table.append((re.compile(f"^{regex}$"), methods))
        app.state.documented_methods = table
    for pattern, methods in table:
        if pattern.match(request.url.path):
            return methods
    return []


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    def _domain(request: Request, exc: DomainError) -> JSONResponse:
        log.info(
            "request.refused",
            path=request.url.path,
            status=exc.status,
            problem=exc.type_slug,
            field=exc.field,
        )
        return JSONResponse(
            exc.problem(), status_code=exc.status, media_type=PROBLEM_JSON, headers=exc.headers
        )

    @app.exception_handler(RequestValidationError)
    def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                # A body that is not JSON at all: the location is a byte offset, not a field.
                "field": "body"
                if err.get("type") == "json_invalid"
                else _field_of(err.get("loc", ())),
                "message": str(err.get("msg", "")),
            }
            for err in exc.errors()
        ]
        first = errors[0] if errors else {"field": "body", "message": "invalid request"}
        log.info("request.invalid", path=request.url.path, field=first["field"])
        return problem(
            422,
            "invalid-input",
            "Invalid input",
            f"{first['field']}: {first['message']}",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {400: "malformed-body", 404: "not-found", 405: "method-not-allowed"}.get(
            exc.status_code, "http-error"
        )
        # FastAPI's only 400 is a body it could not decode (not UTF-8, not the declared type).
        field = "body" if exc.status_code == 400 else None
        response = problem(exc.status_code, slug, str(exc.detail), str(exc.detail), field=field)
        response.headers.update(exc.headers or {})
        if exc.status_code == 405:
            # RFC 9110: list every method the resource has, not just one route's.
            allowed = _documented_methods(request)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response

    @app.exception_handler(Exception)
    def _bug(request: Request, exc: Exception) -> JSONResponse:
        # A 500 always means a bug: log it whole, tell the caller nothing about internals.
        log.exception("request.failed", path=request.url.path)
        return problem(500, "internal-error", "Internal error", "an unexpected error occurred")
