"""SQL for the inbox. Never commits: the services own the transactions."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

# A notification is stored once per (source, shop, event, object); a payment notification only
# if the payment is one of ours (by the gateway's id, or by the attempt id our create put in
# its metadata while its reply was not recorded yet). One statement, because this is the hot
# path of a notification storm: no row back means a duplicate or a payment we do not know.
_STORE = text(
    "INSERT INTO webhook_inbox (id, source, shop_id, event, object_id, payload, received_at,"
    " attempts)"
    " SELECT :id, :source, :shop_id, :event, CAST(:object_id AS varchar), CAST(:payload AS jsonb),"
    " :received_at, 0"
    " WHERE NOT :payment_event"
    " OR EXISTS (SELECT 1 FROM charge_attempts"
    " WHERE gateway_payment_id = CAST(:object_id AS varchar))"
    " OR EXISTS (SELECT 1 FROM charge_attempts WHERE id = CAST(:named_attempt AS uuid)"
    " AND (gateway_payment_id IS NULL OR gateway_payment_id = CAST(:object_id AS varchar)))"
    " ON CONFLICT (source, shop_id, event, object_id) DO NOTHING RETURNING id"
)


def store(
    session: Session,
    *,
    source: str,
    shop_id: str,
    event: str,
    object_id: str,
    payload: dict[str, Any],
    received_at: datetime,
    payment_event: bool,
    named_attempt: uuid.UUID | None,
) -> uuid.UUID | None:
    """The new inbox row's id; None for a duplicate, or a payment event of a payment that is
    not ours (the caller tells them apart, off the hot path)."""
    inbox_id: uuid.UUID | None = session.execute(
        _STORE,
        {
            "id": uuid.uuid4(),
            "source": source,
            "shop_id": shop_id,
            "event": event,
            "object_id": object_id,
            "payload": json.dumps(payload, ensure_ascii=False),
            "received_at": received_at,
            "payment_event": payment_event,
            "named_attempt": named_attempt,
        },
    ).scalar()
    return inbox_id
