"""Outbound webhooks: signed CRM events fanned out from the outbox, delivered at least once."""
