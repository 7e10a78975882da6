"""Serving an ASGI app from a background thread: for `vznos run`, the emulator and tests."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn


def bind(host: str, port: int) -> socket.socket:
    """Bind before serving, so the port chosen for port 0 is known before the server starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.set_inheritable(True)
    return sock


def reachable_host(host: str) -> str:
    if host in ("0.0.0.0", "", "::"):  # noqa: S104 - mapping a wildcard to a reachable name
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host


class BackgroundServer:
    def __init__(
        self, app: Any, host: str = "127.0.0.1", port: int = 0, name: str = "http"
    ) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.name = name
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def bind(self) -> int:
        if self._sock is None:
            self._sock = bind(self.host, self.port)
            self.port = int(self._sock.getsockname()[1])
        return self.port

    @property
    def url(self) -> str:
        return f"http://{reachable_host(self.host)}:{self.port}"

    def start(self, timeout: float = 10.0) -> None:
        """Returns once the server accepts connections."""
        if self._thread is not None:
            raise RuntimeError(f"{self.name} server already started")
        self.bind()
        # proxy_headers off: uvicorn would otherwise believe X-Forwarded-For from any loopback
        # peer, and the webhook sender check decides whom to believe itself.
        config = uvicorn.Config(
            self.app,
            log_level="warning",
            lifespan="off",
            access_log=False,
            log_config=None,
            proxy_headers=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=self.name, daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name} server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()
        self._server = None
        self._thread = None
        self._sock = None
