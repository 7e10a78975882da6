"""A member's statement over a window of local days: balances either side, the running balance,
and the same lines as JSON, CSV for Russian Excel and XLSX."""

from __future__ import annotations

import csv
import io
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest
from openpyxl import load_workbook

from core.db import transaction
from ledger.service import MemberPayment, post_dues_accrual, post_member_payment
from ledger.states import Channel
from members.schemas import MemberUpsert
from members.service import Principal
from vznos.container import Container

MOSCOW = ZoneInfo("Europe/Moscow")
RECORDED = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
KINDS = {"accrual": "Начисление", "payment": "Оплата"}
CHANNELS = {"card": "Карта", "cash": "Наличные", None: ""}
WINDOW = {"from": "2026-02-01", "to": "2026-03-31"}


def msk(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=MOSCOW)


def add_member(container: Container, principal: Principal, external_id: str) -> uuid.UUID:
    member, _ = container.members.upsert(
        principal, external_id, MemberUpsert(organization_code="ppo-1", full_name="Анна Смирнова")
    )
    return member.id


def accrue(container: Container, member: uuid.UUID, org: uuid.UUID, month: date) -> None:
    with transaction(container.sessions) as session:
        post_dues_accrual(
            session,
            member_id=member,
            organization_id=org,
            period_month=month,
            amount_kopecks=35000,
            occurred_at=msk(month.year, month.month, 1),  # local midnight: the zone matters
            recorded_at=RECORDED,
            source_type="test",
            source_id=f"accrual-{month}",
        )


def pay(
    container: Container,
    member: uuid.UUID,
    org: uuid.UUID,
    kopecks: int,
    at: datetime,
    *,
    channel: Channel = Channel.CASH,
    description: str = "Cash at the union office",
) -> None:
    with transaction(container.sessions) as session:
        post_member_payment(
            session,
            MemberPayment(
                idempotency_key=f"pay:{member}:{at.isoformat()}",
                member_id=member,
                organization_id=org,
                channel=channel,
                amount_kopecks=kopecks,
                occurred_at=at,
                source_type="test",
                source_id=at.isoformat(),
                description=description,
            ),
            recorded_at=RECORDED,
        )


@pytest.fixture
def history(container: Container, principal: Principal) -> None:
    """Lines before, inside and after February–March 2026 (Moscow), two of them a few minutes
    from the window's edges, where reading the days in UTC would put them on the wrong side."""
    member = add_member(container, principal, "m-1")
    org = principal.organization_id
    accrue(container, member, org, date(2026, 1, 1))  # before
    pay(container, member, org, 30000, msk(2026, 1, 20, 12), channel=Channel.CARD)  # before
    accrue(container, member, org, date(2026, 2, 1))  # inside: 31 Jan 21:00 UTC
    pay(container, member, org, 20000, msk(2026, 2, 10, 15))  # inside
    accrue(container, member, org, date(2026, 3, 1))  # inside
    pay(container, member, org, 10000, msk(2026, 3, 31, 22, 30))  # inside: 19:30 UTC
    pay(container, member, org, 5000, msk(2026, 4, 1, 0, 30))  # after: still 31 March in UTC
    accrue(container, member, org, date(2026, 4, 1))  # after


def lines_of(body: dict[str, object]) -> list[dict[str, object]]:
    lines = body["lines"]
    assert isinstance(lines, list)
    return lines


def value(money: object) -> str:
    assert isinstance(money, dict)
    assert money["currency"] == "RUB"
    text = money["value"]
    assert isinstance(text, str)
    return text


