from __future__ import annotations

from core.errors import InvalidInput


class InvalidRetryPolicy(InvalidInput):
    type_slug = "invalid-retry-policy"
    title = "Invalid retry policy"
