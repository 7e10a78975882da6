"""The chart of accounts, kinds of journal entries and the channels money arrives by."""

from __future__ import annotations

from enum import StrEnum


class AccountKind(StrEnum):
    # Owned by a member: what the member owes (positive) or has prepaid (negative).
    MEMBER_DUES_RECEIVABLE = "member_dues_receivable"
    # Owned by an organisation: its income, its cash by channel, and its debts between levels.
    DUES_INCOME = "dues_income"
    ACQUIRER_CLEARING = "acquirer_clearing"  # owed by the acquirer until the payout arrives
    BANK = "bank"  # the organisation's bank account
    PAYROLL_RECEIVABLE = "payroll_receivable"  # withheld by the employer, not yet remitted
    CASH_DESK = "cash_desk"
    ACQUIRER_FEES = "acquirer_fees"
    REFUNDS = "refunds"  # dues given back to members
    PAYABLE_UPWARD = "payable_upward"  # the share owed to a higher level (counterparty)
    RECEIVABLE_FROM_BELOW = "receivable_from_below"  # the share a lower level owes us
    SUSPENSE = "suspense"  # money that arrived but is not yet matched to a member


# Accounts a counterparty organisation is part of the key for.
COUNTERPARTY_KINDS = frozenset({AccountKind.PAYABLE_UPWARD, AccountKind.RECEIVABLE_FROM_BELOW})


class OwnerType(StrEnum):
    MEMBER = "member"
    ORGANIZATION = "organization"


class EntryKind(StrEnum):
    ACCRUAL = "accrual"  # a month of dues became owed
    PAYMENT = "payment"  # a member paid, by any channel
    SPLIT = "split"  # the received dues shared with the higher levels
    TRANSFER = "transfer"  # money actually sent up to a higher level
    ADJUSTMENT = "adjustment"  # a treasurer's manual correction
    REVERSAL = "reversal"  # undoes an earlier entry, pointing at it


class Channel(StrEnum):
    CARD = "card"
    PAYROLL = "payroll"
    BANK_TRANSFER = "bank_transfer"
    CASH = "cash"


# Where the money of each channel sits in the organisation's books when it arrives.
CHANNEL_ACCOUNT = {
    Channel.CARD: AccountKind.ACQUIRER_CLEARING,
    Channel.PAYROLL: AccountKind.PAYROLL_RECEIVABLE,
    Channel.BANK_TRANSFER: AccountKind.BANK,
    Channel.CASH: AccountKind.CASH_DESK,
}


class ClosedPeriodPolicy(StrEnum):
    REFUSE = "refuse"  # a treasurer's manual entry: say no, name the open month
    REBOOK = "rebook"  # a fact from outside (a late card payment): book it in the open month
