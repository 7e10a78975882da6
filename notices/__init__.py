"""Overdue and card-expiry notices by email and SMS. Not built yet (see ROADMAP)."""
