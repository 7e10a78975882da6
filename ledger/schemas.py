"""API shapes of the member's account and statement, and of an organisation's month."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

from core.money import MoneyOut
from core.periods import format_period
from ledger.reads import MemberAccount, OrganizationMonth, Statement, StatementLine
from ledger.states import Channel


class AccountLineOut(BaseModel):
    occurred_at: datetime
    period: Annotated[str | None, Field(examples=["2026-12"])]
    kind: Annotated[str, Field(description="accrual (dues owed for a month) or payment")]
    channel: Annotated[str | None, Field(description="How a payment arrived, e.g. card")]
    description: str
    amount: Annotated[MoneyOut, Field(description="Positive: owed; negative: paid")]
    balance: Annotated[MoneyOut, Field(description="Running balance after this line")]

    @classmethod
    def of(cls, line: StatementLine, currency: str) -> AccountLineOut:
        return cls(
            occurred_at=line.occurred_at,
            period=format_period(line.period_month) if line.period_month else None,
            kind=line.kind,
            channel=line.channel,
            description=line.description,
            amount=MoneyOut.of(line.amount_kopecks, currency),
            balance=MoneyOut.of(line.balance_kopecks, currency),
        )


class ArrearsOut(BaseModel):
    months: Annotated[int, Field(description="Months not fully paid")]
    amount: MoneyOut
    oldest_unpaid_period: Annotated[str | None, Field(examples=["2026-09"])]


class AccountOut(BaseModel):
    member_external_id: str
    balance: Annotated[
        MoneyOut, Field(description="Positive: the member owes this; negative: credit")
    ]
    arrears: ArrearsOut
    lines: Annotated[list[AccountLineOut], Field(description="The latest lines, oldest first")]

    @classmethod
    def of(cls, external_id: str, account: MemberAccount) -> AccountOut:
        return cls(
            member_external_id=external_id,
            balance=MoneyOut.of(account.balance_kopecks, account.currency),
            arrears=ArrearsOut(
                months=account.arrears.months,
                amount=MoneyOut.of(account.arrears.kopecks, account.currency),
                oldest_unpaid_period=(
                    format_period(account.arrears.oldest_unpaid)
                    if account.arrears.oldest_unpaid
                    else None
                ),
            ),
            lines=[AccountLineOut.of(line, account.currency) for line in account.lines],
        )


class StatementOut(BaseModel):
    # `from` is a Python keyword: the attribute is `from_`, the JSON key is `from`.
    model_config = ConfigDict(populate_by_name=True)

    member_external_id: str
    from_: Annotated[
        date, Field(alias="from", description="First day covered, in the organisation's zone")
    ]
    to: Annotated[date, Field(description="Last day covered (inclusive)")]
    currency: Annotated[str, Field(examples=["RUB"])]
    opening_balance: Annotated[
        MoneyOut, Field(description="Owed before the first day; negative: credit")
    ]
    closing_balance: Annotated[MoneyOut, Field(description="Owed at the end of the last day")]
    lines: Annotated[list[AccountLineOut], Field(description="Every line in the window, in order")]

    @classmethod
    def of(
        cls, external_id: str, first_day: date, last_day: date, statement: Statement
    ) -> StatementOut:
        return cls(
            member_external_id=external_id,
            from_=first_day,
            to=last_day,
            currency=statement.currency,
            opening_balance=MoneyOut.of(statement.opening_balance_kopecks, statement.currency),
            closing_balance=MoneyOut.of(statement.closing_balance_kopecks, statement.currency),
            lines=[AccountLineOut.of(line, statement.currency) for line in statement.lines],
        )


class OrganizationSummaryOut(BaseModel):
    """A treasurer's month, by the month entries were booked in."""

    organization_id: uuid.UUID
    period: Annotated[str, Field(examples=["2026-11"])]
    accrued: Annotated[MoneyOut, Field(description="Dues that became owed by members")]
    collected: Annotated[MoneyOut, Field(description="Paid by members, all channels")]
    collected_by_channel: Annotated[
        dict[str, MoneyOut],
        Field(description="Every channel (card, payroll, bank_transfer, cash), zero included"),
    ]
    fees: Annotated[MoneyOut, Field(description="Kept by the acquirer")]
    shared_upward: Annotated[
        MoneyOut, Field(description="The higher levels' part of what was collected")
    ]
    kept: Annotated[MoneyOut, Field(description="Collected minus shared upward")]
    received_from_below: Annotated[
        MoneyOut, Field(description="This organisation's part of what lower levels collected")
    ]
    owed_upward: Annotated[
        MoneyOut, Field(description="Still owed to the higher levels at the month's end")
    ]
    transferred_upward: Annotated[MoneyOut, Field(description="Actually sent up this month")]
    members_in_arrears: Annotated[
        int, Field(description="Members with a month up to this one not fully paid")
    ]
    arrears: Annotated[MoneyOut, Field(description="What those members owe for those months")]

    @classmethod
    def of(cls, month: OrganizationMonth, currency: str = "RUB") -> OrganizationSummaryOut:
        def money(kopecks: int) -> MoneyOut:
            # PostgreSQL's sum() of bigint is numeric, so some of these arrive as whole
            # Decimals; int() is exact for them and keeps format_kopecks working.
            return MoneyOut.of(int(kopecks), currency)

        # Every channel appears, so a client reads a zero rather than a missing key.
        by_channel = dict.fromkeys(map(str, Channel), 0) | month.collected_by_channel
        return cls(
            organization_id=month.organization_id,
            period=format_period(month.period_month),
            accrued=money(month.accrued_kopecks),
            collected=money(month.collected_kopecks),
            collected_by_channel={
                channel: money(kopecks) for channel, kopecks in by_channel.items()
            },
            fees=money(month.fees_kopecks),
            shared_upward=money(month.shared_upward_kopecks),
            kept=money(month.kept_kopecks),
            received_from_below=money(month.received_from_below_kopecks),
            owed_upward=money(month.owed_upward_kopecks),
            transferred_upward=money(month.transferred_upward_kopecks),
            members_in_arrears=month.members_in_arrears,
            arrears=money(month.arrears_kopecks),
        )
