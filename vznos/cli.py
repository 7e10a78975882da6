"""`vznos` — the command line. `python -m vznos …` works the same."""

from __future__ import annotations

import sys
import uuid
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.logging import configure_logging
from core.periods import InvalidPeriod, parse_period
from core.settings import Settings
from vznos.runtime import EMULATOR_SECRET_KEY, EMULATOR_SHOP_ID

if TYPE_CHECKING:
    from vznos.keys import KeyStatus

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Vznos: union dues by card.")
org_app = typer.Typer(no_args_is_help=True, help="Organisations of the union tree.")
apikey_app = typer.Typer(no_args_is_help=True, help="API keys for the CRM.")
billing_app = typer.Typer(no_args_is_help=True, help="Monthly billing.")
ledger_app = typer.Typer(no_args_is_help=True, help="The books: accrual, checks, closes.")
app.add_typer(org_app, name="org")
app.add_typer(apikey_app, name="apikey")
treasurer_app = typer.Typer(no_args_is_help=True, help="Treasurer accounts (people).")
app.add_typer(treasurer_app, name="treasurer")
app.add_typer(billing_app, name="billing")
app.add_typer(ledger_app, name="ledger")
webhooks_app = typer.Typer(no_args_is_help=True, help="Gateway notifications.")
inbox_app = typer.Typer(no_args_is_help=True, help="The inbox of notifications received.")
webhooks_app.add_typer(inbox_app, name="inbox")
app.add_typer(webhooks_app, name="webhooks")
keys_app = typer.Typer(no_args_is_help=True, help="Master keys: generate, rotate, status.")
app.add_typer(keys_app, name="keys")
members_app = typer.Typer(no_args_is_help=True, help="Members' personal data.")
app.add_typer(members_app, name="members")

Host = Annotated[str | None, typer.Option(help="Interface to listen on")]
Port = Annotated[int | None, typer.Option(help="Port to listen on")]


def _settings(**overrides: object) -> Settings:
    settings = Settings()
    updates = {k: v for k, v in overrides.items() if v is not None}
    settings = settings.model_copy(update=updates) if updates else settings
    configure_logging(settings.log_format, settings.log_level)
    return settings


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code=2)


@app.command()
def run(host: Host = None, port: Port = None) -> None:
    """Everything in one process on embedded defaults: API, workers, scheduler, and (without
    shop credentials) the YooKassa emulator."""
    from vznos.processes import run_all

    run_all(_settings(host=host, port=port))


@app.command()
def serve(host: Host = None, port: Port = None) -> None:
    """The HTTP API only (production: one of several processes)."""
    from vznos.processes import serve_api

    serve_api(_settings(host=host, port=port))


@app.command()
def worker(
    threads: Annotated[int | None, typer.Option(help="Worker threads")] = None,
) -> None:
    """Background workers on the broker named by VZNOS_BROKER_URL."""
    from vznos.processes import run_worker

    settings = _settings(worker_threads=threads)
    if settings.broker_url is None:
        _fail(
            "`vznos worker` needs VZNOS_BROKER_URL (amqp://… or redis://…); use `vznos run` "
            "for everything in one process"
        )
    run_worker(settings)


@app.command()
def scheduler() -> None:
    """Bill what is due and re-drive what is stuck, every VZNOS_SCHEDULER_INTERVAL_SECONDS."""
    from vznos.processes import run_scheduler

    run_scheduler(_settings())


@app.command()
def emulator(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8001,
    shop_id: Annotated[str, typer.Option(help="Shop id for basic auth")] = EMULATOR_SHOP_ID,
    secret_key: Annotated[
        str, typer.Option(help="Secret key for basic auth")
    ] = EMULATOR_SECRET_KEY,
    notify_url: Annotated[str | None, typer.Option(help="Where to POST notifications")] = None,
    state_file: Annotated[Path | None, typer.Option(help="Keep state in this JSON file")] = None,
) -> None:
    """The YooKassa API v3 emulator (a test double, like stripe-mock)."""
    from payments.gateway.emulator.server import serve as serve_emulator

    _settings()
    typer.echo(
        f"YooKassa emulator on http://{host}:{port}/v3  shop id {shop_id}  secret key {secret_key}"
    )
    serve_emulator(host, port, {shop_id: secret_key}, notify_url, state_file)


