"""Evidence of what a member agreed to, recorded in the transaction that acts on it."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from members.models import MemberConsent


@dataclass(frozen=True)
class ConsentEvidence:
    """A consent as given on a page: which text (version and the exact words), in which
    language, from where. The words themselves are kept as a hash: the versioned text lives in
    the code that showed it."""

    purpose: str
    text_version: str
    text: str
    language: str
    ip_address: str | None
    user_agent: str | None

    @property
    def text_sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def record_consent(
    session: Session,
    *,
    member_id: uuid.UUID,
    evidence: ConsentEvidence,
    accepted_at: datetime,
    source_type: str,
    source_id: str,
) -> MemberConsent:
    consent = MemberConsent(
        id=uuid.uuid4(),
        member_id=member_id,
        purpose=evidence.purpose,
        text_version=evidence.text_version,
        text_sha256=evidence.text_sha256,
        language=evidence.language,
        accepted_at=accepted_at,
        ip_address=evidence.ip_address,
        user_agent=(evidence.user_agent or "")[:512] or None,
        source_type=source_type,
        source_id=source_id,
    )
    session.add(consent)
    return consent
