"""The secret that signs member links: from settings, or generated once per data directory and
kept (owner-only), so a restart keeps issued links working."""

from __future__ import annotations

import stat
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from core.clock import ManualClock
from core.settings import Settings
from payments.pages.links import LinkInvalid, LinkPurpose, LinkSigner, MemberLink
from vznos.keys import LINK_SECRET_FILE, link_secret


def test_a_configured_secret_wins(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, link_secret="x" * 40)
    assert link_secret(settings) == "x" * 40
    assert not (tmp_path / LINK_SECRET_FILE).exists()


def test_a_generated_secret_is_kept_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "var")
    first = link_secret(settings)
    assert len(first) >= 32
    assert link_secret(settings) == first  # a restart reads the same one
    mode = stat.S_IMODE((tmp_path / "var" / LINK_SECRET_FILE).stat().st_mode)
    assert mode == 0o600
    assert [p.name for p in (tmp_path / "var").iterdir()] == [LINK_SECRET_FILE]


def test_a_link_signed_with_another_secret_is_refused(tmp_path: Path) -> None:
    clock = ManualClock(datetime(2026, 11, 23, tzinfo=UTC))
    link = MemberLink(
        member_id=uuid.uuid4(),
        purpose=LinkPurpose.MANAGE,
        expires_at=clock.now() + timedelta(hours=1),
    )
    token = LinkSigner("a" * 40, clock).issue(link)
    assert LinkSigner("a" * 40, clock).read(token).member_id == link.member_id
    with pytest.raises(LinkInvalid):
        LinkSigner("b" * 40, clock).read(token)
