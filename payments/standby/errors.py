from __future__ import annotations

from core.errors import Conflict, InvalidInput, NotFound


class ShortfallNotFound(NotFound):
    type_slug = "shortfall-not-found"
    title = "Payroll shortfall not found"


class ShortfallConflict(Conflict):
    type_slug = "shortfall-conflict"
    title = "A different shortfall is already recorded for this month"


class InvalidShortfall(InvalidInput):
    type_slug = "invalid-shortfall"
    title = "Invalid payroll shortfall"