@app.command()
def migrate() -> None:
    """Apply database migrations up to the latest."""
    from vznos.keys import build_keyring
    from vznos.migrate import upgrade
    from vznos.runtime import resolve_database_url

    settings = _settings()
    url, embedded = resolve_database_url(settings)
    try:
        upgrade(url, keyring=build_keyring(settings))
        typer.echo("migrations applied")
    finally:
        if embedded:
            embedded.stop()


@org_app.command("create")
def org_create(
    code: Annotated[str, typer.Option(help="Short unique code, e.g. ppo-zavod-1")],
    name: Annotated[str, typer.Option(help="Full name")],
    parent: Annotated[str | None, typer.Option(help="Parent organisation code")] = None,
    timezone: Annotated[str, typer.Option(help="IANA time zone")] = "Europe/Moscow",
) -> None:
    """Create an organisation (a root when no parent is given)."""
    from pydantic import ValidationError

    from core.errors import DomainError
    from members.schemas import OrganizationCreate
    from vznos.processes import operator_container

    try:
        data = OrganizationCreate(code=code, name=name, parent_code=parent, timezone=timezone)
    except ValidationError as exc:
        first = exc.errors()[0]
        _fail(f"{'.'.join(str(p) for p in first['loc'])}: {first['msg']}")
        return
    with operator_container(_settings()) as container:
        try:
            org = container.organizations.create(data, None)
        except DomainError as exc:
            _fail(f"{exc.field or ''}: {exc.detail}")
            return
    typer.echo(f"organization {org.code} created: {org.id}")


ScopeOption = Annotated[
    list[str] | None,
    typer.Option(
        "--scope",
        help="A scope (repeat for several): members:write, subscriptions:write, payments:read, "
        "refunds:write, reconciliation:write, webhooks:manage, admin. Required for a key: "
        "a key gets only the scopes named.",
    ),
]


def _scopes(values: list[str] | None, default: list[str] | None = None) -> list[str]:
    from members.scopes import Scope

    if not values:
        if default is None:
            _fail("name the key's scopes: --scope S (repeat for several; `admin` for all)")
        return sorted(default or [])
    known = {scope.value for scope in Scope}
    for value in values:
        if value not in known:
            _fail(f"unknown scope {value!r}; known: {', '.join(sorted(known))}")
    return sorted(set(values))


def _key_id(value: str) -> uuid.UUID:
    try:
        return uuid.UUID(value)
    except ValueError:
        _fail(f"{value!r} is not an API key id (a UUID)")
        raise


@apikey_app.command("create")
def apikey_create(
    org: Annotated[str, typer.Option(help="Organisation code the key acts for")],
    name: Annotated[str, typer.Option(help="What the key is for")] = "CRM",
    scope: ScopeOption = None,
    expires_in_days: Annotated[
        float | None, typer.Option(min=0.001, help="Expire after this many days (default: never)")
    ] = None,
) -> None:
    """Create an API key and print it once; it is stored only as a keyed hash."""
    from datetime import timedelta

    from core.errors import DomainError
    from vznos.processes import operator_container

    scopes = _scopes(scope)
    with operator_container(_settings()) as container:
        expires_at = (
            container.clock.now() + timedelta(days=expires_in_days) if expires_in_days else None
        )
        try:
            key_id, plaintext = container.access.create_api_key(
                org, name, scopes, expires_at=expires_at
            )
        except DomainError as exc:
            _fail(exc.detail)
            return
    typer.echo(f"API key {key_id} for {org} ({' '.join(scopes)}); shown once:", err=True)
    typer.echo(plaintext)


