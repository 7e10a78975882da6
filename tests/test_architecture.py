"""Dependencies point down (vznos → webhooks | reconciliation | notices → payments → members →
ledger → core), and only the gateway imports the YooKassa SDK: import-linter checks both."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_import_contracts_hold() -> None:
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run(
        [str(lint_imports), "--no-cache"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr


# API routes that authenticate otherwise on purpose (a sign-in). Routes outside /v1/ (health,
# the gateway's notifications, members' self-service pages) are not the CRM's API.
UNGUARDED = {"/v1/sessions"}


def test_every_api_operation_declares_its_scope() -> None:
    """Authorization is enforced in one place: each operation names its scope with
    `caller: Annotated[Principal, Depends(require(Scope.…))]` (members/access/dependencies.py)."""
    from members.access.dependencies import api_routes, guard_of
    from vznos.contract import built_app

    with built_app() as app:
        undeclared = [
            f"{sorted(route.methods or ())} {route.path}"
            for route in api_routes(app.routes)
            if route.path.startswith("/v1/")
            and route.path not in UNGUARDED
            and guard_of(route) is None
        ]
    assert undeclared == [], (
        "declare a scope: caller: Annotated[Principal, Depends(require(Scope.…))]"
    )
