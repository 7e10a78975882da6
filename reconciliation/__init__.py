"""Reconciliation of acquirer payouts, bank statements and employer remittance registers.

Not built yet: it arrives with the reconciliation issue (see ROADMAP). Nothing here pretends
to work.
"""