@apikey_app.command("list")
def apikey_list(
    org: Annotated[str | None, typer.Option(help="Only this organisation's keys")] = None,
) -> None:
    """Keys, newest first: id, prefix, organisation id, status, scopes, expires_at,
    last_used_at, name (tab-separated). Never the keys themselves."""
    from core.errors import DomainError
    from vznos.processes import operator_container

    with operator_container(_settings()) as container:
        try:
            page = container.access.list_api_keys(None, org_code=org, limit=10_000)
        except DomainError as exc:
            _fail(exc.detail)
            return
    typer.echo("id\tprefix\torganization_id\tstatus\tscopes\texpires_at\tlast_used_at\tname")
    for key in page.data:
        typer.echo(
            "\t".join(
                (
                    str(key.id),
                    key.prefix,
                    str(key.organization_id),
                    key.status,
                    ",".join(key.scopes),
                    _when(key.expires_at),
                    _when(key.last_used_at),
                    key.name,
                )
            )
        )


@apikey_app.command("revoke")
def apikey_revoke(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="API key id")],
) -> None:
    """Revoke a key now: its next request is refused (401)."""
    from core.errors import DomainError
    from vznos.processes import operator_container

    with operator_container(_settings()) as container:
        try:
            key = container.access.revoke_api_key(None, _key_id(key_id))
        except DomainError as exc:
            _fail(exc.detail)
            return
    typer.echo(f"API key {key.id} revoked")


@apikey_app.command("rotate")
def apikey_rotate(
    key_id: Annotated[str, typer.Argument(metavar="ID", help="API key id")],
    grace_hours: Annotated[
        float | None,
        typer.Option(min=0, help="How long the old key keeps working (default: 24)"),
    ] = None,
) -> None:
    """Create a successor key (same organisation, name and scopes) and print it once; the old
    key keeps working for the grace period, then expires."""
    from datetime import timedelta

    from core.errors import DomainError
    from vznos.processes import operator_container

    with operator_container(_settings()) as container:
        try:
            created = container.access.rotate_api_key(
                None,
                _key_id(key_id),
                grace=timedelta(hours=grace_hours) if grace_hours is not None else None,
            )
        except DomainError as exc:
            _fail(exc.detail)
            return
    typer.echo(f"API key {created.id} replaces {key_id}; shown once:", err=True)
    typer.echo(created.key)


@treasurer_app.command("create")
def treasurer_create(
    org: Annotated[str, typer.Option(help="Organisation code the treasurer works for")],
    login: Annotated[str, typer.Option(help="Sign-in name")],
    name: Annotated[str, typer.Option(help="Display name")],
    password: Annotated[
        str,
        typer.Option(
            prompt=True,
            hide_input=True,
            confirmation_prompt=True,
            envvar="VZNOS_TREASURER_PASSWORD",
            help="Prompted for when not given (or VZNOS_TREASURER_PASSWORD)",
        ),
    ],
    scope: ScopeOption = None,
    totp: Annotated[
        bool, typer.Option("--totp", help="Require a TOTP second factor; prints the enrolment URI")
    ] = False,
) -> None:
    """Create a treasurer account (password hashed with argon2id)."""
    from core.errors import DomainError
    from vznos.processes import operator_container

    if len(password) < 12:
        _fail("the password must have at least 12 characters")
    scopes = _scopes(scope, ["payments:read", "reconciliation:write"])
    with operator_container(_settings()) as container:
        try:
            treasurer_id, uri = container.access.create_treasurer(
                org_code=org,
                login=login,
                display_name=name,
                password=password,
                scopes=scopes,
                with_totp=totp,
            )
        except DomainError as exc:
            _fail(exc.detail)
            return
    typer.echo(f"treasurer {treasurer_id} created ({' '.join(scopes)})")
    if uri:
        typer.echo(f"enrol an authenticator app with (shown once): {uri}")


