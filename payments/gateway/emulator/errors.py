"""API errors in YooKassa's wire shape."""

from __future__ import annotations

import uuid
from typing import Any

# YooKassa pairs every error status with one `code`; keeping the table here lets faults and the
# engine produce identical bodies.
CODE_BY_STATUS: dict[int, str] = {
    400: "invalid_request",
    401: "invalid_credentials",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    410: "gone",
    415: "unsupported_media_type",
    429: "too_many_requests",
    500: "internal_server_error",
}


def error_body(code: str, description: str, parameter: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "error",
        "id": str(uuid.uuid4()),
        "code": code,
        "description": description,
    }
    if parameter is not None:
        body["parameter"] = parameter
    return body


class EmulatorError(Exception):
    """An API error that the HTTP layer turns into a YooKassa error response."""

    def __init__(
        self, http_status: int, code: str, description: str, parameter: str | None = None
    ) -> None:
        super().__init__(f"{http_status} {code}: {description}")
        self.http_status = http_status
        self.code = code
        self.description = description
        self.parameter = parameter

    def body(self) -> dict[str, Any]:
        return error_body(self.code, self.description, self.parameter)


def invalid(description: str, parameter: str | None = None) -> EmulatorError:
    return EmulatorError(400, "invalid_request", description, parameter)


def not_found(description: str) -> EmulatorError:
    return EmulatorError(404, "not_found", description)


class CheckoutError(Exception):
    """A problem with what a member typed on the checkout page: shown on the form, never a 500."""

    def __init__(self, message: str, http_status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.http_status = http_status
