from __future__ import annotations

from core.errors import Conflict, InvalidInput, ServiceUnavailable


class ShopTaken(Conflict):
    type_slug = "shop-taken"
    title = "The shop is registered to another organisation"


class ShopChangedConcurrently(Conflict):
    type_slug = "shop-changed-concurrently"
    title = "The shop was changed at the same time"


class CredentialsRefused(InvalidInput):
    type_slug = "shop-credentials-refused"
    title = "YooKassa refused the shop's credentials"


class CredentialsUnchecked(ServiceUnavailable):
    type_slug = "shop-credentials-unchecked"
    title = "YooKassa could not be asked to check the credentials"
