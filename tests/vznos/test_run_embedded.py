"""The README's first command on a fresh machine: `vznos run` with nothing configured starts an
embedded PostgreSQL, the in-process broker and the YooKassa emulator, prints a demo API key, and
serves the API. This test runs it as a newcomer would, in a subprocess."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import with_idempotency_key

pytestmark = pytest.mark.e2e


def free_port_pair() -> int:
    """A port P such that P and P + 1 are both free (the API and the emulator)."""
    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = int(probe.getsockname()[1])
        with socket.socket() as second:
            try:
                second.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free pair of ports")


def test_vznos_run_on_embedded_defaults(tmp_path: Path) -> None:
    port = free_port_pair()
    env = {k: v for k, v in os.environ.items() if not k.startswith("VZNOS_")}
    env.pop("DATABASE_URL", None)
    env.update(VZNOS_DATA_DIR=str(tmp_path / "var"), VZNOS_LOG_FORMAT="json", PYTHONUNBUFFERED="1")
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "vznos", "run", "--port", str(port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log_path.read_text()
            try:
                if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.3)
        output = log_path.read_text()
        key = re.search(r"Demo API key:\s+(vz_\S+)", output)
        assert key, output
        assert f"http://127.0.0.1:{port + 1}/v3" in output

        headers = {"Authorization": f"Bearer {key.group(1)}"}
        with httpx.Client(
            base_url=base,
            headers=headers,
            timeout=30,
            event_hooks={"request": [with_idempotency_key]},
        ) as client:
            member = client.put(
                "/v1/members/demo-1", json={"organization_code": "demo", "full_name": "Демо"}
            )
            assert member.status_code == 201, member.text
            started = client.post(
                "/v1/members/demo-1/subscriptions",
                json={
                    "amount": {"value": "350.00", "currency": "RUB"},
                    "billing_day": 5,
                    "consent": {"text_version": "v1", "accepted_at": "2026-11-23T10:00:00Z"},
                    "return_url": "https://example.org/thanks",
                },
            )
            assert started.status_code == 201, started.text
            assert started.json()["confirmation_url"].startswith(
                f"http://127.0.0.1:{port + 1}/checkout/"
            )
        assert (tmp_path / "var" / "postgres").is_dir()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