@billing_app.command("run")
def billing_run(
    period: Annotated[str, typer.Option(help="Billing month, YYYY-MM")],
) -> None:
    """Create and submit this month's charges now. Running it twice charges nobody twice."""
    from vznos.processes import billing_now

    try:
        period_month = parse_period(period)
    except InvalidPeriod as exc:
        _fail(str(exc))
        return
    result = billing_now(_settings(), period_month)
    typer.echo(f"period {period}: {result.charges_created} charges created")


@ledger_app.command("accrue")
def ledger_accrue(
    period: Annotated[str, typer.Option(help="Dues month, YYYY-MM")],
) -> None:
    """Accrue a month of dues for every member with a plan. Running it twice accrues nobody
    twice."""
    from vznos.processes import operator_container

    try:
        period_month = parse_period(period)
    except InvalidPeriod as exc:
        _fail(str(exc))
        return
    with operator_container(_settings()) as container:
        result = container.dues.accrue(period_month)
    typer.echo(f"period {period}: {result.accrued} members accrued")


@ledger_app.command("check")
def ledger_check() -> None:
    """Verify the books: every entry balances, maintained balances equal the postings, nothing
    was posted in a closed month, months match postings, every card payment posted once."""
    from vznos.checks import run_checks
    from vznos.processes import operator_container

    with operator_container(_settings()) as container:
        violations = run_checks(container)
    for violation in violations:
        typer.echo(f"{violation.check}: {violation.detail}")
    if violations:
        typer.echo(f"{len(violations)} violations", err=True)
        raise typer.Exit(code=1)
    typer.echo("the books hold: no violations")


@ledger_app.command("close")
def ledger_close(
    org: Annotated[str, typer.Option(help="Organisation code")],
    period: Annotated[str, typer.Option(help="Month to close, YYYY-MM")],
    by: Annotated[str, typer.Option(help="The treasurer closing it")],
) -> None:
    """Close a month for an organisation."""
    from core.db import transaction
    from core.errors import DomainError
    from ledger.service import close_period
    from members import repository
    from vznos.processes import operator_container

    try:
        period_month = parse_period(period)
    except InvalidPeriod as exc:
        _fail(str(exc))
        return
    with operator_container(_settings()) as container:
        try:
            with transaction(container.sessions) as session:
                found = repository.organization_by_code(session, org)
                if found is None:
                    _fail(f"no organization with code {org!r}")
                    return
                close_period(
                    session,
                    organization_id=found.id,
                    period_month=period_month,
                    closed_by=by,
                    now=container.clock.now(),
                )
        except DomainError as exc:
            _fail(exc.detail)
    typer.echo(f"{period} closed for {org}")


def _when(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "-"


@inbox_app.command("list")
def inbox_list(
    unprocessed: Annotated[
        bool, typer.Option("--unprocessed", help="Only items not yet processed")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=10_000, help="At most this many")] = 50,
) -> None:
    """Notifications received, newest first: id, received_at, event, object id, attempts,
    processed_at, last_error (tab-separated)."""
    from vznos.processes import operator_container

    with operator_container(_settings()) as container:
        items = container.inbox.list_items(unprocessed_only=unprocessed, limit=limit)
    typer.echo("id\treceived_at\tevent\tobject_id\tattempts\tprocessed_at\tlast_error")
    for item in items:
        typer.echo(
            "\t".join(
                (
                    str(item.id),
                    _when(item.received_at),
                    item.event,
                    item.object_id,
                    str(item.attempts),
                    _when(item.processed_at),
                    item.last_error or "-",
                )
            )
        )


@inbox_app.command("reprocess")
def inbox_reprocess(
    item_id: Annotated[str, typer.Argument(metavar="ID", help="Inbox item id")],
) -> None:
    """Process one notification again, now, in this process. Safe to repeat: the payment is
    re-read from the gateway and only forward transitions are recorded."""
    from vznos.processes import operator_container
    from webhooks.inbound.errors import UnknownInboxItem

    try:
        inbox_id = uuid.UUID(item_id)
    except ValueError:
        _fail(f"{item_id!r} is not an inbox item id (a UUID)")
        return
    with operator_container(_settings()) as container:
        try:
            item = container.inbox.reprocess(inbox_id)
        except UnknownInboxItem:
            _fail(f"no inbox item {inbox_id}")
            return
    if item.processed_at is None:
        typer.echo(f"inbox item {item.id} not processed: {item.last_error or 'unknown error'}")
        raise typer.Exit(code=1)
    typer.echo(f"inbox item {item.id} processed ({item.event} {item.object_id})")


