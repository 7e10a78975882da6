"""The pages' two languages: Russian first, English by `?lang=en`. Words live in one catalogue
per language; amounts and dates are formatted by Babel for ru_RU or en."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from babel.dates import format_date, format_datetime
from babel.numbers import format_currency

from core.periods import zone

Language = Literal["ru", "en"]
DEFAULT_LANGUAGE: Language = "ru"
_BABEL_LOCALE = {"ru": "ru_RU", "en": "en"}


def language_of(value: str | None) -> Language:
    return "en" if (value or "").strip().lower() == "en" else DEFAULT_LANGUAGE


@dataclass(frozen=True)
class Formatter:
    language: Language

    @property
    def locale(self) -> str:
        return _BABEL_LOCALE[self.language]

    def money(self, kopecks: int, currency: str = "RUB") -> str:
        value = Decimal(kopecks).scaleb(-2)
        if self.language == "en":
            # Babel's English symbol for the rouble is the code; put it after, as on receipts.
            return format_currency(
                value, currency, locale=self.locale, format="#,##0.00\xa0¤", currency_digits=False
            )
        return format_currency(value, currency, locale=self.locale)

    def day(self, value: date) -> str:
        return format_date(value, "long", locale=self.locale)

    def month(self, value: date) -> str:
        """A month standing alone: «ноябрь 2026», "November 2026"."""
        return format_date(value, "LLLL y", locale=self.locale)

    def since_month(self, value: date) -> str:
        """A month after «начиная с»: Russian needs the genitive («ноября 2026»)."""
        if self.language == "ru":
            return format_date(value, "MMMM y", locale=self.locale)
        return self.month(value)

    def moment(self, value: datetime, timezone: str) -> str:
        return format_datetime(value, "d MMM y, HH:mm", tzinfo=zone(timezone), locale=self.locale)


TEXTS: dict[Language, dict[str, str]] = {
    "ru": {
        "brand": "Взносы",
        "skip": "К содержанию",
        "switch": "English",
        "switch_lang": "en",
        "language_nav": "Язык",
        "subscribe_title": "Автоплатёж членских взносов",
        "organization": "Организация",
        "monthly_amount": "Взнос в месяц",
        "billing_day": "День списания",
        "billing_day_value": "{day}-го числа каждого месяца",
        "first_payment": "Первый платёж сейчас",
        "terms_title": "Условия автоплатежа",
        "terms_version": "Редакция условий: {version}",
        "consent_label": "Я прочитал(а) условия и согласен(на) на ежемесячное списание взноса "
        "с моей карты",
        "consent_required": "Чтобы подключить автоплатёж, отметьте согласие с условиями "
        "(поле «Согласие»).",
        "subscribe_button": "Перейти к оплате {amount}",
        "subscribe_note": "Вы перейдёте на страницу ЮKassa, чтобы ввести данные карты.",
        "already_title": "Автоплатёж уже подключён",
        "already_text": "У вас уже есть автоплатёж взносов.",
        "open_autopay": "Открыть «Мой автоплатёж»",
        "autopay_title": "Мой автоплатёж",
        "status": "Состояние",
        "status_pending_confirmation": "Ожидает первого платежа",
        "status_active": "Подключён",
        "status_past_due": "Последнее списание не прошло",
        "status_needs_payment_method": "Нужна новая карта",
        "status_paused": "Приостановлен",
        "status_standby": "В резерве",
        "status_canceled": "Отключён",
        "card": "Карта",
        "card_value": "{brand} •••• {last4}, действует до {month:02d}/{year}",
        "no_card": "Карта ещё не привязана",
        "next_charge": "Следующее списание",
        "next_charge_value": "{date} — {amount}",
        "no_next_charge": "Не запланировано",
        "processing": "Платёж обрабатывается. Обновите страницу через минуту.",
        "continue_payment": "Продолжить оплату",
        "none_title": "Автоплатёж не подключён",
        "none_text": "У вас нет автоплатежа взносов. Чтобы подключить его, попросите ссылку "
        "в своей профсоюзной организации.",
        "overdue_title": "Задолженность",
        "overdue_text": "Не оплачено месяцев: {count} ({months}), всего {amount}.",
        "overdue_button": "Оплатить {amount} сейчас",
        "overdue_note": "Оплата на странице ЮKassa; карта, которой вы заплатите, станет картой "
        "автоплатежа.",
        "change_card_title": "Сменить карту",
        "change_card_text": "Для привязки новой карты с неё спишется {amount} — эта сумма "
        "зачтётся в счёт следующих взносов. Старая карта заменится, только когда платёж "
        "новой картой пройдёт.",
        "change_card_button": "Привязать новую карту",
        "cancel_title": "Отключить автоплатёж",
        "cancel_text": "Списания прекратятся сразу. Уже уплаченные взносы останутся уплаченными; "
        "взносы за следующие месяцы нужно будет платить иначе (например, через бухгалтерию "
        "работодателя).",
        "cancel_link": "Отключить автоплатёж…",
        "cancel_confirm_title": "Отключить автоплатёж?",
        "cancel_confirm_button": "Да, отключить",
        "cancel_back": "Нет, вернуться",
        "canceled_notice": "Автоплатёж отключён.",
        "card_changed_notice": "Новая карта привязана.",
        "returned_notice": "Вы вернулись со страницы оплаты.",
        "recent_title": "Последние платежи",
        "recent_none": "Платежей пока нет.",
        "col_date": "Дата",
        "col_what": "За что",
        "col_amount": "Сумма",
        "col_status": "Состояние",
        "kind_initial": "Взнос за {month} (первый платёж)",
        "kind_recurring": "Взнос за {month}",
        "kind_card_change": "Привязка карты",
        "kind_arrears": "Задолженность: {months}",
        "charge_pending": "В обработке",
        "charge_succeeded": "Оплачено",
        "charge_failed": "Не прошло",
        "link_invalid_title": "Ссылка недействительна",
        "link_invalid_text": "Ссылка повреждена или устарела. Попросите новую ссылку в своей "
        "профсоюзной организации.",
        "link_expired_title": "Срок действия ссылки истёк",
        "link_expired_text": "Ссылки на эту страницу действуют ограниченное время. Попросите "
        "новую ссылку в своей профсоюзной организации.",
        "link_retired_title": "Ссылка больше не действует",
        "link_retired_text": "По этой ссылке больше ничего нельзя сделать. Если вопрос остался, "
        "обратитесь в свою профсоюзную организацию.",
        "form_stale_title": "Форма устарела",
        "form_stale_text": "Откройте страницу по ссылке ещё раз и повторите действие.",
        "problem_title": "Не получилось",
        "nothing_overdue": "Задолженности нет.",
        "not_live": "Автоплатёж не подключён.",
        "gateway_wait": "Платёжный сервис не ответил вовремя. Обновите страницу через минуту.",
        "footer": "Данные карты хранит платёжный сервис ЮKassa.",
    },
    "en": {
        "brand": "Dues",
        "skip": "Skip to content",
        "switch": "Русский",
        "switch_lang": "ru",
        "language_nav": "Language",
        "subscribe_title": "Union dues auto-pay",
        "organization": "Organisation",
        "monthly_amount": "Dues per month",
        "billing_day": "Charged on",
        "billing_day_value": "day {day} of every month",
        "first_payment": "First payment now",
        "terms_title": "Auto-pay terms",
        "terms_version": "Terms version: {version}",
        "consent_label": "I have read the terms and agree to my card being charged the dues "
        "every month",
        "consent_required": "To turn auto-pay on, tick your consent to the terms (the "
        "“Consent” field).",
        "subscribe_button": "Continue to pay {amount}",
        "subscribe_note": "You will go to the YooKassa page to enter your card.",
        "already_title": "Auto-pay is already on",
        "already_text": "You already have dues auto-pay.",
        "open_autopay": "Open “My auto-pay”",
        "autopay_title": "My auto-pay",
        "status": "Status",
        "status_pending_confirmation": "Waiting for the first payment",
        "status_active": "On",
        "status_past_due": "The last charge did not go through",
        "status_needs_payment_method": "A new card is needed",
        "status_paused": "Paused",
        "status_standby": "On standby",
        "status_canceled": "Off",
        "card": "Card",
        "card_value": "{brand} •••• {last4}, valid until {month:02d}/{year}",
        "no_card": "No card saved yet",
        "next_charge": "Next charge",
        "next_charge_value": "{date}: {amount}",
        "no_next_charge": "None scheduled",
        "processing": "A payment is being processed. Reload the page in a minute.",
        "continue_payment": "Continue to the payment",
        "none_title": "Auto-pay is off",
        "none_text": "You have no dues auto-pay. To turn it on, ask your union branch for a link.",
        "overdue_title": "Overdue",
        "overdue_text": "Months unpaid: {count} ({months}), {amount} in all.",
        "overdue_button": "Pay {amount} now",
        "overdue_note": "You pay on the YooKassa page; the card you pay with becomes your "
        "auto-pay card.",
        "change_card_title": "Change card",
        "change_card_text": "To save a new card, {amount} is charged to it and counted towards "
        "your next dues. The old card is replaced only when the payment with the new one "
        "goes through.",
        "change_card_button": "Save a new card",
        "cancel_title": "Turn auto-pay off",
        "cancel_text": "Charges stop at once. Dues already paid stay paid; later months will "
        "have to be paid another way (for example through your employer's payroll).",
        "cancel_link": "Turn auto-pay off…",
        "cancel_confirm_title": "Turn auto-pay off?",
        "cancel_confirm_button": "Yes, turn it off",
        "cancel_back": "No, go back",
        "canceled_notice": "Auto-pay is off.",
        "card_changed_notice": "The new card is saved.",
        "returned_notice": "You are back from the payment page.",
        "recent_title": "Recent payments",
        "recent_none": "No payments yet.",
        "col_date": "Date",
        "col_what": "For",
        "col_amount": "Amount",
        "col_status": "Status",
        "kind_initial": "Dues for {month} (first payment)",
        "kind_recurring": "Dues for {month}",
        "kind_card_change": "Saving a card",
        "kind_arrears": "Overdue: {months}",
        "charge_pending": "Processing",
        "charge_succeeded": "Paid",
        "charge_failed": "Did not go through",
        "link_invalid_title": "This link is not valid",
        "link_invalid_text": "The link is damaged or out of date. Ask your union branch for a "
        "new one.",
        "link_expired_title": "This link has expired",
        "link_expired_text": "Links to this page work for a limited time. Ask your union branch "
        "for a new one.",
        "link_retired_title": "This link is no longer in use",
        "link_retired_text": "Nothing can be done through this link any more. If you have a "
        "question, ask your union branch.",
        "form_stale_title": "The form is out of date",
        "form_stale_text": "Open the page from your link again and repeat.",
        "problem_title": "That did not work",
        "nothing_overdue": "Nothing is overdue.",
        "not_live": "Auto-pay is not on.",
        "gateway_wait": "The payment service did not answer in time. Reload the page in a minute.",
        "footer": "Card details are kept by the payment service YooKassa.",
    },
}
