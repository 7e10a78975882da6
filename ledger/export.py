"""A member's statement as a file a treasurer opens in Excel (CSV or XLSX), and the window of
local days a statement request covers.

Pure functions: a request's days to a `Window`, a `Statement` to bytes. Dates are the
organisation's local dates, because that is what a treasurer reconciles against; amounts stay
exact (kopecks → "350.00" or a Decimal), never floats.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum

from openpyxl import Workbook
from openpyxl.styles import Font

from core.errors import InvalidInput
from core.money import format_kopecks
from core.periods import format_period, zone
from ledger.reads import Statement, StatementLine
from ledger.states import Channel, EntryKind

# The longest window one statement may cover; longer asks are refused before they hit the
# database (an organisation's whole history fits comfortably).
MAX_STATEMENT_YEARS = 20
# Generated datetimes must stay representable: the day after `to` has to exist.
EARLIEST_DAY = date(1900, 1, 1)
LATEST_DAY = date(2999, 12, 31)

XLSX_MEDIA_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
CSV_MEDIA_TYPE = "text/csv"

# Russian headers only: the files are for Russian treasurers, and a bilingual header cell
# reads badly in Excel. The order of `_texts`, then the amount and the running balance.
HEADERS = ("Дата", "Месяц", "Операция", "Канал", "Описание", "Сумма", "Остаток")

KIND_LABELS: dict[str, str] = {
    EntryKind.ACCRUAL: "Начисление",
    EntryKind.PAYMENT: "Оплата",
    EntryKind.SPLIT: "Распределение",
    EntryKind.TRANSFER: "Перечисление",
    EntryKind.ADJUSTMENT: "Корректировка",
    EntryKind.REVERSAL: "Сторно",
}
CHANNEL_LABELS: dict[str, str] = {
    Channel.CARD: "Карта",
    Channel.PAYROLL: "Удержание из зарплаты",
    Channel.BANK_TRANSFER: "Банковский перевод",
    Channel.CASH: "Наличные",
}

_DAY_RE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)

# Spreadsheets run a cell that starts with one of these as a formula (OWASP "CSV injection").
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class StatementFormat(StrEnum):
    JSON = "json"
    CSV = "csv"
    XLSX = "xlsx"


MEDIA_TYPES = {
    StatementFormat.JSON: "application/json",
    StatementFormat.CSV: CSV_MEDIA_TYPE,
    StatementFormat.XLSX: XLSX_MEDIA_TYPE,
}


@dataclass(frozen=True)
class Window:
    """The local days a statement covers and the instants they map to: [start, end)."""

    first_day: date
    last_day: date
    start: datetime
    end: datetime


class InvalidStatementWindow(InvalidInput):
    type_slug = "invalid-statement-window"
    title = "Invalid statement window"


def statement_window(
    requested_from: str | None, requested_to: str | None, *, today: date, timezone: str
) -> Window:
    """The window a statement request asks for: inclusive local days `from`..`to`, read as
    `from` 00:00 local up to the day after `to` 00:00 local. `to` defaults to today and `from`
    to the first of January of `to`'s year (so by default: this year so far)."""
    asked_from = _day(requested_from, "from") if requested_from is not None else None
    last_day = _day(requested_to, "to") if requested_to is not None else today
    first_day = asked_from or last_day.replace(month=1, day=1)
    if first_day > last_day:
        raise InvalidStatementWindow(f"from ({first_day}) is after to ({last_day})", field="from")
    if last_day >= years_later(first_day, MAX_STATEMENT_YEARS):
        raise InvalidStatementWindow(
            f"a statement covers at most {MAX_STATEMENT_YEARS} years", field="to"
        )
    tz = zone(timezone)
    return Window(
        first_day=first_day,
        last_day=last_day,
        start=datetime.combine(first_day, time.min, tzinfo=tz),
        end=datetime.combine(last_day + timedelta(days=1), time.min, tzinfo=tz),
    )


def _day(text: str, field: str) -> date:
    # fromisoformat alone would also take "20260131" and week dates like "2026-W05-1".
    try:
        day = date.fromisoformat(text) if _DAY_RE.fullmatch(text) else None
    except ValueError:  # 2026-02-30
        day = None
    if day is None:
        raise InvalidStatementWindow(f"{field} must be a date such as 2026-01-31", field=field)
    if not EARLIEST_DAY <= day <= LATEST_DAY:
        raise InvalidStatementWindow(
            f"{field} must lie between {EARLIEST_DAY} and {LATEST_DAY}", field=field
        )
    return day


