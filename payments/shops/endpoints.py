"""HTTP for an organisation's own YooKassa shop. Thin: parse, call, map."""

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Response, status

from core.http import problem_responses
from members.access.dependencies import require
from members.scopes import Scope
from members.service import Principal
from payments.shops.schemas import ShopOut, ShopPut
from payments.shops.service import ShopService

OrgCode = Annotated[str, Path(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]

Admin = Annotated[Principal, Depends(require(Scope.ADMIN))]


def build_router(*, shops: ShopService) -> APIRouter:
    router = APIRouter(prefix="/v1", tags=["organizations"])

    @router.put(
        "/organizations/{code}/shop", responses=problem_responses(401, 403, 404, 409, 422, 503)
    )
    def put_organization_shop(code: OrgCode, body: ShopPut, caller: Admin) -> ShopOut:
        """Collect the organisation's and its subtree's new payments through its own YooKassa
        shop. The credentials are checked with YooKassa first (422 if refused, 503 if it did
        not answer; nothing changes either way). The secret key is stored encrypted and never
        returned. Cards saved at another shop keep being charged there (a card token only
        works at its shop)."""
        return shops.put(caller, code, body)

    @router.get("/organizations/{code}/shop", responses=problem_responses(401, 403, 404, 422))
    def get_organization_shop(code: OrgCode, caller: Admin) -> ShopOut:
        """The organisation's own shop (whether a secret is set, never the secret) and the
        shop its members' new payments go to."""
        return shops.get(caller, code)

    @router.delete(
        "/organizations/{code}/shop",
        status_code=status.HTTP_204_NO_CONTENT,
        responses=problem_responses(401, 403, 404, 422),
    )
    def delete_organization_shop(code: OrgCode, caller: Admin) -> Response:
        """Fall back to the nearest ancestor's shop, or the installation's."""
        shops.remove(caller, code)
        return Response(status_code=status.HTTP_204_NO_CONTENT)

    return router
