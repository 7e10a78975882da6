"""Use cases for the organisation tree, members and API keys."""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import date, datetime

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from core.errors import Unauthorized
from core.ids import new_id
from core.periods import local_date, zone
from members import repository
from members.errors import (
    InvalidTimezone,
    MemberErased,
    MemberNotFound,
    OrganizationExists,
    OrganizationNotFound,
)
from members.models import ApiKey, Member, Organization
from members.pii import DataKeyMissing, MemberVault, PersonalData
from members.schemas import MemberOut, MemberUpsert, OrganizationCreate, OrganizationOut

log = structlog.get_logger("members")

API_KEY_PREFIX = "vz_"


@dataclass(frozen=True)
class MemberPlace:
    """Where a member's books are kept: its id, its organisation's zone, and today there."""

    member_id: uuid.UUID
    timezone: str
    today: date


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key bound to an organisation, seeing its whole subtree."""

    api_key_id: uuid.UUID
    organization_id: uuid.UUID
    scope: frozenset[uuid.UUID]

    def can_see(self, organization_id: uuid.UUID) -> bool:
        return organization_id in self.scope


def hash_api_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def organization_out(org: Organization) -> OrganizationOut:
    return OrganizationOut(
        id=org.id, code=org.code, name=org.name, parent_id=org.parent_id, timezone=org.timezone
    )


ERASED_PREFIX = "erased:"


def pseudonym(member_id: uuid.UUID) -> str:
    """What an erased member's external id becomes: the ledger keeps its amounts under the
    member's random id, and nothing links it back to the CRM's record."""
    return f"{ERASED_PREFIX}{member_id}"


def member_out(member: Member, org_code: str, personal: PersonalData) -> MemberOut:
    return MemberOut(
        id=member.id,
        external_id=member.external_id,
        organization_code=org_code,
        full_name=personal.full_name,
        email=personal.email,
        phone=personal.phone,
        birth_date=personal.birth_date,
        joined_on=member.joined_on,
        left_on=member.left_on,
        created_at=member.created_at,
        updated_at=member.updated_at,
    )


def visible_member(session: Session, principal: Principal, external_id: str) -> Member:
    """The member, if it exists and lies in the caller's subtree; 404 alike otherwise, and
    410 once erased."""
    member = repository.member_by_external_id(session, external_id)
    if member is None or not principal.can_see(member.organization_id):
        raise MemberNotFound(f"no member with external id {external_id!r}", field="external_id")
    if member.erased_at is not None:
        raise MemberErased("the member's personal data was erased", field="external_id")
    return member


def erase(session: Session, vault: MemberVault, member: Member, now: datetime) -> None:
    """Crypto-shred the member in the caller's transaction: destroy the data key, forget the
    CRM's id. Ledger rows keep pointing at `member.id`, so the books stay whole."""
    vault.shred(session, member.id)
    member.external_id = pseudonym(member.id)
    member.erased_at = now
    member.updated_at = now


def visible_organization(
    session: Session, principal: Principal, code: str, field: str
) -> Organization:
    org = repository.organization_by_code(session, code)
    if org is None or not principal.can_see(org.id):
        raise OrganizationNotFound(f"no organization with code {code!r}", field=field)
    return org


class AccessService:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def authenticate(self, bearer: str | None) -> Principal:
        if not bearer or not bearer.startswith(API_KEY_PREFIX):
            raise Unauthorized("a valid API key is required: Authorization: Bearer vz_…")
        with transaction(self._sessions) as session:
            key = repository.api_key_by_hash(session, hash_api_key(bearer))
            if key is None or key.revoked_at is not None:
                raise Unauthorized("the API key is not valid")
            key.last_used_at = self._clock.now()
            return Principal(
                api_key_id=key.id,
                organization_id=key.organization_id,
                scope=frozenset(repository.subtree_ids(session, key.organization_id)),
            )

    def create_api_key(self, org_code: str, name: str) -> tuple[uuid.UUID, str]:
        """Create a key and return its plaintext, which is shown once and never stored."""
        plaintext = API_KEY_PREFIX + secrets.token_urlsafe(32)
        with transaction(self._sessions) as session:
            org = repository.organization_by_code(session, org_code)
            if org is None:
                raise OrganizationNotFound(f"no organization with code {org_code!r}", field="org")
            key = ApiKey(
                id=new_id(),
                organization_id=org.id,
                key_hash=hash_api_key(plaintext),
                prefix=plaintext[:10],
                name=name,
                created_at=self._clock.now(),
                revoked_at=None,
                last_used_at=None,
            )
            session.add(key)
        log.info("api_key.created", api_key_id=str(key.id), organization_id=str(org.id))
        return key.id, plaintext


