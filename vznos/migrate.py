"""Alembic, driven from code: the schema is built by the migrations, in tests too."""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from core.crypto import KeyRing


def migrations_dir() -> Path:
    return Path(str(resources.files("migrations")))


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def upgrade(database_url: str, revision: str = "head", *, keyring: KeyRing | None = None) -> None:
    """Migrate. Data migrations that encrypt existing rows use `keyring` (default: the one the
    settings describe)."""
    config = alembic_config(database_url)
    if keyring is not None:
        config.attributes["keyring"] = keyring
    command.upgrade(config, revision)


@cache
def head_revision() -> str | None:
    script = ScriptDirectory.from_config(alembic_config("postgresql+psycopg://unused"))
    return script.get_current_head()


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
