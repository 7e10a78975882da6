from __future__ import annotations

from core.errors import Conflict


class ShopTaken(Conflict):
    type_slug = "shop-taken"
    title = "The shop is registered to another organisation"
