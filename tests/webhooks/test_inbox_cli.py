"""`vznos webhooks inbox list|reprocess`: what an operator sees and re-drives."""

from __future__ import annotations

import json
import uuid

from sqlalchemy import select
from typer.testing import CliRunner

from vznos.cli import app as cli
from vznos.container import Container
from webhooks.inbound.models import InboxItem


def store(container: Container, event: str, object_id: str) -> uuid.UUID:
    body = {"type": "notification", "event": event, "object": {"id": object_id}}
    received = container.inbox.receive(json.dumps(body).encode())
    assert received.inbox_id is not None
    return received.inbox_id


def test_list_shows_items_and_filters_unprocessed(
    container: Container, cli_env: dict[str, str]
) -> None:
    done = store(container, "payout.succeeded", "po-1")
    waiting = store(container, "refund.succeeded", "rf-1")
    container.inbox.process(done)  # no worker runs here: `waiting` stays unprocessed

    runner = CliRunner()
    listed = runner.invoke(cli, ["webhooks", "inbox", "list"], env=cli_env)
    assert listed.exit_code == 0, listed.output
    header, *rows = listed.output.strip().splitlines()
    assert header.split("\t") == [
        "id",
        "received_at",
        "event",
        "object_id",
        "attempts",
        "processed_at",
        "last_error",
    ]
    by_id = {row.split("\t")[0]: row.split("\t") for row in rows}
    assert set(by_id) == {str(done), str(waiting)}
    assert by_id[str(done)][2:5] == ["payout.succeeded", "po-1", "1"]
    assert by_id[str(done)][5] != "-"
    assert by_id[str(waiting)][2:] == ["refund.succeeded", "rf-1", "0", "-", "-"]

    unprocessed = runner.invoke(cli, ["webhooks", "inbox", "list", "--unprocessed"], env=cli_env)
    assert unprocessed.exit_code == 0, unprocessed.output
    assert str(waiting) in unprocessed.output
    assert str(done) not in unprocessed.output

    limited = runner.invoke(cli, ["webhooks", "inbox", "list", "--limit", "1"], env=cli_env)
    assert limited.exit_code == 0, limited.output
    assert len(limited.output.strip().splitlines()) == 2


def test_reprocess_runs_one_item_now_and_is_idempotent(
    container: Container, cli_env: dict[str, str]
) -> None:
    waiting = store(container, "payout.succeeded", "po-2")
    runner = CliRunner()
    for attempts in (1, 2):
        result = runner.invoke(cli, ["webhooks", "inbox", "reprocess", str(waiting)], env=cli_env)
        assert result.exit_code == 0, result.output
        assert f"inbox item {waiting} processed" in result.output
        with container.sessions() as session:
            item = session.scalars(select(InboxItem)).one()
            assert item.processed_at is not None
            assert item.attempts == attempts
            first_processed_at = item.processed_at
    with container.sessions() as session:
        assert session.scalars(select(InboxItem)).one().processed_at == first_processed_at


def test_reprocess_of_an_unknown_item_says_so(
    container: Container, cli_env: dict[str, str]
) -> None:
    runner = CliRunner()
    unknown = uuid.uuid4()
    result = runner.invoke(cli, ["webhooks", "inbox", "reprocess", str(unknown)], env=cli_env)
    assert result.exit_code == 2
    assert f"no inbox item {unknown}" in result.output

    garbage = runner.invoke(cli, ["webhooks", "inbox", "reprocess", "nope"], env=cli_env)
    assert garbage.exit_code == 2
    assert "not an inbox item id" in garbage.output
