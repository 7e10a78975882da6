"""The composition root: build settings-driven infrastructure and every service, once."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import dramatiq
import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from core.access import install_row_security
from core.clock import Clock, SystemClock
from core.crypto import KeyRing
from core.db import make_engine, make_sessions
from core.faults import FaultPoints
from core.idempotency import IdempotencyStore
from core.limits import RateLimiter, SignInThrottle
from core.queue import TaskQueue
from core.settings import Settings
from core.ssrf import UrlGuard
from ledger.reads import LedgerReads
from members.access.service import AccessPolicy, AccessService
from members.dues.service import DuesService
from members.dues.treasury import TreasuryService
from members.pii import MemberVault
from members.service import MemberService, OrganizationService
from payments.charges.billing import BillingService
from payments.charges.service import TASK_RESOLVE, TASK_SUBMIT, ChargeService
from payments.gateway.yookassa import YooKassaGateway
from payments.history.service import PaymentReads
from payments.pages.links import LinkSigner
from payments.pages.service import MemberPages
from payments.refunds.service import TASK_RESOLVE_REFUND, TASK_SUBMIT_REFUND, RefundService
from payments.retries.service import RetryPolicyService
from payments.shops.directory import ShopDirectory
from payments.shops.service import ShopService
from payments.standby.enrollment import (
    TASK_BINDING_RESOLVE,
    TASK_BINDING_SUBMIT,
    StandbyEnrollment,
)
from payments.standby.shortfalls import ShortfallService
from payments.subscriptions.erasure import ErasureService
from payments.subscriptions.models import PAYMENT_METHOD_COLUMNS
from payments.subscriptions.service import SubscriptionService
from vznos.broker import (
    QUEUE_PAYMENTS,
    QUEUE_WEBHOOKS,
    DramatiqQueue,
    TaskSpec,
    build_broker,
    register,
)
from vznos.keys import SEALED_COLUMNS, KeyRotation, build_keyring, link_secret
from webhooks.inbound.policy import InboundPolicy
from webhooks.inbound.service import TASK_PROCESS, InboxService
from webhooks.outbound.delivery import TASK_DELIVER, OutboundDeliveries
from webhooks.outbound.sender import WebhookSender
from webhooks.outbound.service import WebhookEndpointService

log = structlog.get_logger("vznos.container")


@dataclass(frozen=True)
class GatewayConfig:
    shop_id: str
    secret_key: str
    api_url: str


@dataclass
class Container:
    settings: Settings
    keyring: KeyRing
    database_url: str
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    broker: dramatiq.Broker
    queue: TaskQueue
    faults: FaultPoints
    gateways: ShopDirectory
    shops: ShopService
    vault: MemberVault
    access: AccessService
    organizations: OrganizationService
    members: MemberService
    ledger: LedgerReads
    dues: DuesService
    treasury: TreasuryService
    charges: ChargeService
    billing: BillingService
    subscriptions: SubscriptionService
    retry_policies: RetryPolicyService
    payments: PaymentReads
    refunds: RefundService
    pages: MemberPages
    erasure: ErasureService
    keys: KeyRotation
    standby: StandbyEnrollment
    shortfalls: ShortfallService
    inbox: InboxService
    url_guard: UrlGuard
    outbound: OutboundDeliveries
    webhook_endpoints: WebhookEndpointService
    webhook_sender: WebhookSender
    idempotency: IdempotencyStore
    rate_limiter: RateLimiter
    sign_in_throttle: SignInThrottle
    extras: dict[str, object] = field(default_factory=dict)

    def close(self) -> None:
        self.gateways.close()
        self.webhook_sender.close()
        self.broker.close()
        self.engine.dispose()


def warn_deprecated(settings: Settings) -> None:
    if settings.pre_charge_notice_days is not None:
        log.warning(
            "settings.deprecated",
            name="VZNOS_PRE_CHARGE_NOTICE_DAYS",
            use="VZNOS_PRECHARGE_NOTICE_DAYS",
            precharge_notice_days=settings.precharge_notice_days,
        )


def build_container(
    settings: Settings,
    *,
    database_url: str,
    gateway: GatewayConfig,
    clock: Clock | None = None,
    broker: dramatiq.Broker | None = None,
    faults: FaultPoints | None = None,
    keyring: KeyRing | None = None,
) -> Container:
    clock = clock or SystemClock()
    warn_deprecated(settings)
    keyring = keyring or build_keyring(settings)
    vault = MemberVault(keyring, PAYMENT_METHOD_COLUMNS)
    engine = make_engine(database_url, role=settings.database_role)
    sessions = make_sessions(engine)
    install_row_security(sessions)
    broker = broker or build_broker(settings.broker_url)
    queue = DramatiqQueue(broker)
    faults = faults or FaultPoints.from_setting(settings.faults)

    def shop_client(shop_id: str, secret_key: str) -> YooKassaGateway:
        # Every shop talks to the same API, each with its own credentials and connections.
        return YooKassaGateway(
            shop_id=shop_id,
            secret_key=secret_key,
            api_url=gateway.api_url,
            connect_timeout_seconds=settings.gateway_connect_timeout_seconds,
            read_timeout_seconds=settings.gateway_read_timeout_seconds,
        )

    gateways = ShopDirectory(
        sessions=sessions,
        keyring=keyring,
        default=shop_client(gateway.shop_id, gateway.secret_key),
        factory=shop_client,
    )
    charges = ChargeService(
        sessions=sessions,
        clock=clock,
        gateways=gateways,
        queue=queue,
        faults=faults,
        vault=vault,
        key_replay_limit=timedelta(hours=settings.gateway_key_replay_limit_hours),
    )
    refunds = RefundService(
        sessions=sessions,
        clock=clock,
        gateways=gateways,
        queue=queue,
        key_replay_limit=timedelta(hours=settings.gateway_key_replay_limit_hours),
    )
    subscriptions = SubscriptionService(
        sessions=sessions, clock=clock, gateways=gateways, charges=charges
    )
    standby = StandbyEnrollment(
        sessions=sessions,
        clock=clock,
        gateways=gateways,
        queue=queue,
        subscriptions=subscriptions,
        vault=vault,
        key_replay_limit=timedelta(hours=settings.gateway_key_replay_limit_hours),
    )
    inbox = InboxService(
        sessions=sessions,
        clock=clock,
        queue=queue,
        charges=charges,
        refunds=refunds,
        standby=standby,
        default_shop_id=gateway.shop_id,
        policy=InboundPolicy.from_settings(settings),
    )
    # Development and tests only: lets CRM URLs point at loopback and private networks.
    url_guard = UrlGuard(allow_private_targets=settings.webhook_allow_private_targets)
    webhook_sender = WebhookSender(
        guard=url_guard,
        connect_timeout_seconds=settings.webhook_connect_timeout_seconds,
        read_timeout_seconds=settings.webhook_read_timeout_seconds,
    )
    outbound = OutboundDeliveries(
        sessions=sessions,
        clock=clock,
        queue=queue,
        sender=webhook_sender,
        keyring=keyring,
        disable_after=timedelta(days=settings.webhook_disable_after_days),
    )
    register(
        broker,
        [
            TaskSpec(TASK_SUBMIT, QUEUE_PAYMENTS, charges.submit, "attempt_id"),
            TaskSpec(TASK_RESOLVE, QUEUE_PAYMENTS, charges.resolve, "attempt_id"),
            TaskSpec(TASK_SUBMIT_REFUND, QUEUE_PAYMENTS, refunds.submit, "refund_id"),
            TaskSpec(TASK_RESOLVE_REFUND, QUEUE_PAYMENTS, refunds.resolve, "refund_id"),
            TaskSpec(TASK_BINDING_SUBMIT, QUEUE_PAYMENTS, standby.submit, "binding_id"),
            TaskSpec(TASK_BINDING_RESOLVE, QUEUE_PAYMENTS, standby.resolve, "binding_id"),
            TaskSpec(TASK_PROCESS, QUEUE_WEBHOOKS, inbox.process, "inbox_id"),
            # The retry schedule lives in the database; dramatiq retries only cover crashes.
            TaskSpec(
                TASK_DELIVER,
                QUEUE_WEBHOOKS,
                outbound.deliver,
                "delivery_id",
                max_retries=2,
                time_limit_ms=60_000,
            ),
        ],
    )
    pages = MemberPages(
        sessions=sessions,
        clock=clock,
        signer=LinkSigner(link_secret(settings), clock),
        subscriptions=subscriptions,
        default_hours=settings.link_default_hours,
    )
    return Container(
        settings=settings,
        keyring=keyring,
        database_url=database_url,
        engine=engine,
        sessions=sessions,
        clock=clock,
        broker=broker,
        queue=queue,
        faults=faults,
        gateways=gateways,
        shops=ShopService(sessions=sessions, clock=clock, keyring=keyring, directory=gateways),
        access=AccessService(sessions, clock, access_policy(settings)),
        organizations=OrganizationService(sessions, clock),
        vault=vault,
        members=MemberService(sessions, clock, vault),
        ledger=LedgerReads(sessions),
        dues=DuesService(sessions, clock, accrual_rule=settings.accrual_rule),
        treasury=TreasuryService(sessions, clock),
        charges=charges,
        billing=BillingService(
            sessions=sessions,
            clock=clock,
            queue=queue,
            batch_size=settings.billing_batch_size,
            notice_days=settings.precharge_notice_days,
            expiring_notice_days=settings.card_expiring_notice_days,
        ),
        standby=standby,
        shortfalls=ShortfallService(
            sessions=sessions,
            clock=clock,
            queue=queue,
            notice_period=timedelta(days=settings.precharge_notice_days),
            refunds=refunds,
            batch_size=settings.billing_batch_size,
        ),
        retry_policies=RetryPolicyService(sessions=sessions, clock=clock),
        payments=PaymentReads(sessions),
        refunds=refunds,
        subscriptions=subscriptions,
        pages=pages,
        erasure=ErasureService(sessions, clock, vault),
        keys=KeyRotation(sessions, clock, vault, SEALED_COLUMNS),
        inbox=inbox,
        url_guard=url_guard,
        outbound=outbound,
        webhook_endpoints=WebhookEndpointService(
            sessions=sessions,
            clock=clock,
            guard=url_guard,
            deliveries=outbound,
            keyring=keyring,
            secret_overlap=timedelta(hours=settings.webhook_secret_overlap_hours),
        ),
        webhook_sender=webhook_sender,
        idempotency=IdempotencyStore(
            sessions,
            clock,
            retention=timedelta(hours=settings.idempotency_retention_hours),
            lock_timeout=timedelta(seconds=settings.idempotency_lock_timeout_seconds),
            keyring=keyring,
        ),
        rate_limiter=RateLimiter(settings.api_rate_limit, settings.api_rate_limit_storage_url),
        sign_in_throttle=SignInThrottle(
            RateLimiter(settings.sign_in_rate_limit, settings.api_rate_limit_storage_url),
            RateLimiter(settings.sign_in_address_rate_limit, settings.api_rate_limit_storage_url),
        ),
    )


def access_policy(settings: Settings) -> AccessPolicy:
    default = AccessPolicy()
    return AccessPolicy(
        hash_key=(
            settings.api_key_hash_key.get_secret_value().encode()
            if settings.api_key_hash_key
            else default.hash_key
        ),
        rotation_grace=timedelta(hours=settings.api_key_rotation_grace_hours),
        session_lifetime=timedelta(hours=settings.treasurer_session_hours),
    )
