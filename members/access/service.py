"""Use cases of access: authenticate a bearer, the API key lifecycle, treasurer accounts and
sign-in, and reading the audit log."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import pyotp
import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select, tuple_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.audit import AuditEvent
from core.clock import Clock
from core.db import transaction
from core.ids import new_id
from members import repository
from members.access.errors import (
    ApiKeyInactive,
    ApiKeyNotFound,
    AuditCursorNotFound,
    InvalidCredentials,
    LoginTaken,
    ScopeNotHeld,
    ScopesRequired,
    SecondFactorRequired,
    SessionNotFound,
)
from members.access.schemas import (
    ApiKeyCreated,
    ApiKeyOut,
    ApiKeyPage,
    AuditEventOut,
    AuditEventPage,
    SessionCreated,
)
from members.errors import OrganizationNotFound
from members.models import ApiKey, Organization, Treasurer, TreasurerSession
from members.scopes import Scope
from members.service import Principal, visible_organization

log = structlog.get_logger("access")

API_KEY_PREFIX = "vz_"
SESSION_PREFIX = "vzt_"
TOTP_STEP_SECONDS = 30
# Used when VZNOS_API_KEY_HASH_KEY is unset (development); production sets its own.
DEVELOPMENT_HASH_KEY = "vznos-development-api-key-hash-key"
# A well-formed argon2 hash of nothing anyone knows: unknown logins take as long as wrong
# passwords.
_passwords = PasswordHasher()
_DUMMY_HASH = _passwords.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True)
class AccessPolicy:
    hash_key: bytes = DEVELOPMENT_HASH_KEY.encode()
    last_used_interval: timedelta = timedelta(minutes=5)
    rotation_grace: timedelta = timedelta(hours=24)
    session_lifetime: timedelta = timedelta(hours=12)


def _key_status(key: ApiKey, now: datetime) -> str:
    if key.revoked_at is not None:
        return "revoked"
    if key.expires_at is not None and key.expires_at <= now:
        return "expired"
    return "active"


def api_key_out(key: ApiKey, now: datetime) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        organization_id=key.organization_id,
        scopes=sorted(key.scopes),
        status=_key_status(key, now),
        created_at=key.created_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        last_used_at=key.last_used_at,
        replaced_by_id=key.replaced_by_id,
    )


class AccessService:
    def __init__(
        self, sessions: sessionmaker[Session], clock: Clock, policy: AccessPolicy | None = None
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._policy = policy or AccessPolicy()

    # --- authentication -------------------------------------------------------------------

    def _digest(self, secret: str) -> str:
        return hmac.new(self._policy.hash_key, secret.encode(), hashlib.sha256).hexdigest()

    def authenticate(self, bearer: str | None, ip: str | None = None) -> Principal:
        """The principal behind an API key (`vz_…`) or a treasurer session (`vzt_…`); 401 for
        anything missing, unknown, expired or revoked."""
        if bearer and bearer.startswith(SESSION_PREFIX):
            return self._authenticate_session(bearer, ip)
        if not bearer or not bearer.startswith(API_KEY_PREFIX):
            raise InvalidCredentials("a valid API key is required: Authorization: Bearer vz_…")
        now = self._clock.now()
        with transaction(self._sessions) as session:
            # Keys made before keyed hashing were stored as a plain SHA-256.
            key = repository.api_key_by_hash(
                session, self._digest(bearer), hashlib.sha256(bearer.encode()).hexdigest()
            )
            if key is None or _key_status(key, now) != "active":
                raise InvalidCredentials("the API key is not valid, or expired, or revoked")
            last = key.last_used_at
            if last is None or now - last >= self._policy.last_used_interval:
                key.last_used_at = now
            return Principal(
                api_key_id=key.id,
                organization_id=key.organization_id,
                scope=frozenset(repository.subtree_ids(session, key.organization_id)),
                scopes=frozenset(key.scopes),
                ip=ip,
            )

    def _authenticate_session(self, bearer: str, ip: str | None) -> Principal:
        now = self._clock.now()
        with self._sessions() as session:
            found = session.scalar(
                select(TreasurerSession).where(TreasurerSession.token_hash == self._digest(bearer))
            )
            treasurer = session.get(Treasurer, found.treasurer_id) if found else None
            if (
                found is None
                or treasurer is None
                or found.revoked_at is not None
                or found.expires_at <= now
                or treasurer.disabled_at is not None
            ):
                raise InvalidCredentials("the session is not valid, or expired")
            return Principal(
                api_key_id=None,
                treasurer_id=treasurer.id,
                organization_id=treasurer.organization_id,
                scope=frozenset(repository.subtree_ids(session, treasurer.organization_id)),
                scopes=frozenset(treasurer.scopes),
                ip=ip,
                session_id=found.id,
            )

    def sign_out(self, principal: Principal) -> None:
        """Revoke the session the request came with: its next request is a 401. An API key is
        not a session (revoke it through /v1/api-keys instead)."""
        if principal.session_id is None:
            raise SessionNotFound(
                "this credential is an API key, not a sign-in session", field="Authorization"
            )
        now = self._clock.now()
        with transaction(self._sessions) as session:
            found = session.get(TreasurerSession, principal.session_id, with_for_update=True)
            if found is not None and found.revoked_at is None:
                found.revoked_at = now
                audit.record(
                    session,
                    "treasurer.signed_out",
                    at=now,
                    organization_id=principal.organization_id,
                    subject_type="treasurer",
                    subject_id=principal.treasurer_id,
                )
        log.info("treasurer.signed_out", treasurer_id=str(principal.treasurer_id))

    # --- API keys -------------------------------------------------------------------------

    def create_api_key(
        self,
        org_code: str,
        name: str,
        scopes: Iterable[str],
        *,
        expires_at: datetime | None = None,
        principal: Principal | None = None,
    ) -> tuple[uuid.UUID, str]:
        """Create a key and return its plaintext, which is shown once and never stored. A caller
        creates keys only inside its subtree and only with scopes it holds itself; the operator
        (no principal) may create any. Scopes are always named: a key without any is refused
        rather than given every scope (least privilege; `admin` is asked for by name)."""
        created = self._create_key(org_code, name, scopes, expires_at, principal)
        return created.id, created.key

    def create_api_key_out(
        self,
        principal: Principal,
        org_code: str | None,
        name: str,
        scopes: Iterable[str],
        expires_at: datetime | None,
    ) -> ApiKeyCreated:
        return self._create_key(org_code, name, scopes, expires_at, principal)

    def _create_key(
        self,
        org_code: str | None,
        name: str,
        scopes: Iterable[str],
        expires_at: datetime | None,
        principal: Principal | None,
        *,
        replacing: uuid.UUID | None = None,
        grace: timedelta = timedelta(0),
    ) -> ApiKeyCreated:
        wanted = sorted({Scope(s).value for s in scopes})
        if not wanted:
            raise ScopesRequired("name the scopes the key may use", field="scopes")
        if principal is not None:
            lacking = [s for s in wanted if not principal.may(s)]
            if lacking:
                raise ScopeNotHeld(f"the caller does not hold {', '.join(lacking)}", field="scopes")
        plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
        now = self._clock.now()
        with transaction(self._sessions) as session:
            org = self._organization(session, principal, org_code)
            key = ApiKey(
                id=new_id(),
                organization_id=org.id,
                key_hash=self._digest(plaintext),
                prefix=plaintext[:10],
                name=name,
                scopes=wanted,
                created_at=now,
                expires_at=expires_at,
                revoked_at=None,
                last_used_at=None,
                replaced_by_id=None,
            )
            session.add(key)
            session.flush()
            if replacing is not None:
                old = session.get(ApiKey, replacing, with_for_update=True)
                assert old is not None
                if _key_status(old, now) != "active":
                    raise ApiKeyInactive(f"API key {old.id} is revoked or expired")
                grace_end = now + grace
                if old.expires_at is None or old.expires_at > grace_end:
                    old.expires_at = grace_end
                old.replaced_by_id = key.id
            audit.record(
                session,
                "api_key.rotated" if replacing else "api_key.created",
                at=now,
                organization_id=org.id,
                subject_type="api_key",
                subject_id=key.id,
                details={"scopes": wanted, **({"replaced": str(replacing)} if replacing else {})},
            )
            out = ApiKeyCreated(**api_key_out(key, now).model_dump(), key=plaintext)
        log.info("api_key.created", api_key_id=str(key.id), organization_id=str(org.id))
        return out

    def _organization(
        self, session: Session, principal: Principal | None, org_code: str | None
    ) -> Organization:
        if principal is not None:
            if org_code is None:
                org = session.get(Organization, principal.organization_id)
                assert org is not None
                return org
            return visible_organization(session, principal, org_code, "organization_code")
        found = repository.organization_by_code(session, org_code or "")
        if found is None:
            raise OrganizationNotFound(f"no organization with code {org_code!r}", field="org")
        return found

    def list_api_keys(
        self,
        principal: Principal | None,
        *,
        org_code: str | None = None,
        starting_after: uuid.UUID | None = None,
        limit: int = 100,
    ) -> ApiKeyPage:
        """Keys of the caller's subtree (the operator: of one organisation, or all), newest
        first."""
        now = self._clock.now()
        with self._sessions() as session:
            query = select(ApiKey).order_by(ApiKey.created_at.desc(), ApiKey.id.desc())
            if principal is not None:
                query = query.where(ApiKey.organization_id.in_(principal.scope))
            if org_code is not None:
                org = self._organization(session, principal, org_code)
                query = query.where(ApiKey.organization_id == org.id)
            if starting_after is not None:
                cursor = session.get(ApiKey, starting_after)
                if cursor is None or (
                    principal is not None and not principal.can_see(cursor.organization_id)
                ):
                    raise ApiKeyNotFound(f"no API key {starting_after}", field="starting_after")
                query = query.where(
                    tuple_(ApiKey.created_at, ApiKey.id) < tuple_(cursor.created_at, cursor.id)
                )
            keys = list(session.scalars(query.limit(limit + 1)))
            return ApiKeyPage(
                data=[api_key_out(k, now) for k in keys[:limit]], has_more=len(keys) > limit
            )

    def get_api_key(self, principal: Principal | None, key_id: uuid.UUID) -> ApiKeyOut:
        with self._sessions() as session:
            return api_key_out(self._visible_key(session, principal, key_id), self._clock.now())

    def revoke_api_key(self, principal: Principal | None, key_id: uuid.UUID) -> ApiKeyOut:
        """Revoke now; the next request with the key is a 401. Revoking twice changes nothing."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            key = self._visible_key(session, principal, key_id, for_update=True)
            if key.revoked_at is None:
                key.revoked_at = now
                audit.record(
                    session,
                    "api_key.revoked",
                    at=now,
                    organization_id=key.organization_id,
                    subject_type="api_key",
                    subject_id=key.id,
                )
                log.info("api_key.revoked", api_key_id=str(key.id))
            return api_key_out(key, now)

    def rotate_api_key(
        self,
        principal: Principal | None,
        key_id: uuid.UUID,
        *,
        grace: timedelta | None = None,
        expires_at: datetime | None = None,
    ) -> ApiKeyCreated:
        """A new key with the same organisation, name and scopes; the old one keeps working for
        the grace period (both valid at once), then expires."""
        with self._sessions() as session:
            old = self._visible_key(session, principal, key_id)
            org = session.get(Organization, old.organization_id)
            assert org is not None
            name, scopes, code = old.name, list(old.scopes), org.code
        return self._create_key(
            code,
            name,
            scopes,
            expires_at,
            None,
            replacing=key_id,
            grace=grace if grace is not None else self._policy.rotation_grace,
        )

    def _visible_key(
        self,
        session: Session,
        principal: Principal | None,
        key_id: uuid.UUID,
        *,
        for_update: bool = False,
    ) -> ApiKey:
        key = session.get(ApiKey, key_id, with_for_update=for_update)
        if key is None or (principal is not None and not principal.can_see(key.organization_id)):
            raise ApiKeyNotFound(f"no API key {key_id}", field="key_id")
        return key

    # --- treasurers -----------------------------------------------------------------------

    def create_treasurer(
        self,
        *,
        org_code: str,
        login: str,
        display_name: str,
        password: str,
        scopes: Iterable[str],
        with_totp: bool = False,
    ) -> tuple[uuid.UUID, str | None]:
        """Create a treasurer account; returns its id and, with a second factor, the
        `otpauth://` URI to enrol an authenticator app (shown once)."""
        now = self._clock.now()
        secret = pyotp.random_base32() if with_totp else None
        try:
            with transaction(self._sessions) as session:
                org = self._organization(session, None, org_code)
                treasurer = Treasurer(
                    id=new_id(),
                    organization_id=org.id,
                    login=login,
                    display_name=display_name,
                    password_hash=_passwords.hash(password),
                    totp_secret=secret,
                    totp_last_step=None,
                    scopes=sorted({Scope(s).value for s in scopes}),
                    created_at=now,
                    disabled_at=None,
                )
                session.add(treasurer)
                session.flush()
                audit.record(
                    session,
                    "treasurer.created",
                    at=now,
                    organization_id=org.id,
                    subject_type="treasurer",
                    subject_id=treasurer.id,
                    details={"second_factor": with_totp},
                )
        except IntegrityError as exc:
            raise LoginTaken(f"login {login!r} is taken", field="login") from exc
        uri = (
            pyotp.TOTP(secret).provisioning_uri(name=login, issuer_name="Vznos") if secret else None
        )
        return treasurer.id, uri

    def sign_in(self, login: str, password: str, totp_code: str | None) -> SessionCreated:
        """A session token for a treasurer: the password (argon2id) and, when enrolled, a TOTP
        code, each accepted once."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            treasurer = session.scalar(
                select(Treasurer).where(Treasurer.login == login).with_for_update()
            )
            try:
                _passwords.verify(treasurer.password_hash if treasurer else _DUMMY_HASH, password)
            except (VerificationError, InvalidHashError):
                treasurer = None
            if treasurer is None or treasurer.disabled_at is not None:
                raise InvalidCredentials("wrong login or password")
            if treasurer.totp_secret is not None:
                step = self._totp_step(treasurer, totp_code, now)
                treasurer.totp_last_step = step
            if _passwords.check_needs_rehash(treasurer.password_hash):
                treasurer.password_hash = _passwords.hash(password)
            token = SESSION_PREFIX + secrets.token_urlsafe(32)
            expires_at = now + self._policy.session_lifetime
            session.add(
                TreasurerSession(
                    id=new_id(),
                    treasurer_id=treasurer.id,
                    token_hash=self._digest(token),
                    created_at=now,
                    expires_at=expires_at,
                    revoked_at=None,
                )
            )
            audit.record(
                session,
                "treasurer.signed_in",
                at=now,
                organization_id=treasurer.organization_id,
                subject_type="treasurer",
                subject_id=treasurer.id,
            )
            return SessionCreated(
                token=token,
                expires_at=expires_at,
                treasurer_id=treasurer.id,
                organization_id=treasurer.organization_id,
                scopes=sorted(treasurer.scopes),
            )

    @staticmethod
    def _totp_step(treasurer: Treasurer, code: str | None, now: datetime) -> int:
        if not code:
            raise SecondFactorRequired("this account needs a one-time code", field="totp_code")
        assert treasurer.totp_secret is not None
        totp = pyotp.TOTP(treasurer.totp_secret)
        current = int(now.timestamp()) // TOTP_STEP_SECONDS
        for step in (current - 1, current, current + 1):  # one step of clock drift either way
            fresh = treasurer.totp_last_step is None or step > treasurer.totp_last_step
            if fresh and hmac.compare_digest(totp.generate_otp(step), code):
                return step
        raise InvalidCredentials(
            "the one-time code is wrong or was already used", field="totp_code"
        )

    # --- audit log ------------------------------------------------------------------------

    def audit_events(
        self,
        principal: Principal,
        *,
        limit: int,
        starting_after: uuid.UUID | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AuditEventPage:
        """The audit log of the caller's subtree, newest first."""
        with self._sessions() as session:
            query = (
                select(AuditEvent)
                .where(AuditEvent.organization_id.in_(principal.scope))
                .order_by(AuditEvent.sequence.desc())
            )
            if starting_after is not None:
                cursor = session.get(AuditEvent, starting_after)
                if cursor is None or not principal.can_see(cursor.organization_id):
                    raise AuditCursorNotFound(
                        f"no audit event {starting_after}", field="starting_after"
                    )
                query = query.where(AuditEvent.sequence < cursor.sequence)
            if action is not None:
                query = query.where(AuditEvent.action == action)
            if since is not None:
                query = query.where(AuditEvent.occurred_at >= since)
            if until is not None:
                query = query.where(AuditEvent.occurred_at < until)
            rows = list(session.scalars(query.limit(limit + 1)))
            return AuditEventPage(
                data=[
                    AuditEventOut(
                        id=row.id,
                        occurred_at=row.occurred_at,
                        actor_type=row.actor_type,
                        actor_id=row.actor_id,
                        ip=row.ip,
                        action=row.action,
                        organization_id=row.organization_id,
                        subject_type=row.subject_type,
                        subject_id=row.subject_id,
                        details=row.details,
                    )
                    for row in rows[:limit]
                ],
                has_more=len(rows) > limit,
            )
