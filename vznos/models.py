"""Every table, imported once so that the metadata (and Alembic) sees the whole schema."""

from __future__ import annotations

from core import audit as audit_models
from core import idempotency as idempotency_models
from core import jobs as jobs_models
from core import outbox as outbox_models
from core.db import Base
from ledger import models as ledger_models
from members import models as members_models
from payments.charges import models as charges_models
from payments.refunds import models as refunds_models
from payments.retries import models as retries_models
from payments.shops import models as shops_models
from payments.standby import models as standby_models
from payments.subscriptions import models as subscriptions_models
from webhooks.inbound import models as inbound_models
from webhooks.outbound import models as outbound_models

metadata = Base.metadata

__all__ = [
    "audit_models",
    "charges_models",
    "idempotency_models",
    "inbound_models",
    "jobs_models",
    "ledger_models",
    "members_models",
    "metadata",
    "outbound_models",
    "outbox_models",
    "refunds_models",
    "retries_models",
    "shops_models",
    "standby_models",
    "subscriptions_models",
]
