from __future__ import annotations

from core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized


class InvalidCredentials(Unauthorized):
    type_slug = "invalid-credentials"
    title = "Invalid credentials"


class SecondFactorRequired(Unauthorized):
    type_slug = "second-factor-required"
    title = "A one-time code is required"


class MissingScope(Forbidden):
    type_slug = "missing-scope"
    title = "Missing scope"


class ApiKeyNotFound(NotFound):
    type_slug = "api-key-not-found"
    title = "API key not found"


class ApiKeyInactive(Conflict):
    type_slug = "api-key-inactive"
    title = "API key revoked or expired"


class ScopeNotHeld(InvalidInput):
    type_slug = "scope-not-held"
    title = "A key cannot grant what its creator lacks"


class ScopesRequired(InvalidInput):
    type_slug = "scopes-required"
    title = "A key needs at least one scope"


class SessionNotFound(NotFound):
    type_slug = "session-not-found"
    title = "No sign-in session"


class LoginTaken(Conflict):
    type_slug = "login-taken"
    title = "Login already taken"


class AuditCursorNotFound(NotFound):
    type_slug = "audit-event-not-found"
    title = "Audit event not found"