@pytest.mark.usefixtures("history")
def test_the_statement_has_the_balances_either_side_and_a_running_balance(
    client: httpx.Client,
) -> None:
    response = client.get("/v1/members/m-1/statement", params=WINDOW)

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["member_external_id"] == "m-1"
    assert (body["from"], body["to"], body["currency"]) == ("2026-02-01", "2026-03-31", "RUB")
    assert value(body["opening_balance"]) == "50.00"  # 350 owed for January, 300 paid
    lines = lines_of(body)
    assert [
        (
            line["period"],
            line["kind"],
            line["channel"],
            value(line["amount"]),
            value(line["balance"]),
        )
        for line in lines
    ] == [
        ("2026-02", "accrual", None, "350.00", "400.00"),
        (None, "payment", "cash", "-200.00", "200.00"),
        ("2026-03", "accrual", None, "350.00", "550.00"),
        (None, "payment", "cash", "-100.00", "450.00"),
    ]
    assert datetime.fromisoformat(str(lines[0]["occurred_at"])) == msk(2026, 2, 1)
    assert datetime.fromisoformat(str(lines[-1]["occurred_at"])) == msk(2026, 3, 31, 22, 30)
    assert value(body["closing_balance"]) == "450.00"


@pytest.mark.usefixtures("history")
def test_the_statement_defaults_to_this_year_so_far(client: httpx.Client) -> None:
    # The test clock stands at 23 November 2026.
    body = client.get("/v1/members/m-1/statement").json()

    assert (body["from"], body["to"]) == ("2026-01-01", "2026-11-23")
    assert value(body["opening_balance"]) == "0.00"
    assert len(lines_of(body)) == 8
    assert value(body["closing_balance"]) == "750.00"  # 4 × 350 − 300 − 200 − 100 − 50


@pytest.mark.usefixtures("history")
def test_a_window_with_no_lines_carries_the_balance_through(client: httpx.Client) -> None:
    body = client.get(
        "/v1/members/m-1/statement", params={"from": "2026-05-01", "to": "2026-05-31"}
    ).json()

    assert lines_of(body) == []
    assert value(body["opening_balance"]) == value(body["closing_balance"]) == "750.00"


def csv_rows(response: httpx.Response) -> list[list[str]]:
    assert response.content.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
    return list(csv.reader(io.StringIO(response.content.decode("utf-8-sig")), delimiter=";"))


def expected_rows(json_lines: list[dict[str, object]]) -> list[list[str]]:
    return [
        [
            datetime.fromisoformat(str(line["occurred_at"])).astimezone(MOSCOW).date().isoformat(),
            str(line["period"] or ""),
            KINDS[str(line["kind"])],
            CHANNELS[line["channel"]],  # type: ignore[index]
            str(line["description"]),
            value(line["amount"]),
            value(line["balance"]),
        ]
        for line in json_lines
    ]


HEADERS = ["Дата", "Месяц", "Операция", "Канал", "Описание", "Сумма", "Остаток"]


