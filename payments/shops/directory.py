"""Which YooKassa client serves a shop: one `YooKassaGateway` (its own httpx client and
credentials) per shop, built on first use and kept; no global state, so any number of shops
live in one process.

Every lookup compares the shop's `version` in the database with the cached client's, so a
secret changed by any process is picked up by every process on its next call; the old client is
retired (closed with the directory), not closed under a request that may still be using it.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from core.crypto import KeyRing, column_aad
from payments.gateway.yookassa import YooKassaGateway
from payments.shops import repository

GatewayFactory = Callable[[str, str], YooKassaGateway]


def secret_aad(shop_id: str) -> str:
    """A sealed secret opens only on its own shop's row."""
    return column_aad("gateway_shops", "secret_sealed", shop_id)


class ShopDirectory:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        keyring: KeyRing,
        default: YooKassaGateway,
        factory: GatewayFactory,
    ) -> None:
        self._sessions = sessions
        self._keyring = keyring
        self._default = default
        self._factory = factory
        self._lock = threading.Lock()
        self._clients: dict[str, tuple[int, YooKassaGateway]] = {}
        self._retired: list[YooKassaGateway] = []

    def default_shop_id(self) -> str:
        return self._default.shop_id

    def shop_for_organization(self, organization_id: uuid.UUID) -> str:
        """The organisation's own shop, else its nearest ancestor's, else the installation's."""
        with self._sessions() as session:
            found = repository.nearest_shop(session, organization_id)
        return found.shop_id if found is not None else self._default.shop_id

    def for_shop(self, shop_id: str) -> YooKassaGateway:
        if shop_id == self._default.shop_id:
            return self._default
        with self._sessions() as session:
            stored = repository.credentials(session, shop_id)
        if stored is None:
            raise LookupError(f"no gateway configured for shop {shop_id!r}")
        version, sealed = stored
        with self._lock:
            cached = self._clients.get(shop_id)
            if cached is not None and cached[0] == version:
                return cached[1]
        client = self._factory(shop_id, self._keyring.open(sealed, secret_aad(shop_id)))
        with self._lock:
            cached = self._clients.get(shop_id)
            if cached is not None and cached[0] >= version:
                self._retired.append(client)  # another thread built it first
                return cached[1]
            if cached is not None:
                self._retired.append(cached[1])
            self._clients[shop_id] = (version, client)
        return client

    def verify(self, shop_id: str, secret_key: str) -> str:
        """Ask the gateway which shop these credentials open, with a throwaway client.
        Raises what the adapter raises (GatewayRejected for refused credentials)."""
        client = self._factory(shop_id, secret_key)
        try:
            return client.account_id()
        finally:
            client.close()

    def invalidate(self, shop_id: str) -> None:
        """Forget the client of a shop whose credentials changed in this process."""
        with self._lock:
            cached = self._clients.pop(shop_id, None)
            if cached is not None:
                self._retired.append(cached[1])

    def close(self) -> None:
        with self._lock:
            clients = [client for _, client in self._clients.values()] + self._retired
            self._clients.clear()
            self._retired = []
        for client in clients:
            client.close()
        self._default.close()