def years_later(day: date, years: int) -> date:
    try:
        return day.replace(year=day.year + years)
    except ValueError:  # 29 February in a year that has none
        return day.replace(year=day.year + years, day=28)


def statement_days(statement: Statement, timezone: str) -> tuple[date, date]:
    """The inclusive local days a statement covers (its end is the next day's midnight)."""
    tz = zone(timezone)
    return statement.start.astimezone(tz).date(), (
        statement.end.astimezone(tz).date() - timedelta(days=1)
    )


def statement_filename(
    external_id: str, statement: Statement, timezone: str, fmt: StatementFormat
) -> str:
    first_day, last_day = statement_days(statement, timezone)
    return f"statement-{external_id}-{first_day.isoformat()}-{last_day.isoformat()}.{fmt}"


def guard_formula(text: str) -> str:
    """Make a text cell inert in spreadsheets: a leading apostrophe stops it being a formula."""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def statement_csv(statement: Statement, timezone: str) -> bytes:
    """UTF-8 with a BOM and `;` between cells, which is what Excel with Russian settings opens
    without an import dialog. Amounts stay "350.00" / "-350.00" (a point, not a comma), and only
    text cells are guarded against formula injection: amounts are numbers, and their minus sign
    must survive."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=";", lineterminator="\r\n")
    writer.writerow(HEADERS)
    for line in statement.lines:
        day, month, kind, channel, description = _texts(line, timezone)
        writer.writerow(
            (
                day.isoformat(),
                month,
                guard_formula(kind),
                guard_formula(channel),
                guard_formula(description),
                format_kopecks(line.amount_kopecks),
                format_kopecks(line.balance_kopecks),
            )
        )
    return buffer.getvalue().encode("utf-8-sig")


def statement_xlsx(statement: Statement, external_id: str, timezone: str) -> bytes:
    """One sheet: a title row (member and period), the header row, then one row per line with
    dates as dates and amounts as numbers formatted `#,##0.00`."""
    first_day, last_day = statement_days(statement, timezone)
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None  # a new workbook always has one sheet
    sheet.title = "Выписка"
    sheet.append([f"Выписка по лицевому счёту {external_id} за {_ru(first_day)} — {_ru(last_day)}"])
    sheet["A1"].font = Font(bold=True)
    sheet.append(list(HEADERS))
    for cell in sheet[2]:
        cell.font = Font(bold=True)
    for row_number, line in enumerate(statement.lines, start=3):
        day, month, kind, channel, description = _texts(line, timezone)
        sheet.append([day, month, kind, channel, description])
        for column, text in ((2, month), (3, kind), (4, channel), (5, description)):
            # Written as a string, never as a formula; Excel's quote prefix keeps it text
            # even when someone edits the cell later.
            cell = sheet.cell(row=row_number, column=column)
            cell.value = text
            cell.data_type = "s"
            if text.startswith(_FORMULA_STARTS):
                cell.quotePrefix = True
        sheet.cell(row=row_number, column=1).number_format = "DD.MM.YYYY"
        for column, kopecks in ((6, line.amount_kopecks), (7, line.balance_kopecks)):
            cell = sheet.cell(row=row_number, column=column, value=_decimal(kopecks))
            cell.number_format = "#,##0.00"
    for letter, width in zip("ABCDEFG", (12, 10, 16, 22, 48, 14, 14), strict=True):
        sheet.column_dimensions[letter].width = width
    sheet.freeze_panes = "A3"
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _texts(line: StatementLine, timezone: str) -> tuple[date, str, str, str, str]:
    return (
        line.occurred_at.astimezone(zone(timezone)).date(),
        format_period(line.period_month) if line.period_month else "",
        KIND_LABELS.get(line.kind, line.kind),
        CHANNEL_LABELS.get(line.channel, line.channel) if line.channel else "",
        line.description,
    )


def _decimal(kopecks: int) -> Decimal:
    return Decimal(kopecks).scaleb(-2)


def _ru(day: date) -> str:
    return day.strftime("%d.%m.%Y")
