"""HTTP for an organisation's retry policy. Thin: parse, call, map."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path

from core.http import problem_responses
from members.access.dependencies import require
from members.scopes import Scope
from members.service import Principal
from payments.retries.schemas import RetryPolicyIn, RetryPolicyOut
from payments.retries.service import RetryPolicyService

OrgCode = Annotated[str, Path(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]


Caller = Annotated[Principal, Depends(require(Scope.SUBSCRIPTIONS_WRITE))]


def build_router(*, retry_policies: RetryPolicyService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["retry policy"])

    @router.get("/organizations/{code}/retry-policy", responses=problem_responses(401, 404, 422))
    def get_retry_policy(code: OrgCode, caller: Caller) -> RetryPolicyOut:
        """What happens after a declined automatic charge, by decline reason: the
        organisation's own policy, its nearest ancestor's, or the built-in default."""
        return retry_policies.get(caller, code)

    @router.put("/organizations/{code}/retry-policy", responses=problem_responses(401, 404, 422))
    def put_retry_policy(code: OrgCode, body: RetryPolicyIn, caller: Caller) -> RetryPolicyOut:
        """Set the organisation's policy (its subtree inherits it). Rows in `reasons` replace
        the default's rows; an unknown reason is a 422 naming it, and nothing changes."""
        return retry_policies.put(caller, code, body)

    return router
