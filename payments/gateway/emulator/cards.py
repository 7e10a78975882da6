"""Test cards of the YooKassa test shop and parsing of what a member types on the checkout page.

The tables mirror yookassa-detail.md §14. Only test cards are accepted: an emulator is no place to
type a real card number, so any other Luhn-valid number is refused on the form.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import UTC, datetime

from payments.gateway.emulator.errors import CheckoutError


@dataclass(frozen=True)
class KnownCard:
    number: str
    network: str  # card_type as YooKassa spells it
    three_d_secure: bool
    decline_party: str | None = None
    decline_reason: str | None = None

    @property
    def declines(self) -> bool:
        return self.decline_reason is not None


_SUCCESS: list[tuple[str, str, bool]] = [
    ("5555555555554477", "MasterCard", True),
    ("5555555555554444", "MasterCard", False),
    ("4793128161644804", "Visa", True),
    ("4111111111111111", "Visa", False),
    ("2200000000000004", "Mir", True),
    ("2202474301322987", "Mir", False),
    ("6759649826438453", "MasterCard", False),  # Maestro is reported as MasterCard
    ("4175001000000017", "Visa", False),  # Visa Electron is reported as Visa
    ("370000000000002", "AmericanExpress", False),
    ("3528000700000000", "JCB", False),
    ("36700102000000", "DinersClub", False),
]

# (party, Mastercard, Visa, Mir, reason)
_DECLINES: list[tuple[str, str, str, str, str]] = [
    (
        "payment_network",
        "5555555555554592",
        "4839665499603842",
        "2200000000000012",
        "3d_secure_failed",
    ),
    ("payment_network", "5555555555554535", "4926946416239025", "2200000000000020", "call_issuer"),
    ("payment_network", "5555555555554543", "4141435412630840", "2200000000000038", "card_expired"),
    (
        "payment_network",
        "5555555555554568",
        "4483274282299972",
        "2200000000000046",
        "fraud_suspected",
    ),
    (
        "payment_network",
        "5555555555554527",
        "4889971706588753",
        "2202202212312379",
        "general_decline",
    ),
    (
        "payment_network",
        "5555555555554600",
        "4562265587712390",
        "2200000000000053",
        "insufficient_funds",
    ),
    (
        "payment_network",
        "5555555555554618",
        "4951017853630544",
        "2201382000000013",
        "invalid_card_number",
    ),
    ("payment_network", "5555555555554626", "4194180666146368", "2200770212727079", "invalid_csc"),
    (
        "payment_network",
        "5555555555554501",
        "4654130848359150",
        "2201382000000021",
        "issuer_unavailable",
    ),
    (
        "payment_network",
        "5555555555554576",
        "4565231022577548",
        "2201382000000039",
        "payment_method_limit_exceeded",
    ),
    (
        "payment_network",
        "5555555555554550",
        "4233961169071671",
        "2201382000000047",
        "payment_method_restricted",
    ),
    ("yoo_money", "5555555555554584", "4969751510013864", "2201382000000054", "country_forbidden"),
    ("yoo_money", "5555555555554634", "4119098878796485", "2201696981989955", "fraud_suspected"),
]


def _build_table() -> dict[str, KnownCard]:
    table = {n: KnownCard(n, net, tds) for n, net, tds in _SUCCESS}
    for party, mc, visa, mir, reason in _DECLINES:
        # Only the 3-D Secure failure cards go through a challenge; the rest decline at the issuer.
        tds = reason == "3d_secure_failed"
        for number, network in ((mc, "MasterCard"), (visa, "Visa"), (mir, "Mir")):
            table[number] = KnownCard(number, network, tds, party, reason)
    return table


TEST_CARDS: dict[str, KnownCard] = _build_table()

# Shown on the checkout page: a few cards people actually reach for.
FEATURED_CARDS: list[tuple[str, str]] = [
    ("5555 5555 5555 4444", "успешно, без 3-D Secure / success, no 3-D Secure"),
    ("5555 5555 5555 4477", "успешно, с 3-D Secure / success with 3-D Secure"),
    ("2202 4743 0132 2987", "Мир, успешно / Mir, success"),
    ("5555 5555 5555 4600", "отказ: недостаточно средств / decline: insufficient_funds"),
    ("5555 5555 5555 4543", "отказ: карта просрочена / decline: card_expired"),
    ("5555 5555 5555 4527", "отказ банка / decline: general_decline"),
]

# Reasons a scripted autopayment may end with, and who reports them (yookassa-detail.md §8).
YOO_MONEY_REASONS = frozenset(
    {"country_forbidden", "expired_on_confirmation", "expired_on_capture", "internal_timeout"}
)
MERCHANT_REASONS = frozenset({"canceled_by_merchant"})
DECLINE_REASONS = frozenset(
    {
        "3d_secure_failed",
        "call_issuer",
        "card_expired",
        "payment_method_limit_exceeded",
        "payment_method_restricted",
        "country_forbidden",
        "general_decline",
        "fraud_suspected",
        "identification_required",
        "insufficient_funds",
        "invalid_card_number",
        "invalid_csc",
        "issuer_unavailable",
        "canceled_by_merchant",
        "permission_revoked",
        "internal_timeout",
        "expired_on_confirmation",
        "expired_on_capture",
        "unsupported_mobile_operator",
        "deal_expired",
    }
)


def party_for(reason: str) -> str:
    if reason in MERCHANT_REASONS:
        return "merchant"
    if reason in YOO_MONEY_REASONS:
        return "yoo_money"
    return "payment_network"


def luhn_ok(number: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(number)):
        digit = int(ch)
        if i % 2 == 1:
            digit *= 2
            if digit > 9:
                digit -= 9
        total += digit
    return total % 10 == 0


@dataclass(frozen=True)
class EnteredCard:
    """A card as typed on the form, after checks; `number` never leaves this module's callers."""

    card: KnownCard
    expiry_month: int
    expiry_year: int

    @property
    def masked(self) -> str:
        return f"{self.card.number[:6]}******{self.card.number[-4:]}"

    def as_json(self) -> dict[str, str]:
        """The `card` object in the shape the SDK validates strictly (MM, YYYY, 2-char country)."""
        return {
            "first6": self.card.number[:6],
            "last4": self.card.number[-4:],
            "expiry_year": f"{self.expiry_year:04d}",
            "expiry_month": f"{self.expiry_month:02d}",
            "card_type": self.card.network,
            "issuer_country": "RU",
            "issuer_name": "Test Bank",
        }