@pytest.mark.usefixtures("history")
def test_the_csv_has_the_json_lines_for_russian_excel(client: httpx.Client) -> None:
    json_lines = lines_of(client.get("/v1/members/m-1/statement", params=WINDOW).json())

    response = client.get("/v1/members/m-1/statement", params={**WINDOW, "format": "csv"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"] == (
        'attachment; filename="statement-m-1-2026-02-01-2026-03-31.csv"'
    )
    rows = csv_rows(response)
    assert rows[0] == HEADERS
    assert rows[1:] == expected_rows(json_lines)
    assert rows[1][0] == "2026-02-01"  # the local date, not 31 January in UTC
    assert rows[-1][:4] == ["2026-03-31", "", "Оплата", "Наличные"]


@pytest.mark.usefixtures("history")
def test_the_xlsx_has_the_same_rows_with_dates_and_numbers(client: httpx.Client) -> None:
    json_lines = lines_of(client.get("/v1/members/m-1/statement", params=WINDOW).json())

    response = client.get("/v1/members/m-1/statement", params={**WINDOW, "format": "xlsx"})

    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == XLSX
    assert response.headers["content-disposition"] == (
        'attachment; filename="statement-m-1-2026-02-01-2026-03-31.xlsx"'
    )
    sheet = load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    title = str(sheet["A1"].value)
    assert "m-1" in title and "01.02.2026" in title and "31.03.2026" in title
    assert [cell.value for cell in sheet[2]] == HEADERS
    data = list(sheet.iter_rows(min_row=3))
    assert len(data) == len(json_lines)
    read_back = []
    for row in data:
        day, month, kind, channel, description, amount, balance = row
        assert isinstance(day.value, datetime)  # a real date cell, shown as a date
        assert day.is_date
        for money in (amount, balance):
            assert isinstance(money.value, int | float)
            assert money.number_format == "#,##0.00"
        read_back.append(
            [
                day.value.date().isoformat(),
                month.value or "",
                kind.value,
                channel.value or "",
                description.value,
                f"{Decimal(str(amount.value)):.2f}",
                f"{Decimal(str(balance.value)):.2f}",
            ]
        )
    assert read_back == expected_rows(json_lines)


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize(
    ("params", "accept", "media_type"),
    [
        ({}, "text/csv", "text/csv"),
        ({}, XLSX, XLSX),
        ({}, "application/json;q=0.5, text/csv", "text/csv"),
        ({}, "text/csv;q=0.2, application/json", "application/json"),
        ({}, "text/html", "application/json"),
        ({"format": "json"}, "text/csv", "application/json"),  # format wins over Accept
        ({"format": "csv"}, XLSX, "text/csv"),
    ],
)
def test_the_format_comes_from_the_query_or_the_accept_header(
    client: httpx.Client, params: dict[str, str], accept: str, media_type: str
) -> None:
    response = client.get(
        "/v1/members/m-1/statement", params={**WINDOW, **params}, headers={"Accept": accept}
    )

    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith(media_type)


def test_text_cells_cannot_become_formulas(
    container: Container, principal: Principal, client: httpx.Client
) -> None:
    member = add_member(container, principal, "m-2")
    org = principal.organization_id
    hostile = ['=HYPERLINK("http://evil.example","click")', "+1+1", "-2+3", "@SUM(A1)"]
    for day, description in enumerate(hostile, start=1):
        pay(container, member, org, 35000, msk(2026, 3, day, 12), description=description)
    params = {"from": "2026-03-01", "to": "2026-03-31"}

    rows = csv_rows(client.get("/v1/members/m-2/statement", params={**params, "format": "csv"}))

    assert [row[4] for row in rows[1:]] == ["'" + text for text in hostile]
    # Amounts are numbers: their minus sign stays and they get no apostrophe.
    assert [row[5] for row in rows[1:]] == ["-350.00"] * 4
    assert [row[6] for row in rows[1:]] == ["-350.00", "-700.00", "-1050.00", "-1400.00"]

    xlsx = client.get("/v1/members/m-2/statement", params={**params, "format": "xlsx"})
    sheet = load_workbook(io.BytesIO(xlsx.content)).active
    assert sheet is not None
    cells = [row[4] for row in sheet.iter_rows(min_row=3)]
    # Stored as text (never a formula) and flagged so that editing it keeps it text.
    assert [cell.value for cell in cells] == hostile
    assert all(cell.data_type == "s" and cell.quotePrefix for cell in cells)


@pytest.mark.usefixtures("history")
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"from": "2026-03-01", "to": "2026-02-28"}, "from"),
        ({"from": "2026-02-30", "to": "2026-03-31"}, "from"),
        ({"from": "2026/02/01"}, "from"),
        ({"from": "2026-W05-1"}, "from"),
        ({"to": "31.03.2026"}, "to"),
        ({"to": "2026-13-01"}, "to"),
        ({"from": "0000-01-01", "to": "0001-01-01"}, "from"),
        ({"from": "2006-01-01", "to": "2026-01-01"}, "to"),  # 20 years and a day
        ({"to": "9999-12-31"}, "to"),
        ({"format": "pdf"}, "format"),
    ],
)
def test_bad_statement_requests_name_the_field(
    client: httpx.Client, params: dict[str, str], field: str
) -> None:
    response = client.get("/v1/members/m-1/statement", params=params)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["field"] == field


@pytest.mark.usefixtures("history")
def test_twenty_years_exactly_is_allowed(client: httpx.Client) -> None:
    response = client.get(
        "/v1/members/m-1/statement", params={"from": "2006-01-01", "to": "2025-12-31"}
    )

    assert response.status_code == 200, response.text
    assert value(response.json()["closing_balance"]) == "0.00"


def test_an_unknown_member_has_no_statement(client: httpx.Client) -> None:
    response = client.get("/v1/members/nobody/statement", params={"format": "csv"})

    assert response.status_code == 404
    assert response.json()["field"] == "external_id"
