"""One pre-charge notice setting; the old spelling is honoured only when the new one is unset."""

from __future__ import annotations

import pytest

from core.settings import Settings


def test_the_notice_setting_defaults_to_two_days(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VZNOS_PRECHARGE_NOTICE_DAYS", raising=False)
    monkeypatch.delenv("VZNOS_PRE_CHARGE_NOTICE_DAYS", raising=False)
    settings = Settings()
    assert settings.precharge_notice_days == 2
    assert settings.pre_charge_notice_days is None


def test_the_deprecated_spelling_is_read_rounded_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VZNOS_PRECHARGE_NOTICE_DAYS", raising=False)
    monkeypatch.setenv("VZNOS_PRE_CHARGE_NOTICE_DAYS", "2.5")
    assert Settings().precharge_notice_days == 3


def test_the_new_spelling_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VZNOS_PRECHARGE_NOTICE_DAYS", "1")
    monkeypatch.setenv("VZNOS_PRE_CHARGE_NOTICE_DAYS", "5")
    assert Settings().precharge_notice_days == 1
