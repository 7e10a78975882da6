"""Standby auto-pay: a card saved with no payment that pays only the months payroll missed."""
