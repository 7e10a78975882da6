"""Signed member links: who (the member's internal id), for what (subscribe or manage), until
when. No login: whoever holds the link acts for the member until it expires, so links are short-
lived, bound to one purpose, and every form on a page carries a token derived from its link."""

from __future__ import annotations

import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from itsdangerous import BadData, Signer, URLSafeSerializer

from core.clock import Clock
from core.errors import DomainError


class LinkPurpose(StrEnum):
    SUBSCRIBE = "subscribe"
    MANAGE = "manage"


_CODE = {LinkPurpose.SUBSCRIBE: "s", LinkPurpose.MANAGE: "m"}
_PURPOSE = {code: purpose for purpose, code in _CODE.items()}


class LinkInvalid(DomainError):
    status = 400
    type_slug = "link-invalid"
    title = "The link is not valid"


class LinkExpired(DomainError):
    status = 410
    type_slug = "link-expired"
    title = "The link has expired"


class LinkRetired(DomainError):
    """The link's member was erased: whatever the link promised is gone with their data."""

    status = 410
    type_slug = "link-retired"
    title = "The link is no longer in use"


@dataclass(frozen=True)
class MemberLink:
    member_id: uuid.UUID
    purpose: LinkPurpose
    expires_at: datetime
    # For a subscribe link of a member without a dues plan: the monthly amount the CRM set.
    amount_kopecks: int | None = None


class LinkSigner:
    def __init__(self, secret: str, clock: Clock) -> None:
        self._links = URLSafeSerializer(secret, salt="vznos.member-link")
        self._forms = Signer(secret, salt="vznos.member-form")
        self._clock = clock

    def issue(self, link: MemberLink) -> str:
        payload: dict[str, Any] = {
            "m": link.member_id.hex,
            "p": _CODE[link.purpose],
            "x": int(link.expires_at.timestamp()),
            # Every link is its own: two links issued in the same second differ, and so do
            # the form tokens derived from them.
            "n": secrets.token_urlsafe(6),
        }
        if link.amount_kopecks is not None:
            payload["a"] = link.amount_kopecks
        return str(self._links.dumps(payload))

    def read(self, token: str, purpose: LinkPurpose | None = None) -> MemberLink:
        """The link's claims. Tampered, malformed or for another purpose: LinkInvalid; past its
        expiry by the injected clock: LinkExpired."""
        try:
            payload = self._links.loads(token)
            link = MemberLink(
                member_id=uuid.UUID(hex=payload["m"]),
                purpose=_PURPOSE[payload["p"]],
                expires_at=datetime.fromtimestamp(int(payload["x"]), UTC),
                amount_kopecks=int(payload["a"]) if "a" in payload else None,
            )
        except (BadData, KeyError, TypeError, ValueError) as exc:
            raise LinkInvalid("the link is damaged or was not issued by us", field="link") from exc
        if purpose is not None and link.purpose != purpose:
            raise LinkInvalid(f"this link is not for {purpose}", field="link")
        if self._clock.now() >= link.expires_at:
            raise LinkExpired("the link has expired", field="link")
        return link

    def form_token(self, token: str, action: str) -> str:
        """A token for one form on one link's page: a POST without it (or with one made for
        another link or action) is refused, so no other site can post for the member."""
        return self._forms.get_signature(f"{action}:{token}").decode("ascii")

    def check_form_token(self, token: str, action: str, value: str | None) -> None:
        if not value or not hmac.compare_digest(value, self.form_token(token, action)):
            raise LinkInvalid("the form is stale or did not come from this page", field="csrf")
