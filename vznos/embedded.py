"""Embedded defaults for a fresh machine: PostgreSQL from the `pgserver` wheel."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import structlog

log = structlog.get_logger("vznos.embedded")


class EmbeddedPostgres:
    """A PostgreSQL server in a data folder under the project, started on demand."""

    def __init__(self, data_dir: Path, *, cleanup_mode: str | None = "stop") -> None:
        self.data_dir = data_dir.resolve()
        self._cleanup_mode = cleanup_mode
        self._server: Any = None

    def start(self) -> str:
        from pgserver import get_server  # type: ignore[attr-defined]

        self.data_dir.mkdir(parents=True, exist_ok=True)
        # pgserver wants a runtime dir; containers and CI often have none set.
        os.environ.setdefault("XDG_RUNTIME_DIR", str(self.data_dir.parent))
        self._server = get_server(self.data_dir, cleanup_mode=self._cleanup_mode)
        uri: str = self._server.get_uri()
        log.info("embedded_postgres.started", data_dir=str(self.data_dir))
        return uri.replace("postgresql://", "postgresql+psycopg://", 1)

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
