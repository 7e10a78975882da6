"""Envelope encryption for personal data and installation secrets (AES-GCM, `cryptography`).

Two layers of keys:

- **Master keys (KEKs)** come from settings (`VZNOS_MASTER_KEY`), never from the database. Several
  may be configured at once, each with a key id; the first encrypts, all decrypt, so a new key can
  be introduced, everything re-wrapped under it (`vznos keys rotate`), and the old one removed.
- **Data keys (DEKs)** are random 32-byte keys, one per member, stored only wrapped (sealed) by a
  master key. Destroying a member's wrapped DEK makes everything encrypted under it unreadable
  (crypto-shredding).

Every ciphertext is text that names its key, and is bound by AES-GCM associated data to where it
lives (table, column, owner row), so a ciphertext copied onto another row fails to decrypt:

    vzk1.<master key id>.<base64url(nonce ‖ ciphertext ‖ tag)>   sealed by a master key
    vzd1.<data key version>.<base64url(nonce ‖ ciphertext ‖ tag)> encrypted by a member's DEK

Nonces are random 96-bit values, as AES-GCM requires: safe far beyond the number of messages one
key ever encrypts here (a DEK encrypts a handful of fields, a KEK one wrap per DEK).

Lookups by value (an email, a phone) go through a blind index: HMAC-SHA256 under a separate
index key, so equal values can be found without storing them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

SEALED_SCHEME = "vzk1"
FIELD_SCHEME = "vzd1"
KEY_BYTES = 32
NONCE_BYTES = 12
KEY_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,32}$")


class CryptoError(Exception):
    """A ciphertext cannot be opened: tampered with, moved to another row, or its key is gone.

    Messages name key ids and formats only, never plaintext or key material."""


class KeyConfigurationError(ValueError):
    """The configured master or index keys are malformed."""


def _b64encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError) as exc:
        raise CryptoError("ciphertext is not valid base64url") from exc


def _split(token: str, scheme: str) -> tuple[str, bytes]:
    parts = token.split(".")
    if len(parts) != 3 or parts[0] != scheme:
        raise CryptoError(f"not a {scheme} ciphertext")
    blob = _b64decode(parts[2])
    if len(blob) < NONCE_BYTES + 16:
        raise CryptoError("ciphertext is too short")
    return parts[1], blob


def _encrypt(key: bytes, plaintext: bytes, aad: str) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, aad.encode())


def _decrypt(key: bytes, blob: bytes, aad: str) -> bytes:
    try:
        return AESGCM(key).decrypt(blob[:NONCE_BYTES], blob[NONCE_BYTES:], aad.encode())
    except InvalidTag as exc:
        raise CryptoError("ciphertext does not open under this key and context") from exc


def column_aad(table: str, column: str, row_id: object) -> str:
    """The associated data binding a ciphertext to one column of one row."""
    return f"{table}.{column}:{row_id}"


@dataclass(frozen=True)
class SealedColumn:
    """A column of installation secrets sealed by `KeyRing.seal(value, column_aad(table,
    column, row id))`. Each domain declares its own; `vznos keys rotate` re-seals them all
    under the newest master key."""

    table: str
    column: str
    id_column: str = "id"

    def aad(self, row_id: object) -> str:
        return column_aad(self.table, self.column, row_id)


@dataclass(frozen=True)
class MasterKey:
    key_id: str
    material: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if not KEY_ID_PATTERN.fullmatch(self.key_id):
            raise KeyConfigurationError(
                f"master key id {self.key_id!r} must be 1-32 letters, digits, '_' or '-'"
            )
        if len(self.material) != KEY_BYTES:
            raise KeyConfigurationError(f"master key {self.key_id!r} must be {KEY_BYTES} bytes")

    @classmethod
    def generate(cls, key_id: str) -> MasterKey:
        return cls(key_id, AESGCM.generate_key(bit_length=KEY_BYTES * 8))

    def export(self) -> str:
        """The `id:base64url` form `VZNOS_MASTER_KEY` takes."""
        return f"{self.key_id}:{_b64encode(self.material)}"


def parse_master_keys(text: str) -> tuple[MasterKey, ...]:
    """`VZNOS_MASTER_KEY`: comma-separated `id:base64url(32 bytes)`, the newest (encrypting)
    key first. Older keys stay listed only until `vznos keys rotate` has re-wrapped everything."""
    keys: list[MasterKey] = []
    for entry in (part.strip() for part in text.split(",")):
        if not entry:
            continue
        key_id, sep, encoded = entry.partition(":")
        if not sep:
            raise KeyConfigurationError("each master key must be written as id:base64url")
        try:
            material = _b64decode(encoded.strip())
        except CryptoError as exc:
            raise KeyConfigurationError(f"master key {key_id!r} is not base64url") from exc
        keys.append(MasterKey(key_id.strip(), material))
    if not keys:
        raise KeyConfigurationError("at least one master key is required")
    if len({key.key_id for key in keys}) != len(keys):
        raise KeyConfigurationError("master key ids must be unique")
    return tuple(keys)


def generate_index_key() -> str:
    return _b64encode(os.urandom(KEY_BYTES))


def parse_index_key(text: str) -> bytes:
    try:
        material = _b64decode(text.strip())
    except CryptoError as exc:
        raise KeyConfigurationError("the blind index key is not base64url") from exc
    if len(material) < KEY_BYTES:
        raise KeyConfigurationError(f"the blind index key must be at least {KEY_BYTES} bytes")
    return material


@dataclass(frozen=True)
class DataKey:
    """An unwrapped data key. Lives in memory only, for the length of a unit of work."""

    version: int
    material: bytes = field(repr=False)

    @classmethod
    def generate(cls, version: int = 1) -> DataKey:
        return cls(version, AESGCM.generate_key(bit_length=KEY_BYTES * 8))

    def encrypt(self, plaintext: str, aad: str) -> str:
        blob = _encrypt(self.material, plaintext.encode(), f"{aad}:{self.version}")
        return f"{FIELD_SCHEME}.{self.version}.{_b64encode(blob)}"

    def decrypt(self, token: str, aad: str) -> str:
        version, blob = _split(token, FIELD_SCHEME)
        if version != str(self.version):
            raise CryptoError(f"ciphertext is under data key version {version}, not {self.version}")
        return _decrypt(self.material, blob, f"{aad}:{self.version}").decode()


def field_key_version(token: str) -> int:
    """The data key version a field ciphertext names."""
    version, _ = _split(token, FIELD_SCHEME)
    try:
        return int(version)
    except ValueError as exc:
        raise CryptoError("ciphertext names no data key version") from exc


class KeyRing:
    """The configured master keys (first encrypts, all decrypt) and the blind index key."""

    def __init__(self, master_keys: Sequence[MasterKey], index_key: bytes) -> None:
        if not master_keys:
            raise KeyConfigurationError("at least one master key is required")
        if len(index_key) < KEY_BYTES:
            raise KeyConfigurationError(f"the blind index key must be at least {KEY_BYTES} bytes")
        self._current = master_keys[0]
        self._by_id = {key.key_id: key for key in master_keys}
        if len(self._by_id) != len(master_keys):
            raise KeyConfigurationError("master key ids must be unique")
        self._index_key = index_key

    def __repr__(self) -> str:
        return f"KeyRing(current={self._current.key_id!r}, keys={sorted(self._by_id)!r})"

    @property
    def current_key_id(self) -> str:
        return self._current.key_id

    @property
    def key_ids(self) -> tuple[str, ...]:
        return tuple(self._by_id)

    # Sealing: installation-level secrets and wrapped data keys.

    def seal(self, plaintext: str, aad: str) -> str:
        """Encrypt a secret under the current master key, bound to `aad` (see `column_aad`)."""
        return self._seal_bytes(plaintext.encode(), aad)

    def open(self, token: str, aad: str) -> str:
        return self._open_bytes(token, aad).decode()

    def seal_bytes(self, plaintext: bytes, aad: str) -> str:
        """`seal` for bytes (a stored HTTP answer)."""
        return self._seal_bytes(plaintext, aad)

    def open_bytes(self, token: str, aad: str) -> bytes:
        return self._open_bytes(token, aad)

    def sealed_key_id(self, token: str) -> str:
        key_id, _ = _split(token, SEALED_SCHEME)
        return key_id

    def is_current(self, token: str) -> bool:
        return self.sealed_key_id(token) == self._current.key_id

    def reseal(self, token: str, aad: str) -> str:
        """The same secret sealed under the current master key (unchanged if it already is)."""
        if self.is_current(token):
            return token
        return self._seal_bytes(self._open_bytes(token, aad), aad)

    def _seal_bytes(self, plaintext: bytes, aad: str) -> str:
        blob = _encrypt(self._current.material, plaintext, aad)
        return f"{SEALED_SCHEME}.{self._current.key_id}.{_b64encode(blob)}"

    def _open_bytes(self, token: str, aad: str) -> bytes:
        key_id, blob = _split(token, SEALED_SCHEME)
        key = self._by_id.get(key_id)
        if key is None:
            raise CryptoError(f"master key {key_id!r} is not configured")
        return _decrypt(key.material, blob, aad)

    # Data keys.

    def wrap(self, data_key: DataKey, aad: str) -> str:
        return self._seal_bytes(data_key.material, f"{aad}:{data_key.version}")

    def unwrap(self, wrapped: str, aad: str, version: int) -> DataKey:
        return DataKey(version, self._open_bytes(wrapped, f"{aad}:{version}"))

    def rewrap(self, wrapped: str, aad: str, version: int) -> str:
        return self.reseal(wrapped, f"{aad}:{version}")

    # Blind index.

    def blind_index(self, purpose: str, value: str) -> str:
        """A keyed hash for equality lookups. `purpose` keeps the indexes of different fields
        apart; callers normalise `value` (case, spacing) before hashing."""
        message = purpose.encode() + b"\x00" + value.encode()
        return hmac.new(self._index_key, message, hashlib.sha256).hexdigest()

    def unused(self, key_ids_in_use: Iterable[str]) -> tuple[str, ...]:
        """Configured keys nothing is sealed under any more: safe to remove from settings."""
        in_use = set(key_ids_in_use)
        return tuple(k for k in self._by_id if k not in in_use and k != self._current.key_id)
