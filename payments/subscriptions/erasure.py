"""Erasure of a member (152-FZ Art. 21, GDPR Art. 17) by crypto-shredding.

It lives here, above `members`, because erasing a member must first stop their auto-pay: the
saved card's token is destroyed with the member's data key, so a live subscription could never
be charged again anyway. The ledger is untouched: its entries keep the member's random id, now a
pseudonym nothing links to a person, and every balance stays as it was.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from members import repository
from members.errors import MemberErased, MemberNotFound
from members.pii import MemberVault
from members.service import Principal, erase
from payments.subscriptions.models import Subscription
from payments.subscriptions.states import LIVE_STATUSES, Cause, SubscriptionStatus, move

log = structlog.get_logger("payments.erasure")


@dataclass(frozen=True)
class Erasure:
    member_id: uuid.UUID
    pseudonym: str
    erased_at: datetime
    subscriptions_canceled: int


class ErasureService:
    def __init__(self, sessions: sessionmaker[Session], clock: Clock, vault: MemberVault) -> None:
        self._sessions = sessions
        self._clock = clock
        self._vault = vault

    def erase(self, principal: Principal | None, external_id: str) -> Erasure:
        """Cancel the member's live subscriptions and shred their data key. A caller erases
        only inside its subtree; the operator (no principal, the command line) anywhere."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            member = repository.member_by_external_id(session, external_id, for_update=True)
            if member is None or (
                principal is not None and not principal.can_see(member.organization_id)
            ):
                raise MemberNotFound(
                    f"no member with external id {external_id!r}", field="external_id"
                )
            if member.erased_at is not None:
                raise MemberErased("the member was already erased", field="external_id")
            live = session.scalars(
                select(Subscription)
                .where(Subscription.member_id == member.id, Subscription.status.in_(LIVE_STATUSES))
                .with_for_update()
            ).all()
            for subscription in live:
                move(subscription, SubscriptionStatus.CANCELED, now, Cause.MEMBER_ERASED)
            session.flush()
            erase(session, self._vault, member, now)
            result = Erasure(member.id, member.external_id, now, len(live))
        log.info(
            "member.erased",
            member_id=str(result.member_id),
            subscriptions_canceled=result.subscriptions_canceled,
        )
        return result
