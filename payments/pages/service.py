"""Use cases behind the member's pages and the CRM's link API. The money-moving work is the
subscription service's (start, cancel, change card, pay overdue); this module reads what the
pages show, issues and checks links, and records consent with its evidence."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import structlog
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.errors import InvalidInput
from core.money import MoneyIn, MoneyOut
from core.periods import local_date, period_of
from members.consents import ConsentEvidence
from members.dues.service import member_monthly_amount
from members.models import Member, Organization
from members.service import Principal, visible_member
from payments.charges import repository as charges_repository
from payments.charges.arrears import Overdue
from payments.charges.states import ChargeKind
from payments.pages.links import LinkInvalid, LinkPurpose, LinkRetired, LinkSigner, MemberLink
from payments.pages.locale import Formatter, Language
from payments.pages.schemas import LinkCreate, LinkOut
from payments.pages.terms import AUTOPAY_PURPOSE, CURRENT_VERSION, TermsFacts, terms
from payments.subscriptions.schemas import Consent, SubscriptionCreate, SubscriptionOut
from payments.subscriptions.service import (
    MAX_CARD_KOPECKS,
    MIN_CARD_KOPECKS,
    SELF_SERVICE_STATUSES,
    SubscriptionService,
)
from payments.subscriptions.states import LIVE_STATUSES, SubscriptionStatus

log = structlog.get_logger("payments.pages")

RECENT_PAYMENTS = 12
# Billing on days 29-31 would move around in short months; a member subscribing late in a month
# is charged on the 28th.
LAST_STEADY_BILLING_DAY = 28
PATHS = {LinkPurpose.SUBSCRIBE: "/my/subscribe/", LinkPurpose.MANAGE: "/my/autopay/"}


class NoMonthlyAmount(InvalidInput):
    type_slug = "no-monthly-amount"
    title = "The member's monthly dues are unknown"


class ConsentMissing(InvalidInput):
    status = 400
    type_slug = "consent-required"
    title = "Consent to the autopayment terms is required"


@dataclass(frozen=True)
class SubscribeView:
    organization: str
    amount_kopecks: int
    currency: str
    billing_day: int
    first_month: date
    terms_version: str
    live: bool

    def terms(self, fmt: Formatter) -> list[str]:
        facts = TermsFacts(
            organization=self.organization,
            amount=fmt.money(self.amount_kopecks, self.currency),
            billing_day=self.billing_day,
            first_month=fmt.since_month(self.first_month),
        )
        return terms(self.terms_version, fmt.language, facts)


@dataclass(frozen=True)
class PaymentLine:
    created_at: datetime
    kind: ChargeKind
    period_month: date
    covered_months: tuple[date, ...]
    amount_kopecks: int
    currency: str
    status: str


@dataclass(frozen=True)
class AutopayView:
    organization: str
    timezone: str
    subscription: SubscriptionOut | None
    overdue: Overdue
    payments: list[PaymentLine]
    processing: bool
    card_change_kopecks: int = MIN_CARD_KOPECKS

    @property
    def can_act(self) -> bool:
        """Change the card, pay what is overdue, cancel: auto-pay is on with a saved card."""
        return self.subscription is not None and self.subscription.status in SELF_SERVICE_STATUSES

    @property
    def can_change_card(self) -> bool:
        # Standby terms promise no payment while payroll pays; its card is saved without one.
        return (
            self.can_act
            and self.subscription is not None
            and (self.subscription.status != SubscriptionStatus.STANDBY)
        )

    @property
    def can_cancel(self) -> bool:
        return self.subscription is not None and self.subscription.status in LIVE_STATUSES


class MemberPages:
    def __init__(
        self,
        *,
        sessions: sessionmaker[Session],
        clock: Clock,
        signer: LinkSigner,
        subscriptions: SubscriptionService,
        default_hours: int,
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._signer = signer
        self._subscriptions = subscriptions
        self._default_hours = default_hours

    # -- the CRM's link API ---------------------------------------------------------------

    def issue_link(
        self, principal: Principal, external_id: str, data: LinkCreate, base_url: str
    ) -> LinkOut:
        """A link for the member to open without a login, bound to their id and one purpose."""
        now = self._clock.now()
        expires_at = (now + timedelta(hours=data.expires_in_hours or self._default_hours)).replace(
            microsecond=0
        )
        amount: int | None = None
        with self._sessions() as session:
            member = visible_member(session, principal, external_id)
            if data.purpose == LinkPurpose.SUBSCRIBE:
                amount = self._offered_amount(session, member, data.amount)
        link = MemberLink(
            member_id=member.id,
            purpose=data.purpose,
            expires_at=expires_at,
            # Only an amount the plan does not already fix travels in the link.
            amount_kopecks=data.amount.kopecks if data.amount is not None else None,
        )
        log.info("member_link.issued", member_id=str(member.id), purpose=str(data.purpose))
        return LinkOut(
            url=base_url.rstrip("/") + PATHS[data.purpose] + self._signer.issue(link),
            purpose=data.purpose,
            expires_at=expires_at,
            amount=MoneyOut.of(amount) if amount is not None else None,
        )

    def _offered_amount(self, session: Session, member: Member, given: MoneyIn | None) -> int:
        org = session.get(Organization, member.organization_id)
        assert org is not None
        planned = member_monthly_amount(
            session, member.id, period_of(self._clock.now(), org.timezone)
        )
        if planned is not None and planned > 0:
            return planned
        if given is None:
            raise NoMonthlyAmount(
                "the member's dues plan gives no monthly amount; give `amount`", field="amount"
            )
        if not MIN_CARD_KOPECKS <= given.kopecks <= MAX_CARD_KOPECKS:
            raise NoMonthlyAmount(
                "a card payment must be between 1.00 and 350000.00 RUB", field="amount.value"
            )
        return given.kopecks

    # -- links on pages -----------------------------------------------------------------------

    def read(self, token: str, purpose: LinkPurpose) -> MemberLink:
        link = self._signer.read(token, purpose)
        with self._sessions() as session:
            member = session.get(Member, link.member_id)
            if member is None:
                raise LinkInvalid("the link names no member", field="link")
            if member.erased_at is not None:
                # Crypto-shredded: nothing may be shown, subscribed or paid for a pseudonym.
                raise LinkRetired("the link's member was erased", field="link")
        return link

    def form_token(self, token: str, action: str) -> str:
        return self._signer.form_token(token, action)

    def check_form(self, token: str, action: str, value: str | None) -> None:
        self._signer.check_form_token(token, action, value)

    def manage_token(self, link: MemberLink) -> str:
        """A "My auto-pay" link for the holder of a link to the member's pages: where the
        acquirer sends the member back, and where a subscribe page points once auto-pay is on."""
        expires_at = max(
            link.expires_at,
            (self._clock.now() + timedelta(hours=self._default_hours)).replace(microsecond=0),
        )
        return self._signer.issue(MemberLink(link.member_id, LinkPurpose.MANAGE, expires_at))

    # -- subscribe ------------------------------------------------------------------------

    def subscribe_view(self, link: MemberLink) -> SubscribeView:
        now = self._clock.now()
        with self._sessions() as session:
            member = session.get(Member, link.member_id)
            assert member is not None
            org = session.get(Organization, member.organization_id)
            assert org is not None
            planned = member_monthly_amount(session, member.id, period_of(now, org.timezone))
            amount = planned if planned else link.amount_kopecks
            if amount is None:
                raise NoMonthlyAmount("the member's monthly dues are unknown", field="amount")
            live = self._subscriptions.member_subscription(member.id)
            return SubscribeView(
                organization=org.name,
                amount_kopecks=amount,
                currency="RUB",
                billing_day=min(local_date(now, org.timezone).day, LAST_STEADY_BILLING_DAY),
                first_month=period_of(now, org.timezone),
                terms_version=CURRENT_VERSION,
                live=live is not None and live.status in LIVE_STATUSES,
            )

    def subscribe(
        self,
        link: MemberLink,
        *,
        language: Language,
        consent_given: bool,
        ip_address: str | None,
        user_agent: str | None,
        return_url: str,
    ) -> str | None:
        """Turn auto-pay on with the member's consent; returns the acquirer's page for the first
        payment (None if the acquirer did not answer in time: the page says to reload)."""
        if not consent_given:
            raise ConsentMissing("tick the box to accept the autopayment terms", field="consent")
        view = self.subscribe_view(link)
        now = self._clock.now()
        evidence = ConsentEvidence(
            purpose=AUTOPAY_PURPOSE,
            text_version=view.terms_version,
            text="\n\n".join(view.terms(Formatter(language))),
            language=language,
            ip_address=ip_address,
            user_agent=user_agent,
        )
        data = SubscriptionCreate.model_validate(
            {
                "amount": {"value": MoneyOut.of(view.amount_kopecks).value, "currency": "RUB"},
                "billing_day": view.billing_day,
                "consent": Consent(text_version=view.terms_version, accepted_at=now),
                "return_url": return_url,
            }
        )
        started = self._subscriptions.start_for_member(link.member_id, data, evidence)
        log.info("member_pages.subscribed", subscription_id=str(started.id))
        return started.confirmation_url

    # -- my auto-pay ------------------------------------------------------------------------

    def autopay_view(self, link: MemberLink) -> AutopayView:
        subscription = self._subscriptions.member_subscription(link.member_id)
        overdue = self._subscriptions.overdue(link.member_id)
        with self._sessions() as session:
            member = session.get(Member, link.member_id)
            assert member is not None
            org = session.get(Organization, member.organization_id)
            assert org is not None
            payments: list[PaymentLine] = []
            processing = False
            if subscription is not None:
                for charge in charges_repository.recent_charges(
                    session, subscription.id, RECENT_PAYMENTS
                ):
                    payments.append(
                        PaymentLine(
                            created_at=charge.created_at,
                            kind=ChargeKind(charge.kind),
                            period_month=charge.period_month,
                            covered_months=tuple(charge.covered_months or ()),
                            amount_kopecks=charge.amount_kopecks,
                            currency=charge.currency,
                            status=charge.status,
                        )
                    )
                processing = bool(
                    charges_repository.open_first_payment_attempts(session, subscription.id)
                )
            return AutopayView(
                organization=org.name,
                timezone=org.timezone,
                subscription=subscription,
                overdue=overdue,
                payments=payments,
                processing=processing,
            )

    def cancel(self, link: MemberLink) -> bool:
        return self._subscriptions.cancel_by_member(link.member_id)

    def change_card(self, link: MemberLink, return_url: str) -> str | None:
        return self._subscriptions.change_card(link.member_id, return_url)

    def pay_overdue(self, link: MemberLink, return_url: str) -> str | None:
        return self._subscriptions.pay_overdue(link.member_id, return_url)

    def returned(self, link: MemberLink) -> None:
        self._subscriptions.settle_returned(link.member_id)
