"""SQL over sealed columns (see `core.crypto.SealedColumn`): re-seal what is not under the newest
master key, in small transactions, and count what each master key still seals.

Batches lock their rows with SKIP LOCKED, so a rotation runs beside the live service and can be
stopped and started again at will: what is left to do is read from the data each time.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from core.crypto import SEALED_SCHEME, KeyRing, SealedColumn


def _key_id_sql(column: str) -> str:
    return f"split_part({column}, '.', 2)"


def reseal_batch(session: Session, keyring: KeyRing, column: SealedColumn, limit: int) -> int:
    """Re-seal up to `limit` values of `column` sealed under an older key. Returns how many."""
    rows = session.execute(
        text(
            f"SELECT {column.id_column} AS id, {column.column} AS token"  # noqa: S608
            f" FROM {column.table} WHERE {column.column} IS NOT NULL"
            f" AND {_key_id_sql(column.column)} <> :current"
            f" ORDER BY {column.id_column} LIMIT :limit FOR UPDATE SKIP LOCKED"
        ),
        {"current": keyring.current_key_id, "limit": limit},
    ).all()
    for row in rows:
        session.execute(
            text(
                f"UPDATE {column.table} SET {column.column} = :token"  # noqa: S608
                f" WHERE {column.id_column} = :id"
            ),
            {"token": keyring.reseal(row.token, column.aad(row.id)), "id": row.id},
        )
    return len(rows)


def sealed_key_counts(session: Session, column: SealedColumn) -> dict[str, int]:
    """How many values of `column` each master key id seals."""
    rows = session.execute(
        text(
            f"SELECT {_key_id_sql(column.column)} AS key_id, count(*) AS n"  # noqa: S608
            f" FROM {column.table} WHERE {column.column} LIKE :scheme"
            f" GROUP BY 1"
        ),
        {"scheme": f"{SEALED_SCHEME}.%"},
    ).all()
    return {row.key_id: int(row.n) for row in rows}
