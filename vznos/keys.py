"""The key ring from settings, or a development key pair generated once and kept on disk."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import structlog

from core.crypto import (
    KeyRing,
    MasterKey,
    generate_index_key,
    parse_index_key,
    parse_master_keys,
)
from core.settings import Settings

log = structlog.get_logger("vznos.keys")

DEV_KEYS_FILE = "dev-keys.env"
LINK_SECRET_FILE = "link-secret"  # noqa: S105 - a file name, not a secret
MASTER_KEY_VARIABLE = "VZNOS_MASTER_KEY"
INDEX_KEY_VARIABLE = "VZNOS_BLIND_INDEX_KEY"


def dev_keys(path: Path) -> dict[str, str]:
    """Read the development keys, creating them on first use (mode 0600, exclusive create, so
    two processes starting together agree on one pair)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        content = (
            f"{MASTER_KEY_VARIABLE}={MasterKey.generate('dev1').export()}\n"
            f"{INDEX_KEY_VARIABLE}={generate_index_key()}\n"
        )
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as file:
                file.write(content)
            log.warning("keys.dev_keys_created", path=str(path))
    values: dict[str, str] = {}
    for line in path.read_text().splitlines():
        name, sep, value = line.partition("=")
        if sep:
            values[name.strip()] = value.strip()
    return values


def build_keyring(settings: Settings) -> KeyRing:
    master = settings.master_key.get_secret_value() if settings.master_key else None
    index = settings.blind_index_key.get_secret_value() if settings.blind_index_key else None
    if master is None or index is None:
        path = settings.data_dir / DEV_KEYS_FILE
        log.warning(
            "keys.using_dev_keys",
            path=str(path),
            hint="set VZNOS_MASTER_KEY and VZNOS_BLIND_INDEX_KEY in production",
        )
        stored = dev_keys(path)
        master = master or stored[MASTER_KEY_VARIABLE]
        index = index or stored[INDEX_KEY_VARIABLE]
    return KeyRing(parse_master_keys(master), parse_index_key(index))


def link_secret(settings: Settings) -> str:
    """The secret that signs members' self-service links: from settings, or generated once and
    kept in data_dir (a restart keeps yesterday's links working). Every API process must use
    the same one, so production sets VZNOS_LINK_SECRET."""
    if settings.link_secret is not None:
        return settings.link_secret.get_secret_value()
    path = settings.data_dir / LINK_SECRET_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Written aside and linked into place: a reader never sees a half-written file, and
        # when two processes start together the second link fails and both read the first.
        aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(32) + "\n")
        try:
            os.link(aside, path)
            log.warning("keys.link_secret_created", path=str(path), hint="set VZNOS_LINK_SECRET")
        except FileExistsError:
            pass
        finally:
            aside.unlink()
    value = path.read_text().strip()
    if len(value) < 32:
        raise ValueError(f"{path} holds a link secret too short to trust; delete it")
    return value
