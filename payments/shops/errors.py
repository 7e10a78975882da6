from __future__ import annotations

from core.errors import Conflict


class ShopTaken(Conflict):
    type_slug = "shop-taken"
    title = "The shop is registered to another organisation"


class ShopChangedConcurrently(Conflict):
    type_slug = "shop-changed-concurrently"
    title = "The shop was changed at the same time"
