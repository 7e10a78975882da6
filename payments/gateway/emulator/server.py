"""Running the emulator: in a background thread (tests, dev stacks) or in the foreground (CLI)."""

from __future__ import annotations

import logging
from pathlib import Path
from types import TracebackType

import uvicorn

from core.serving import BackgroundServer, bind, reachable_host
from payments.gateway.emulator.app import create_emulator_app
from payments.gateway.emulator.state import EmulatorState

logger = logging.getLogger(__name__)


class EmulatorServer:
    """The emulator on a loopback port. The caller owns `state` (and closes it)."""

    def __init__(self, state: EmulatorState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.state = state
        self._server = BackgroundServer(
            create_emulator_app(state), host=host, port=port, name="yookassa-emulator"
        )

    @property
    def host(self) -> str:
        return self._server.host

    @property
    def port(self) -> int:
        return self._server.port

    @property
    def url(self) -> str:
        return self._server.url

    @property
    def api_url(self) -> str:
        return self.url + "/v3"

    def start(self, timeout: float = 10.0) -> EmulatorServer:
        """Returns once the server accepts connections."""
        # Binding first tells us the port chosen for port 0, so confirmation URLs carry it.
        self._server.bind()
        if not self.state.base_url:
            self.state.base_url = self.url
        self._server.start(timeout)
        logger.info("YooKassa emulator listening on %s", self.url)
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> EmulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    host: str,
    port: int,
    shops: dict[str, str],
    notify_url: str | None,
    state_file: Path | None,
) -> None:
    """Runs the emulator in the foreground until interrupted (the CLI's `emulator` command)."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s"
        )
    sock = bind(host, port)
    bound_port = int(sock.getsockname()[1])
    state = EmulatorState(
        shops, base_url=f"http://{reachable_host(host)}:{bound_port}", state_file=state_file
    )
    if notify_url:
        for shop_id in shops:
            state.set_notification_url(shop_id, notify_url)
    logger.info("YooKassa emulator on %s/v3 for shops %s", state.base_url, ", ".join(shops))
    server = uvicorn.Server(uvicorn.Config(create_emulator_app(state), lifespan="off"))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
        state.close()