@keys_app.command("generate")
def keys_generate(
    key_id: Annotated[str, typer.Argument(help="Id of the new master key, e.g. 2026-11")],
) -> None:
    """Print a new master key entry to put FIRST in VZNOS_MASTER_KEY (then `vznos keys rotate`)."""
    from core.crypto import KeyConfigurationError, MasterKey

    try:
        typer.echo(MasterKey.generate(key_id).export())
    except KeyConfigurationError as exc:
        _fail(str(exc))


@keys_app.command("rotate")
def keys_rotate(
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Rows per transaction")] = 500,
) -> None:
    """Re-wrap every member data key and re-seal every secret under the FIRST key of
    VZNOS_MASTER_KEY, online, in small transactions; safe to interrupt and run again."""
    from vznos.processes import operator_container

    with operator_container(_settings()) as container:
        moved = container.keys.rotate(batch_size)
        status = container.keys.status()
    typer.echo(f"re-wrapped {moved} under master key {status.current_key_id!r}")
    _echo_key_status(status)
    if status.pending:
        typer.echo(f"{status.pending} still under older keys (busy rows): run it again", err=True)
        raise typer.Exit(code=1)


@keys_app.command("status")
def keys_status() -> None:
    """What each master key still wraps, and which configured keys are safe to remove."""
    from vznos.processes import operator_container

    with operator_container(_settings()) as container:
        status = container.keys.status()
    _echo_key_status(status)


def _echo_key_status(status: KeyStatus) -> None:
    for place, counts in status.usage.items():
        listed = ", ".join(f"{key_id}: {n}" for key_id, n in sorted(counts.items())) or "none"
        typer.echo(f"{place}: {listed}")
    typer.echo(f"current master key: {status.current_key_id}")
    if status.removable:
        typer.echo(
            f"no longer used, safe to remove from VZNOS_MASTER_KEY: {', '.join(status.removable)}"
        )


@members_app.command("erase")
def members_erase(
    external_id: Annotated[str, typer.Argument(help="The CRM's membership record id")],
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation")] = False,
) -> None:
    """Erase a member for good (crypto-shredding): cancel their auto-pay, destroy their data
    key. The ledger keeps the amounts under a pseudonym. Rotate the master key afterwards
    (`vznos keys rotate`) so that older backups cannot bring the member back."""
    from core.errors import DomainError
    from vznos.processes import operator_container

    if not yes:
        typer.confirm(f"erase member {external_id!r} irreversibly?", abort=True)
    with operator_container(_settings()) as container:
        try:
            erasure = container.erasure.erase(None, external_id)
        except DomainError as exc:
            _fail(exc.detail)
            return
    typer.echo(
        f"erased: now {erasure.pseudonym} at {erasure.erased_at.isoformat()}, "
        f"{erasure.subscriptions_canceled} subscriptions canceled"
    )


@members_app.command("rotate-key")
def members_rotate_key(
    external_id: Annotated[str, typer.Argument(help="The CRM's membership record id")],
) -> None:
    """Re-encrypt one member's data under a new data key and destroy the old one."""
    from core.errors import DomainError
    from vznos.processes import operator_container

    with operator_container(_settings()) as container:
        try:
            version = container.members.rotate_data_key(external_id)
        except DomainError as exc:
            _fail(exc.detail)
            return
    typer.echo(f"member {external_id}: data key version {version}")


@app.command()
def openapi(
    write: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout")] = None,
) -> None:
    """Print the API contract (openapi.yaml) as the application generates it."""
    from vznos.contract import render_openapi

    text = render_openapi()
    if write:
        write.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)


def main() -> None:
    app()
