"""Use cases for the organisation tree, members and API keys."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime

import structlog
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core import audit
from core.access import Actor
from core.clock import Clock
from core.db import transaction
from core.ids import new_id
from core.periods import local_date, zone
from members import repository
from members.errors import (
    InvalidTimezone,
    MemberErased,
    MemberNotFound,
    OrganizationCycle,
    OrganizationExists,
    OrganizationNotFound,
)
from members.models import Member, Organization
from members.pii import DataKeyMissing, MemberVault, PersonalData
from members.schemas import (
    MemberOut,
    MemberUpsert,
    OrganizationCreate,
    OrganizationOut,
    OrganizationPut,
)
from members.scopes import ALL_SCOPES, grants

log = structlog.get_logger("members")

# pg_advisory_xact_lock key that serializes changes to the shape of the tree.
ORGANIZATION_TREE_LOCK = 0x767A_6F72_6700


@dataclass(frozen=True)
class MemberPlace:
    """Where a member's books are kept: its id, its organisation's zone, and today there."""

    member_id: uuid.UUID
    timezone: str
    today: date


@dataclass(frozen=True)
class Principal:
    """Who is calling: an API key (a system) or a treasurer (a person), bound to an
    organisation and seeing its whole subtree (`scope`, organisation ids), allowed what its
    `scopes` grant."""

    api_key_id: uuid.UUID | None
    organization_id: uuid.UUID
    scope: frozenset[uuid.UUID]
    scopes: frozenset[str] = ALL_SCOPES
    treasurer_id: uuid.UUID | None = None
    ip: str | None = None
    # The treasurer's sign-in session this request came with (None for an API key).
    session_id: uuid.UUID | None = None

    def can_see(self, organization_id: uuid.UUID | None) -> bool:
        return organization_id in self.scope

    def may(self, scope: str) -> bool:
        return grants(self.scopes, scope)

    @property
    def actor(self) -> Actor:
        if self.treasurer_id is not None:
            return Actor("treasurer", self.treasurer_id, self.scope, self.ip)
        return Actor("api_key", self.api_key_id, self.scope, self.ip)


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
        paydays=list(member.paydays) if member.paydays else None,
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


class OrganizationService:
    """The organisation tree, synced by the CRM: create, update, and move a subtree."""

    def __init__(self, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def create(self, data: OrganizationCreate, principal: Principal | None) -> OrganizationOut:
        """Create an organisation. A caller creates only inside its own subtree; the operator
        (no principal, from the command line) may create roots."""
        _check_zone(data.timezone)
        try:
            with transaction(self._sessions) as session:
                org = self._insert(
                    session, principal, data.code, data.name, data.parent_code, data.timezone
                )
        except IntegrityError as exc:
            raise OrganizationExists(
                f"an organization with code {data.code!r} already exists", field="code"
            ) from exc
        log.info("organization.created", organization_id=str(org.id))
        return organization_out(org)

    def put(
        self, principal: Principal, code: str, data: OrganizationPut
    ) -> tuple[OrganizationOut, bool]:
        """Create or update an organisation by its code; a new `parent_code` moves the whole
        subtree under it (a parent inside the subtree itself would make a cycle: 422)."""
        _check_zone(data.timezone)
        try:
            with transaction(self._sessions) as session:
                # Moves serialize: two concurrent moves could otherwise close a cycle.
                session.execute(select(func.pg_advisory_xact_lock(ORGANIZATION_TREE_LOCK)))
                org = repository.organization_by_code(session, code, for_update=True)
                if org is None:
                    org = self._insert(
                        session, principal, code, data.name, data.parent_code, data.timezone
                    )
                    created = True
                else:
                    if not principal.can_see(org.id):
                        raise OrganizationNotFound(
                            f"no organization with code {code!r}", field="code"
                        )
                    created = False
                    self._update(session, principal, org, data)
        except IntegrityError as exc:
            raise OrganizationExists(
                f"an organization with code {code!r} already exists", field="code"
            ) from exc
        return organization_out(org), created

    def get(self, principal: Principal, code: str) -> OrganizationOut:
        with self._sessions() as session:
            return organization_out(visible_organization(session, principal, code, "code"))

    def list(self, principal: Principal) -> list[OrganizationOut]:
        with self._sessions() as session:
            return [
                organization_out(org)
                for org in repository.organizations_by_ids(session, principal.scope)
            ]

    def _insert(
        self,
        session: Session,
        principal: Principal | None,
        code: str,
        name: str,
        parent_code: str | None,
        timezone: str,
    ) -> Organization:
        parent_id: uuid.UUID | None = None
        if parent_code is not None:
            if principal is None:
                parent = repository.organization_by_code(session, parent_code)
                if parent is None:
                    raise OrganizationNotFound(
                        f"no organization with code {parent_code!r}", field="parent_code"
                    )
            else:
                parent = visible_organization(session, principal, parent_code, "parent_code")
            parent_id = parent.id
        elif principal is not None:
            parent_id = principal.organization_id
        now = self._clock.now()
        org = Organization(
            id=new_id(),
            code=code,
            name=name,
            parent_id=parent_id,
            timezone=timezone,
            created_at=now,
        )
        session.add(org)
        session.flush()
        audit.record(
            session,
            "organization.created",
            at=now,
            organization_id=org.id,
            subject_type="organization",
            subject_id=org.id,
            details={"parent_id": str(parent_id) if parent_id else None},
        )
        return org

    def _update(
        self, session: Session, principal: Principal, org: Organization, data: OrganizationPut
    ) -> None:
        now = self._clock.now()
        changed = {
            field: True
            for field, old, new in (
                ("name", org.name, data.name),
                ("timezone", org.timezone, data.timezone),
            )
            if old != new
        }
        org.name = data.name
        org.timezone = data.timezone
        if data.parent_code is not None:
            parent = visible_organization(session, principal, data.parent_code, "parent_code")
            if parent.id != org.parent_id:
                if parent.id in repository.subtree_ids(session, org.id):
                    raise OrganizationCycle(
                        f"{data.parent_code!r} lies inside {org.code!r}'s own subtree",
                        field="parent_code",
                    )
                previous = org.parent_id
                org.parent_id = parent.id
                session.flush()
                audit.record(
                    session,
                    "organization.moved",
                    at=now,
                    organization_id=org.id,
                    subject_type="organization",
                    subject_id=org.id,
                    details={
                        "from_parent_id": str(previous) if previous else None,
                        "to_parent_id": str(parent.id),
                    },
                )
                log.info(
                    "organization.moved",
                    organization_id=str(org.id),
                    to_parent_id=str(parent.id),
                )
        if changed:
            audit.record(
                session,
                "organization.updated",
                at=now,
                organization_id=org.id,
                subject_type="organization",
                subject_id=org.id,
                details={"changed": sorted(changed)},
            )


def _check_zone(timezone: str) -> None:
    try:
        zone(timezone)
    except ValueError as exc:
        raise InvalidTimezone(str(exc), field="timezone") from exc


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
                    member.paydays = data.paydays
                    member.updated_at = now
                    session.flush()
                    out = member_out(member, org.code, personal)
                    audit.record(
                        session,
                        "member.created" if created else "member.updated",
                        at=now,
                        organization_id=org.id,
                        subject_type="member",
                        subject_id=member.id,
                    )
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
        """The member with personal data: the read is recorded in the audit log."""
        with transaction(self._sessions) as session:
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
            audit.record(
                session,
                "member.read",
                at=self._clock.now(),
                organization_id=org.id,
                subject_type="member",
                subject_id=member.id,
            )
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
