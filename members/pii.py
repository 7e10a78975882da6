"""Members' personal data at rest: encrypted under a data key per member, found by blind index.

`MemberVault` is the only way in or out. It keeps unwrapped data keys in the session's `info`
for the length of one unit of work, so a batch touching a member's several fields unwraps the
key once and nothing outlives the session. Tables outside `members` that hold ciphertext under
a member's key (saved card tokens) are declared as `KeyedColumn`s, so rotation and erasure
reach them without this module knowing their domain.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from core.crypto import DataKey, KeyRing
from members.models import Member, MemberDataKey

SESSION_CACHE = "vznos.member_data_keys"
EMAIL_INDEX = "member.email"
PHONE_INDEX = "member.phone"


class DataKeyMissing(Exception):
    """The member has no data key: erased (crypto-shredded)."""


@dataclass(frozen=True)
class KeyedColumn:
    """A column holding ciphertext under the data key of the member named by `member_column`,
    with an optional blind index beside it (cleared on erasure)."""

    table: str
    column: str
    member_column: str = "member_id"
    id_column: str = "id"
    index_column: str | None = None


MEMBER_COLUMNS = (
    KeyedColumn("members", "full_name_ciphertext", member_column="id"),
    KeyedColumn("members", "email_ciphertext", member_column="id", index_column="email_index"),
    KeyedColumn("members", "phone_ciphertext", member_column="id", index_column="phone_index"),
    KeyedColumn("members", "birth_date_ciphertext", member_column="id"),
)


@dataclass(frozen=True)
class PersonalData:
    full_name: str
    email: str | None = None
    phone: str | None = None
    birth_date: date | None = None


def data_key_aad(member_id: uuid.UUID) -> str:
    return f"member_data_keys:{member_id}"


def field_aad(table: str, column: str, row_id: object, member_id: uuid.UUID) -> str:
    """Binds a ciphertext to its column, its row and its member: moved anywhere, it fails."""
    return f"{table}.{column}:{row_id}@{member_id}"


def normalize_email(email: str) -> str:
    return email.strip().lower()


def normalize_phone(phone: str) -> str:
    return "".join(ch for ch in phone if ch.isdigit() or ch == "+")


class MemberVault:
    def __init__(self, keyring: KeyRing, keyed_columns: Sequence[KeyedColumn] = ()) -> None:
        self._keyring = keyring
        self._columns = (*MEMBER_COLUMNS, *keyed_columns)

    @property
    def keyring(self) -> KeyRing:
        return self._keyring

    # -- blind indexes --------------------------------------------------------------------

    def email_index(self, email: str) -> str:
        return self._keyring.blind_index(EMAIL_INDEX, normalize_email(email))

    def phone_index(self, phone: str) -> str:
        return self._keyring.blind_index(PHONE_INDEX, normalize_phone(phone))

    def token_index(self, purpose: str, token: str) -> str:
        return self._keyring.blind_index(purpose, token)

    # -- data keys ------------------------------------------------------------------------

    @staticmethod
    def _cache(session: Session) -> dict[uuid.UUID, DataKey]:
        cache: dict[uuid.UUID, DataKey] = session.info.setdefault(SESSION_CACHE, {})
        return cache

    def create_data_key(self, session: Session, member_id: uuid.UUID, now: datetime) -> DataKey:
        return self._add_version(session, member_id, 1, now)

    def _add_version(
        self, session: Session, member_id: uuid.UUID, version: int, now: datetime
    ) -> DataKey:
        key = DataKey.generate(version)
        session.add(
            MemberDataKey(
                member_id=member_id,
                version=version,
                kek_id=self._keyring.current_key_id,
                wrapped_key=self._keyring.wrap(key, data_key_aad(member_id)),
                created_at=now,
                rewrapped_at=None,
            )
        )
        session.flush()
        self._cache(session)[member_id] = key
        return key

    def data_key(self, session: Session, member_id: uuid.UUID) -> DataKey:
        cache = self._cache(session)
        if member_id not in cache:
            self.preload(session, [member_id])
        key = cache.get(member_id)
        if key is None:
            raise DataKeyMissing(f"member {member_id} has no data key")
        return key

    def preload(self, session: Session, member_ids: Iterable[uuid.UUID]) -> None:
        """Unwrap the data keys of many members with one query (billing batches)."""
        cache = self._cache(session)
        wanted = {m for m in member_ids if m not in cache}
        if not wanted:
            return
        rows = session.scalars(
            select(MemberDataKey)
            .where(MemberDataKey.member_id.in_(wanted))
            .order_by(MemberDataKey.member_id, MemberDataKey.version)
        )
        for row in rows:  # the highest version wins
            cache[row.member_id] = self._keyring.unwrap(
                row.wrapped_key, data_key_aad(row.member_id), row.version
            )

    # -- fields ---------------------------------------------------------------------------

    def encrypt(
        self,
        session: Session,
        member_id: uuid.UUID,
        table: str,
        column: str,
        row_id: object,
        value: str,
    ) -> str:
        key = self.data_key(session, member_id)
        return key.encrypt(value, field_aad(table, column, row_id, member_id))

    def decrypt(
        self,
        session: Session,
        member_id: uuid.UUID,
        table: str,
        column: str,
        row_id: object,
        token: str,
    ) -> str:
        key = self.data_key(session, member_id)
        return key.decrypt(token, field_aad(table, column, row_id, member_id))

    def write(self, session: Session, member: Member, data: PersonalData) -> None:
        """Encrypt the member's personal data onto the row, with fresh blind indexes."""

        def seal(column: str, value: str | None) -> str | None:
            if value is None:
                return None
            return self.encrypt(session, member.id, "members", column, member.id, value)

        member.full_name_ciphertext = seal("full_name_ciphertext", data.full_name)
        member.email_ciphertext = seal("email_ciphertext", data.email)
        member.phone_ciphertext = seal("phone_ciphertext", data.phone)
        member.birth_date_ciphertext = seal(
            "birth_date_ciphertext", data.birth_date.isoformat() if data.birth_date else None
        )
        member.email_index = self.email_index(data.email) if data.email else None
        member.phone_index = self.phone_index(data.phone) if data.phone else None

    def read(self, session: Session, member: Member) -> PersonalData:
        """The member's personal data. DataKeyMissing when erased; CryptoError when a
        ciphertext does not belong to this member."""

        def open_(column: str, token: str | None) -> str | None:
            if token is None:
                return None
            return self.decrypt(session, member.id, "members", column, member.id, token)

        full_name = open_("full_name_ciphertext", member.full_name_ciphertext)
        if full_name is None:
            raise DataKeyMissing(f"member {member.id} has no personal data")
        birth_date = open_("birth_date_ciphertext", member.birth_date_ciphertext)
        return PersonalData(
            full_name=full_name,
            email=open_("email_ciphertext", member.email_ciphertext),
            phone=open_("phone_ciphertext", member.phone_ciphertext),
            birth_date=date.fromisoformat(birth_date) if birth_date else None,
        )

    # -- rotation and erasure -------------------------------------------------------------

    def rewrap_batch(self, session: Session, now: datetime, limit: int) -> int:
        """Re-wrap up to `limit` data keys wrapped by an older master key under the newest one.
        The data keys themselves, and so every field ciphertext, stay as they are."""
        rows = session.scalars(
            select(MemberDataKey)
            .where(MemberDataKey.kek_id != self._keyring.current_key_id)
            .order_by(MemberDataKey.member_id, MemberDataKey.version)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        for row in rows:
            row.wrapped_key = self._keyring.rewrap(
                row.wrapped_key, data_key_aad(row.member_id), row.version
            )
            row.kek_id = self._keyring.current_key_id
            row.rewrapped_at = now
        return len(rows)

    @staticmethod
    def data_key_counts(session: Session) -> dict[str, int]:
        """How many data keys each master key id wraps."""
        rows = session.execute(
            select(MemberDataKey.kek_id, func.count()).group_by(MemberDataKey.kek_id)
        ).all()
        return {kek_id: int(n) for kek_id, n in rows}

    def rotate_data_key(self, session: Session, member_id: uuid.UUID, now: datetime) -> int:
        """Re-encrypt everything under a new data key and destroy the old one, in the caller's
        transaction (which should hold the member row locked). Returns the new version."""
        old = self.data_key(session, member_id)
        self._cache(session).pop(member_id)
        new = self._add_version(session, member_id, old.version + 1, now)
        for column in self._columns:
            rows = session.execute(
                text(
                    f"SELECT {column.id_column} AS id, {column.column} AS token"  # noqa: S608
                    f" FROM {column.table} WHERE {column.member_column} = :member_id"
                    f" AND {column.column} IS NOT NULL FOR UPDATE"
                ),
                {"member_id": member_id},
            ).all()
            for row in rows:
                aad = field_aad(column.table, column.column, row.id, member_id)
                session.execute(
                    text(
                        f"UPDATE {column.table} SET {column.column} = :token"  # noqa: S608
                        f" WHERE {column.id_column} = :id"
                    ),
                    {"token": new.encrypt(old.decrypt(row.token, aad), aad), "id": row.id},
                )
        session.execute(
            delete(MemberDataKey).where(
                MemberDataKey.member_id == member_id, MemberDataKey.version <= old.version
            )
        )
        session.expire_all()  # ORM copies of the rows above hold the old ciphertext
        return new.version

    def shred(self, session: Session, member_id: uuid.UUID) -> None:
        """Crypto-shred: destroy the member's data keys, and clear the ciphertexts and blind
        indexes too (belt and braces; the keys' absence alone makes them unreadable)."""
        session.execute(delete(MemberDataKey).where(MemberDataKey.member_id == member_id))
        self._cache(session).pop(member_id, None)
        for column in self._columns:
            cleared = [column.column, *([column.index_column] if column.index_column else [])]
            assignments = ", ".join(f"{name} = NULL" for name in cleared)
            session.execute(
                text(
                    f"UPDATE {column.table} SET {assignments}"  # noqa: S608
                    f" WHERE {column.member_column} = :member_id"
                ),
                {"member_id": member_id},
            )
        session.expire_all()
