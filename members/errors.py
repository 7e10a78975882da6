from __future__ import annotations

from core.errors import Conflict, Gone, InvalidInput, NotFound


class OrganizationNotFound(NotFound):
    type_slug = "organization-not-found"
    title = "Organization not found"


class MemberNotFound(NotFound):
    type_slug = "member-not-found"
    title = "Member not found"


class OrganizationExists(Conflict):
    type_slug = "organization-exists"
    title = "Organization already exists"


class InvalidTimezone(InvalidInput):
    type_slug = "invalid-timezone"
    title = "Unknown time zone"


class MemberErased(Gone):
    type_slug = "member-erased"
    title = "Member erased"


class OrganizationCycle(InvalidInput):
    type_slug = "organization-cycle"
    title = "The move would make a cycle"
