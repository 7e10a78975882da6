"""Stored objects and their JSON state file.

The file is rewritten whole after every change (temp file + rename), so a crash never leaves a
half-written state behind; an emulator's state is small enough for that.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

STATE_VERSION = 1


@dataclass
class Record:
    """One stored object plus what only the emulator knows about it."""

    seq: int
    shop_id: str
    obj: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, row: dict[str, Any]) -> Record:
        return cls(int(row["seq"]), str(row["shop_id"]), row["obj"], dict(row.get("extra", {})))


def oracle_row(rec: Record) -> dict[str, Any]:
    """A payment as the oracle reports it: what was charged, with which key and which card."""
    obj = rec.obj
    return {
        "id": obj["id"],
        "shop_id": rec.shop_id,
        "status": obj["status"],
        "paid": obj["paid"],
        "amount": dict(obj["amount"]),
        "refunded_amount": obj.get("refunded_amount"),
        "metadata": dict(obj.get("metadata") or {}),
        "description": obj.get("description"),
        "idempotence_key": rec.extra.get("idempotence_key"),
        "payment_method_id": (obj.get("payment_method") or {}).get("id"),
        "cancellation_details": obj.get("cancellation_details"),
        "created_at": obj["created_at"],
        "object": copy.deepcopy(obj),
    }


def write_atomically(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, ensure_ascii=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_state(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != STATE_VERSION:
        raise ValueError(f"{path}: unsupported emulator state version {data.get('version')!r}")
    return data
