"""The foreground `serve` entry point the CLI wires, run as a real process."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_in_foreground_process(tmp_path: Path) -> None:
    port = _free_port()
    state_file = tmp_path / "state.json"
    code = (
        "from pathlib import Path\n"
        "from payments.gateway.emulator import serve\n"
        f"serve('127.0.0.1', {port}, {{'42': 'secret'}}, 'http://127.0.0.1:9/hook', "
        f"Path({str(state_file)!r}))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        cwd=Path.cwd(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 15
        while True:
            try:
                me = httpx.get(f"{base}/v3/me", auth=("42", "secret"))
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "emulator process did not start"
                time.sleep(0.1)
        assert me.json()["account_id"] == "42"
        created = httpx.post(
            f"{base}/v3/payments",
            auth=("42", "secret"),
            headers={"Idempotence-Key": "k"},
            json={
                "amount": {"value": "5.00", "currency": "RUB"},
                "confirmation": {"type": "redirect", "return_url": "https://r"},
            },
        ).json()
        assert created["confirmation"]["confirmation_url"] == f"{base}/checkout/{created['id']}"
        saved = json.loads(state_file.read_text())
        assert saved["notification_urls"] == {"42": "http://127.0.0.1:9/hook"}
        assert [p["obj"]["id"] for p in saved["payments"]] == [created["id"]]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
