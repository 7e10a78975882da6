"""The autopayment terms a member agrees to, versioned. YooKassa requires the member to be told
the regularity, the amount and how to cancel, and to consent. A published version is never
edited: change the words by adding a version (consents store the version and a hash of the
exact text shown)."""

from __future__ import annotations

from dataclasses import dataclass

AUTOPAY_PURPOSE = "autopay"
CURRENT_VERSION = "autopay-2026-11"


@dataclass(frozen=True)
class TermsFacts:
    organization: str
    amount: str  # formatted for the language
    billing_day: int
    first_month: str  # formatted for the language


_TERMS: dict[str, dict[str, tuple[str, ...]]] = {
    "autopay-2026-11": {
        "ru": (
            "Я даю согласие на автоплатёж: {organization} будет списывать с моей банковской "
            "карты членский профсоюзный взнос {amount} ежемесячно, {billing_day}-го числа "
            "(в месяце, где такого дня нет, — в последний день месяца), начиная с {first_month}.",
            "Первый платёж — сейчас, на странице платёжного сервиса ЮKassa; при этом карта "
            "сохраняется для следующих списаний. Данные карты хранит ЮKassa, профсоюз их не "
            "получает.",
            "Перед каждым списанием я получу уведомление. Если сумма взноса изменится, меня "
            "предупредят заранее.",
            "Я могу отключить автоплатёж в любой момент, сразу и без объяснения причин: по "
            "ссылке «Мой автоплатёж» в любом уведомлении, через свою профсоюзную организацию "
            "или в своём банке. Уже списанные взносы остаются уплаченными.",
        ),
        "en": (
            "I consent to auto-pay: {organization} will charge my bank card the union dues of "
            "{amount} every month on day {billing_day} (on the last day of a month that has "
            "no such day), starting with {first_month}.",
            "The first payment is made now, on the page of the payment service YooKassa, which "
            "saves the card for the next charges. YooKassa keeps the card details; the union "
            "never receives them.",
            "I will be notified before every charge. If the amount of dues changes, I will be "
            "told in advance.",
            "I can turn auto-pay off at any time, at once and without giving a reason: with "
            "the “My auto-pay” link in any notice, through my union branch, or at my bank. "
            "Dues already charged stay paid.",
        ),
    },
}


def terms(version: str, language: str, facts: TermsFacts) -> list[str]:
    """The paragraphs of a version of the terms, filled in, in one language."""
    paragraphs = _TERMS[version][language]
    return [
        paragraph.format(
            organization=facts.organization,
            amount=facts.amount,
            billing_day=facts.billing_day,
            first_month=facts.first_month,
        )
        for paragraph in paragraphs
    ]
