"""structlog, configured once by the composition root: JSON in production, pretty in a terminal.

Events go through the standard `logging` module, so every library's records and ours end up in
one stream, and test runners can capture them.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal

import structlog

REDACTED = "[redacted]"
# Event fields that name personal data, card data or secrets: dropped whatever their value.
SENSITIVE_KEYS = frozenset(
    {
        "full_name",
        "name_of_member",
        "email",
        "phone",
        "birth_date",
        "date_of_birth",
        "gateway_token",
        "card_token",
        "card_number",
        "pan",
        "cvc",
        "cvv",
        "secret",
        "secret_key",
        "password",
        "authorization",
        "api_key",
        "token",
    }
)
EMAIL_PATTERN = re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}")
PHONE_PATTERN = re.compile(r"\+[1-9][0-9]{9,14}")
DIGIT_RUN_PATTERN = re.compile(r"(?<![0-9])[0-9](?:[ -]?[0-9]){12,18}(?![0-9])")


def luhn_valid(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _mask_pan(match: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", match.group(0))
    return REDACTED if luhn_valid(digits) else match.group(0)


def mask_text(text: str) -> str:
    """Mask what looks like an email, a phone number or a card number inside free text."""
    text = EMAIL_PATTERN.sub(REDACTED, text)
    text = PHONE_PATTERN.sub(REDACTED, text)
    return DIGIT_RUN_PATTERN.sub(_mask_pan, text)


def redact_personal_data(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: logs carry ids, never personal data, card data or secrets. Known
    keys are dropped to a marker; strings elsewhere are scanned for emails, phones and card
    numbers (a last line of defence for exception messages and third-party text)."""
    for key, value in list(event_dict.items()):
        if key.lower() in SENSITIVE_KEYS:
            event_dict[key] = REDACTED
        elif isinstance(value, str):
            event_dict[key] = mask_text(value)
    return event_dict


class RedactingFilter(logging.Filter):
    """The same masking for records that bypass structlog (uvicorn, libraries)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):
            return True
        masked = mask_text(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def configure_logging(
    fmt: Literal["auto", "json", "console"] = "auto", level: str = "INFO"
) -> None:
    use_console = sys.stderr.isatty() if fmt == "auto" else fmt == "console"
    renderer: structlog.types.Processor = (
        structlog.dev.ConsoleRenderer() if use_console else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            redact_personal_data,
            renderer,
        ],
        wrapper_class=structlog.stdlib.BoundLogger,
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=False,
    )
    root = logging.getLogger()
    root.setLevel(level.upper())
    if not root.handlers:  # a test runner or an embedding host may already capture records
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.addFilter(RedactingFilter())
        root.addHandler(handler)
    # Third-party chatter (httpx logs every request URL) stays out of the event stream.
    for noisy in ("httpx", "httpcore", "dramatiq", "pika", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
