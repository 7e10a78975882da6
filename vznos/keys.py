"""The key ring from settings (or a development key pair generated once and kept on disk), and
master key rotation over everything the master key wraps or seals."""

from __future__ import annotations

import os
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import structlog
from sqlalchemy.orm import Session, sessionmaker

from core.clock import Clock
from core.crypto import (
    KeyRing,
    MasterKey,
    SealedColumn,
    generate_index_key,
    parse_index_key,
    parse_master_keys,
)
from core.db import transaction
from core.sealing import reseal_batch, sealed_key_counts
from core.settings import Settings
from members.pii import MemberVault
from payments.shops.models import SHOP_SECRET
from webhooks.outbound.models import SECRET_COLUMNS

# Every column of installation secrets sealed by the master key, for `vznos keys rotate`.
SEALED_COLUMNS: tuple[SealedColumn, ...] = (SHOP_SECRET, *SECRET_COLUMNS)

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


@dataclass(frozen=True)
class KeyStatus:
    current_key_id: str
    configured_key_ids: tuple[str, ...]
    # Per place ("member_data_keys", "webhook_endpoints.secret_sealed", …): count per key id.
    usage: dict[str, dict[str, int]]

    @property
    def key_ids_in_use(self) -> set[str]:
        return {key_id for counts in self.usage.values() for key_id in counts}

    @property
    def removable(self) -> tuple[str, ...]:
        """Configured master keys nothing is wrapped or sealed under any more."""
        return tuple(
            k
            for k in self.configured_key_ids
            if k not in self.key_ids_in_use and k != self.current_key_id
        )

    @property
    def pending(self) -> int:
        return sum(
            n
            for counts in self.usage.values()
            for key_id, n in counts.items()
            if key_id != self.current_key_id
        )


class KeyRotation:
    """`vznos keys rotate`: re-wrap every member data key and re-seal every installation secret
    under the newest master key, in small transactions, online and resumable."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        clock: Clock,
        vault: MemberVault,
        sealed_columns: Sequence[SealedColumn],
    ) -> None:
        self._sessions = sessions
        self._clock = clock
        self._vault = vault
        self._sealed = tuple(sealed_columns)

    @property
    def keyring(self) -> KeyRing:
        return self._vault.keyring

    def rotate(self, batch_size: int = 500) -> int:
        """Returns how many keys and secrets were re-wrapped."""
        done = 0
        while True:
            with transaction(self._sessions) as session:
                moved = self._vault.rewrap_batch(session, self._clock.now(), batch_size)
            done += moved
            if moved:
                log.info("keys.data_keys_rewrapped", count=moved, total=done)
            if moved < batch_size:
                break
        for column in self._sealed:
            while True:
                with transaction(self._sessions) as session:
                    moved = reseal_batch(session, self.keyring, column, batch_size)
                done += moved
                if moved < batch_size:
                    break
        log.info("keys.rotated", current_key_id=self.keyring.current_key_id, total=done)
        return done

    def status(self) -> KeyStatus:
        with self._sessions() as session:
            usage = {"member_data_keys": self._vault.data_key_counts(session)}
            for column in self._sealed:
                usage[f"{column.table}.{column.column}"] = sealed_key_counts(session, column)
        return KeyStatus(self.keyring.current_key_id, self.keyring.key_ids, usage)
