"""Use cases of an organisation's own YooKassa shop: set it, read it, fall back to the
inherited one. The secret key is sealed (AES-GCM, core/crypto) before it is stored and is
never returned or logged."""

from __future__ import annotations

import uuid
from datetime import datetime

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.crypto import KeyRing
from core.db import transaction
from members.models import Organization
from members.service import Principal, visible_organization
from payments.gateway.port import GatewayRejected, GatewayUnknownOutcome
from payments.shops import repository
from payments.shops.directory import ShopDirectory, secret_aad
from payments.shops.errors import (
    CredentialsRefused,
    CredentialsUnchecked,
    ShopChangedConcurrently,
    ShopTaken,
)
from payments.shops.models import GatewayShop
from payments.shops.schemas import EffectiveShopOut, OwnShopOut, ShopOut, ShopPut

log = structlog.get_logger("payments.shops")


class ShopService:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        keyring: KeyRing,
        directory: ShopDirectory,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._keyring = keyring
        self._directory = directory

    def put(self, principal: Principal, code: str, data: ShopPut) -> ShopOut:
        """Collect the organisation's (and its subtree's) new payments through this shop.
        Cards saved at a previous shop stay there: a card token only works at its shop."""
        now = self._clock.now()
        shop_id = data.shop_id
        if shop_id == self._directory.default_shop_id():
            raise ShopTaken(
                "this is the installation's own shop; remove the organisation's shop to use it",
                field="shop_id",
            )
        with self._sessions() as session:
            org = visible_organization(session, principal, code, "code")
            owner = session.get(GatewayShop, shop_id)
            if owner is not None and owner.organization_id != org.id:
                raise ShopTaken("this shop is registered to another organisation", field="shop_id")
        self._check_credentials(shop_id, data.secret_key.get_secret_value())
        try:
            org_id = self._put(principal, code, shop_id, data, now)
        except IntegrityError as exc:
            # A concurrent change of the same organisation or shop won the race.
            raise ShopChangedConcurrently(
                "the shop was changed at the same time; read it and try again", field="shop_id"
            ) from exc
        self._directory.invalidate(shop_id)
        log.info("shop.set", organization_id=str(org_id), shop_id=shop_id)
        return self.get(principal, code)

    def _check_credentials(self, shop_id: str, secret_key: str) -> None:
        """A wrong secret would make every payment of the subtree fail: refuse it now."""
        try:
            account = self._directory.verify(shop_id, secret_key)
        except GatewayRejected as exc:
            raise CredentialsRefused(
                f"YooKassa answered {exc.status} to these credentials; nothing was changed",
                field="secret_key",
            ) from exc
        except GatewayUnknownOutcome as exc:
            raise CredentialsUnchecked(
                "YooKassa did not answer; nothing was changed, try again", field="secret_key"
            ) from exc
        if account != shop_id:
            raise CredentialsRefused(
                "these credentials open another shop; nothing was changed", field="shop_id"
            )

    def _put(
        self, principal: Principal, code: str, shop_id: str, data: ShopPut, now: datetime
    ) -> uuid.UUID:
        with transaction(self._sessions) as session:
            org = visible_organization(session, principal, code, "code")
            sealed = self._keyring.seal(data.secret_key.get_secret_value(), secret_aad(shop_id))
            shop = repository.shop_for_update(session, shop_id)
            if shop is not None and shop.organization_id != org.id:
                raise ShopTaken("this shop is registered to another organisation", field="shop_id")
            current = repository.active_shop_of(session, org.id, for_update=True)
            if current is not None and current.shop_id != shop_id:
                current.active = False
                current.updated_at = now
                session.flush()  # one active shop per organisation, checked by an index
            if shop is None:
                session.add(
                    GatewayShop(
                        shop_id=shop_id,
                        organization_id=org.id,
                        secret_sealed=sealed,
                        active=True,
                        version=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
            else:
                shop.secret_sealed = sealed
                shop.active = True
                shop.version += 1
                shop.updated_at = now
            return org.id

    def get(self, principal: Principal, code: str) -> ShopOut:
        with self._sessions() as session:
            org = visible_organization(session, principal, code, "code")
            own = repository.active_shop_of(session, org.id)
            nearest = repository.nearest_shop(session, org.id)
            if nearest is None:
                effective = EffectiveShopOut(
                    shop_id=self._directory.default_shop_id(),
                    source="default",
                    organization_code=None,
                )
            else:
                owner = session.get(Organization, nearest.organization_id)
                effective = EffectiveShopOut(
                    shop_id=nearest.shop_id,
                    source="own" if nearest.depth == 0 else "inherited",
                    organization_code=owner.code if owner is not None else None,
                )
            return ShopOut(
                organization_code=org.code,
                shop=(
                    OwnShopOut(shop_id=own.shop_id, secret_set=bool(own.secret_sealed))
                    if own is not None
                    else None
                ),
                effective=effective,
            )

    def remove(self, principal: Principal, code: str) -> None:
        """Fall back to the nearest ancestor's shop (or the installation's). The credentials
        are kept: payments and refunds made there, and cards saved there, still need them."""
        now = self._clock.now()
        with transaction(self._sessions) as session:
            org = visible_organization(session, principal, code, "code")
            current = repository.active_shop_of(session, org.id, for_update=True)
            if current is None:
                return
            current.active = False
            current.updated_at = now
            shop_id = current.shop_id
        log.info("shop.removed", organization_id=str(org.id), shop_id=shop_id)

    def reseal_all(self) -> int:
        """Re-seal every stored secret under the current master key (after a new key was put
        first in `VZNOS_MASTER_KEY`). Returns how many changed."""
        changed = 0
        with transaction(self._sessions) as session:
            for shop in session.query(GatewayShop).with_for_update():
                resealed = self._keyring.reseal(shop.secret_sealed, secret_aad(shop.shop_id))
                if resealed != shop.secret_sealed:
                    shop.secret_sealed = resealed
                    changed += 1
        return changed
