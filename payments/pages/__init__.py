"""Member self-service pages: signed links that expire (no login), subscribe with consent, and
"My auto-pay" (status, card, next charge, payments; cancel, change card, pay what is overdue)."""
