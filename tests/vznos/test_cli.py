"""The operator commands: clear messages, exit codes, nothing half-done."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from vznos.cli import app as cli
from vznos.container import Container


def test_org_and_apikey_commands(container: Container, cli_env: dict[str, str]) -> None:
    runner = CliRunner()
    made = runner.invoke(
        cli, ["org", "create", "--code", "fed", "--name", "Федерация"], env=cli_env
    )
    assert made.exit_code == 0, made.output
    child = runner.invoke(
        cli,
        [
            "org",
            "create",
            "--code",
            "terr",
            "--name",
            "Терком",
            "--parent",
            "fed",
            "--timezone",
            "Asia/Yekaterinburg",
        ],
        env=cli_env,
    )
    assert child.exit_code == 0, child.output

    again = runner.invoke(cli, ["org", "create", "--code", "fed", "--name", "X"], env=cli_env)
    assert again.exit_code == 2
    assert "already exists" in again.output
    orphan = runner.invoke(
        cli, ["org", "create", "--code", "x1", "--name", "X", "--parent", "nope"], env=cli_env
    )
    assert orphan.exit_code == 2
    assert "parent_code" in orphan.output
    bad_zone = runner.invoke(
        cli,
        ["org", "create", "--code", "x2", "--name", "X", "--timezone", "Mars/Base"],
        env=cli_env,
    )
    assert bad_zone.exit_code == 2
    assert "time zone" in bad_zone.output

    # No scope named, no key: least privilege is the default, `admin` is asked for by name.
    unscoped = runner.invoke(cli, ["apikey", "create", "--org", "terr"], env=cli_env)
    assert unscoped.exit_code == 2
    assert "--scope" in unscoped.output
    key = runner.invoke(
        cli, ["apikey", "create", "--org", "terr", "--scope", "members:write"], env=cli_env
    )
    assert key.exit_code == 0, key.output
    plaintext = key.output.strip().splitlines()[-1]
    assert plaintext.startswith("vz_")
    principal = container.access.authenticate(plaintext)
    assert len(principal.scope) == 1
    assert principal.scopes == {"members:write"}

    unknown = runner.invoke(
        cli, ["apikey", "create", "--org", "nope", "--scope", "admin"], env=cli_env
    )
    assert unknown.exit_code == 2


@pytest.mark.parametrize("period", ["2026-13", "2026-1", "december"])
def test_billing_run_refuses_a_bad_period(period: str, cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["billing", "run", "--period", period], env=cli_env)
    assert result.exit_code == 2
    assert "period must look like 2026-12" in result.output


def test_worker_needs_a_broker(cli_env: dict[str, str]) -> None:
    result = CliRunner().invoke(cli, ["worker"], env=cli_env)
    assert result.exit_code == 2
    assert "VZNOS_BROKER_URL" in result.output