def card_expired(expiry_month: int, expiry_year: int, now: datetime) -> bool:
    """A card is valid through the last moment of its expiry month."""
    last_day = calendar.monthrange(expiry_year, expiry_month)[1]
    end = datetime(expiry_year, expiry_month, last_day, 23, 59, 59, tzinfo=UTC)
    return end < now


def parse_card(
    number: str, expiry_month: str, expiry_year: str, csc: str, now: datetime
) -> EnteredCard:
    digits = "".join(ch for ch in number if ch not in " -")
    if not digits.isdigit() or not 12 <= len(digits) <= 19:
        raise CheckoutError("Неверный номер карты / Invalid card number")
    card = TEST_CARDS.get(digits)
    if card is None:
        if not luhn_ok(digits):
            raise CheckoutError("Неверный номер карты / Invalid card number")
        raise CheckoutError(
            "Это не тестовая карта: используйте карту из списка ниже / "
            "Not a test card: use one of the cards listed below"
        )
    month_s, year_s = expiry_month.strip(), expiry_year.strip()
    if not month_s.isdigit() or not 1 <= int(month_s) <= 12:
        raise CheckoutError("Неверный месяц срока действия / Invalid expiry month")
    if not year_s.isdigit() or len(year_s) not in (2, 4):
        raise CheckoutError("Неверный год срока действия / Invalid expiry year")
    month, year = int(month_s), int(year_s)
    if year < 100:
        year += 2000
    if not 2001 <= year <= 2199:
        raise CheckoutError("Неверный год срока действия / Invalid expiry year")
    if card_expired(month, year, now):
        raise CheckoutError("Срок действия карты истёк / The card has expired")
    csc_s = csc.strip()
    if not csc_s.isdigit() or len(csc_s) not in (3, 4):
        raise CheckoutError("Неверный код CVC / Invalid security code (CVC)")
    return EnteredCard(card, month, year)
