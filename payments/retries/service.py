"""An organisation's effective retry policy: its own, its nearest ancestor's, or the default."""

from __future__ import annotations

import uuid

import structlog
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.db import transaction
from members.models import Organization
from members.service import Principal, visible_organization
from payments.retries.errors import InvalidRetryPolicy
from payments.retries.models import RetryPolicyRow
from payments.retries.policy import DEFAULT_POLICY, PolicyError, RetryPolicy
from payments.retries.schemas import ReasonRuleOut, RetryPolicyIn, RetryPolicyOut

log = structlog.get_logger("payments.retries")


def effective_policy(
    session: Session, organization_id: uuid.UUID
) -> tuple[RetryPolicy, Organization | None]:
    """The policy in force and the organisation that set it (None: the built-in default)."""
    org = session.get(Organization, organization_id)
    for _ in range(64):  # the tree is shallow; the bound only guards against a cycle
        if org is None:
            break
        row = session.get(RetryPolicyRow, org.id)
        if row is not None:
            return RetryPolicy.from_data(row.policy), org
        org = session.get(Organization, org.parent_id) if org.parent_id else None
    return DEFAULT_POLICY, None


class RetryPolicyService:
    def __init__(self, *, sessions: sessionmaker[Session], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def get(self, principal: Principal, code: str) -> RetryPolicyOut:
        with self._sessions() as session:
            org = visible_organization(session, principal, code, "code")
            policy, owner = effective_policy(session, org.id)
            return _out(org, policy, owner)

    def put(self, principal: Principal, code: str, data: RetryPolicyIn) -> RetryPolicyOut:
        try:
            policy = RetryPolicy.from_data(data.model_dump())
        except PolicyError as exc:
            raise InvalidRetryPolicy(str(exc), field=exc.field) from exc
        now = self._clock.now()
        with transaction(self._sessions) as session:
            org = visible_organization(session, principal, code, "code")
            session.execute(
                insert(RetryPolicyRow)
                .values(organization_id=org.id, policy=policy.to_data(), updated_at=now)
                .on_conflict_do_update(
                    index_elements=["organization_id"],
                    set_={"policy": policy.to_data(), "updated_at": now},
                )
            )
            out = _out(org, policy, org)
        log.info("retry_policy.set", organization_id=str(org.id))
        return out


def _out(org: Organization, policy: RetryPolicy, owner: Organization | None) -> RetryPolicyOut:
    if owner is None:
        source, inherited_from = "default", None
    elif owner.id == org.id:
        source, inherited_from = "own", None
    else:
        source, inherited_from = "inherited", owner.code
    return RetryPolicyOut(
        organization_code=org.code,
        source=source,
        inherited_from=inherited_from,
        schedule_days=list(policy.schedule_days),
        local_hour=policy.local_hour,
        retry_after_payday=policy.retry_after_payday,
        reasons={
            reason: ReasonRuleOut(action=str(rule.action), max_retries=rule.max_retries)
            for reason, rule in policy.table().items()
        },
    )
