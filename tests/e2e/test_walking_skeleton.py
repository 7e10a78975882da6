"""The whole money loop over HTTP: API → emulator checkout → webhook → worker → ledger, then a
second month through the `vznos billing run` command, then cancel."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable

import httpx
import pytest
from typer.testing import CliRunner

from core.clock import Clock, SystemClock
from core.periods import billing_date, format_period, next_period, period_of
from core.serving import BackgroundServer
from payments.gateway.emulator import EmulatorServer
from payments.gateway.emulator.testing import complete_checkout
from tests.conftest import Workers
from vznos.cli import app as cli

pytestmark = pytest.mark.e2e


@pytest.fixture
def clock() -> Clock:
    # The billing command runs on the system clock, so this test lives in the present too.
    return SystemClock()


def billing_command(period: str, env: dict[str, str]) -> str:
    result = CliRunner().invoke(cli, ["billing", "run", "--period", period], env=env)
    assert result.exit_code == 0, result.output
    return result.output


def test_member_subscribes_pays_is_charged_monthly_and_cancels(
    client: httpx.Client,
    database_url: str,
    api_server: BackgroundServer,
    emulator: EmulatorServer,
    workers: Workers,
    cli_env: dict[str, str],
    subscription_body: Callable[..., dict[str, object]],
    clock: Clock,
) -> None:
    this_month = period_of(clock.now(), "Europe/Moscow")
    month_2, month_3 = next_period(this_month), next_period(next_period(this_month))
    p1, p2, p3 = (format_period(m) for m in (this_month, month_2, month_3))
    member = client.put(
        "/v1/members/m-1001",
        json={
            "organization_code": "ppo-1",
            "full_name": "Иван Петров",
            "email": "ivan@example.org",
            "phone": "+79161234567",
        },
    )
    assert member.status_code == 201, member.text

    started = client.post("/v1/members/m-1001/subscriptions", json=subscription_body())
    assert started.status_code == 201, started.text
    subscription = started.json()
    assert subscription["status"] == "pending_confirmation"
    assert subscription["amount"] == {"value": "350.00", "currency": "RUB"}
    confirmation_url = subscription["confirmation_url"]
    assert confirmation_url.startswith(emulator.url + "/checkout/")

    # The first payment at the gateway carries our ids (never the member's name) in metadata,
    # and the attempt's own id as its Idempotence-Key.
    [first] = emulator.state.payments()
    assert first["status"] == "pending"
    assert first["metadata"]["vznos_subscription_id"] == subscription["id"]
    assert first["idempotence_key"] == first["metadata"]["vznos_attempt_id"]
    assert "Петров" not in str(first["object"])

    # The member pays on the acquirer's page and is sent back to the CRM.
    paid = complete_checkout(confirmation_url)
    assert paid.status_code == 303
    assert paid.headers["location"] == "https://crm.example.org/dues/thanks"
    emulator.state.flush_notifications()
    workers.drain()

    active = client.get(f"/v1/subscriptions/{subscription['id']}").json()
    assert active["status"] == "active"
    assert active["card"]["last4"] == "4444"
    assert active["next_charge_date"] == billing_date(month_2, 5).isoformat()
    assert active["last_charge"]["status"] == "succeeded"

    account = client.get("/v1/members/m-1001/account").json()
    assert [
        (line["kind"], line["period"], line["amount"]["value"]) for line in account["lines"]
    ] == [
        ("accrual", p1, "350.00"),
        ("payment", p1, "-350.00"),
    ]
    assert account["balance"]["value"] == "0.00"

    # The second month: the operator command charges the saved card without the member.
    out = billing_command(p2, cli_env)
    assert "1 charges created" in out
    assert "0 charges created" in billing_command(p2, cli_env)
    emulator.state.flush_notifications()
    workers.drain()

    succeeded = [p for p in emulator.state.payments() if p["status"] == "succeeded"]
    assert len(succeeded) == 2
    assert succeeded[1]["payment_method_id"] == succeeded[0]["payment_method_id"]
    account = client.get("/v1/members/m-1001/account").json()
    assert [(line["kind"], line["period"]) for line in account["lines"]] == [
        ("accrual", p1),
        ("payment", p1),
        ("accrual", p2),
        ("payment", p2),
    ]
    assert account["balance"]["value"] == "0.00"
    after_second = client.get(f"/v1/subscriptions/{subscription['id']}").json()
    assert after_second["last_charge"]["period"] == p2
    assert after_second["next_charge_date"] == billing_date(month_3, 5).isoformat()

    canceled = client.post(f"/v1/subscriptions/{subscription['id']}/cancel")
    assert canceled.status_code == 200
    assert canceled.json()["status"] == "canceled"
    assert client.post(f"/v1/subscriptions/{subscription['id']}/cancel").json()["status"] == (
        "canceled"
    )
    assert "0 charges created" in billing_command(p3, cli_env)
    assert len(emulator.state.payments()) == 2

    # T27: a backup of the database after all that holds none of the member's personal data.
    if shutil.which("pg_dump"):
        dump = subprocess.run(
            [
                "pg_dump",
                "--data-only",
                database_url.replace("postgresql+psycopg://", "postgresql://"),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        assert "m-1001" in dump  # the dump is real…
        for personal in ("Иван Петров", "Петров", "ivan@example.org", "+79161234567", "9161234567"):
            assert personal not in dump  # …and holds no personal data