class OrganizationService:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def create(self, data: OrganizationCreate, principal: Principal | None) -> OrganizationOut:
        """Create an organisation. A caller creates only inside its own subtree; the operator
        (no principal, from the command line) may create roots."""
        try:
            zone(data.timezone)
        except ValueError as exc:
            raise InvalidTimezone(str(exc), field="timezone") from exc
        try:
            with transaction(self._sessions) as session:
                parent_id: uuid.UUID | None = None
                if data.parent_code is not None:
                    if principal is None:
                        parent = repository.organization_by_code(session, data.parent_code)
                        if parent is None:
                            raise OrganizationNotFound(
                                f"no organization with code {data.parent_code!r}",
                                field="parent_code",
                            )
                    else:
                        parent = visible_organization(
                            session, principal, data.parent_code, "parent_code"
                        )
                    parent_id = parent.id
                elif principal is not None:
                    parent_id = principal.organization_id
                org = Organization(
                    id=new_id(),
                    code=data.code,
                    name=data.name,
                    parent_id=parent_id,
                    timezone=data.timezone,
                    created_at=self._clock.now(),
                )
                session.add(org)
                session.flush()
        except IntegrityError as exc:
            raise OrganizationExists(
                f"an organization with code {data.code!r} already exists", field="code"
            ) from exc
        log.info("organization.created", organization_id=str(org.id))
        return organization_out(org)


class MemberService:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, vault: MemberVault) -> None:
        self._sessions = sessions
        self._clock = clock
        self._vault = vault

    def upsert(
        self, principal: Principal, external_id: str, data: MemberUpsert
    ) -> tuple[MemberOut, bool]:
        now = self._clock.now()
        for _ in range(2):  # a concurrent first insert of the same member: retry as an update
            try:
                with transaction(self._sessions) as session:
                    org = visible_organization(
                        session, principal, data.organization_code, "organization_code"
                    )
                    member = repository.member_by_external_id(session, external_id, for_update=True)
                    created = member is None
                    if member is None:
                        member = Member(
                            id=new_id(),
                            external_id=external_id,
                            organization_id=org.id,
                            created_at=now,
                            updated_at=now,
                        )
                        session.add(member)
                        session.flush()
                        self._vault.create_data_key(session, member.id, now)
                    elif not principal.can_see(member.organization_id):
                        raise MemberNotFound(
                            f"no member with external id {external_id!r}", field="external_id"
                        )
                    personal = PersonalData(
                        full_name=data.full_name,
                        email=data.email,
                        phone=data.phone,
                        birth_date=data.birth_date,
                    )
                    member.organization_id = org.id
                    self._vault.write(session, member, personal)
                    member.joined_on = data.joined_on
                    member.left_on = data.left_on
                    member.updated_at = now
                    session.flush()
                    out = member_out(member, org.code, personal)
                log.info("member.upserted", member_id=str(out.id), created=created)
                return out, created
            except IntegrityError:
                continue
        raise RuntimeError("member upsert kept conflicting")  # pragma: no cover

    def place(self, principal: Principal, external_id: str) -> MemberPlace:
        with self._sessions() as session:
            member = visible_member(session, principal, external_id)
            org = session.get(Organization, member.organization_id)
            assert org is not None
            return MemberPlace(member.id, org.timezone, local_date(self._clock.now(), org.timezone))

    def get(self, principal: Principal, external_id: str) -> MemberOut:
        with self._sessions() as session:
            member = visible_member(session, principal, external_id)
            org = session.get(Organization, member.organization_id)
            assert org is not None
            try:
                personal = self._vault.read(session, member)
            except DataKeyMissing as exc:
                raise MemberErased(
                    "the member's personal data was erased", field="external_id"
                ) from exc
            log.info("member.personal_data_read", member_id=str(member.id))
            return member_out(member, org.code, personal)

    def find_by_contact(
        self, principal: Principal, *, email: str | None = None, phone: str | None = None
    ) -> list[MemberOut]:
        """Members with this email or phone, in the caller's subtree, found by blind index:
        the value itself is never compared in SQL."""
        with self._sessions() as session:
            members = repository.members_by_index(
                session,
                email_index=self._vault.email_index(email) if email else None,
                phone_index=self._vault.phone_index(phone) if phone else None,
            )
            found: list[MemberOut] = []
            for member in members:
                if not principal.can_see(member.organization_id) or member.erased_at:
                    continue
                org = session.get(Organization, member.organization_id)
                assert org is not None
                found.append(member_out(member, org.code, self._vault.read(session, member)))
            return found

    def rotate_data_key(self, external_id: str) -> int:
        """Re-encrypt one member under a fresh data key and destroy the old key (operator)."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            member = repository.member_by_external_id(session, external_id, for_update=True)
            if member is None:
                raise MemberNotFound(
                    f"no member with external id {external_id!r}", field="external_id"
                )
            if member.erased_at is not None:
                raise MemberErased("the member's personal data was erased", field="external_id")
            member_id = member.id
            version = self._vault.rotate_data_key(session, member_id, now)
        log.info("member.data_key_rotated", member_id=str(member_id), version=version)
        return version
