"""Envelope encryption: sealing, data keys, key ids in ciphertexts, row binding, rotation."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.crypto import (
    CryptoError,
    DataKey,
    KeyConfigurationError,
    KeyRing,
    MasterKey,
    column_aad,
    field_key_version,
    generate_index_key,
    parse_index_key,
    parse_master_keys,
)
from core.settings import Settings
from vznos.keys import DEV_KEYS_FILE, build_keyring

OLD = MasterKey.generate("k1")
NEW = MasterKey.generate("k2")
INDEX = parse_index_key(generate_index_key())


def ring(*keys: MasterKey) -> KeyRing:
    return KeyRing(keys, INDEX)


@given(st.text(max_size=300))
def test_seal_then_open_returns_the_plaintext(plaintext: str) -> None:
    keyring = ring(OLD)
    aad = column_aad("shops", "secret_key", "1")
    token = keyring.seal(plaintext, aad)
    assert keyring.open(token, aad) == plaintext


def test_a_sealed_token_names_its_key_and_hides_the_secret() -> None:
    token = ring(OLD).seal("live_supersecret", "shops.secret_key:1")
    assert token.startswith("vzk1.k1.")
    assert "supersecret" not in token
    # A fresh nonce every time: equal secrets do not give equal ciphertexts.
    assert ring(OLD).seal("live_supersecret", "shops.secret_key:1") != token


def test_a_sealed_token_moved_to_another_row_fails_to_open() -> None:
    keyring = ring(OLD)
    token = keyring.seal("whsec_abc", column_aad("webhook_endpoints", "secret", "row-1"))
    with pytest.raises(CryptoError):
        keyring.open(token, column_aad("webhook_endpoints", "secret", "row-2"))
    with pytest.raises(CryptoError):
        keyring.open(token, column_aad("webhook_endpoints", "previous_secret", "row-1"))


def test_a_tampered_token_fails_to_open() -> None:
    keyring = ring(OLD)
    token = keyring.seal("whsec_abc", "a")
    scheme, key_id, body = token.split(".")
    flipped = body[:-2] + ("A" if body[-2] != "A" else "B") + body[-1]
    tampered = f"{scheme}.{key_id}.{flipped}"
    for bad in (tampered, "vzk1.k1", "plaintext", "vzk1.k1.!!!", "vzk1.k1.AA"):
        with pytest.raises(CryptoError):
            keyring.open(bad, "a")


def test_rotation_reseals_under_the_newest_key_and_the_old_key_can_go() -> None:
    before = ring(OLD).seal("secret", "a")
    both = ring(NEW, OLD)
    assert both.open(before, "a") == "secret"
    assert not both.is_current(before)
    after = both.reseal(before, "a")
    assert both.sealed_key_id(after) == "k2"
    assert both.reseal(after, "a") == after  # already current: untouched
    assert both.unused(["k2"]) == ("k1",)
    assert ring(NEW).open(after, "a") == "secret"
    with pytest.raises(CryptoError, match="'k1' is not configured"):
        ring(NEW).open(before, "a")


def test_data_keys_are_wrapped_bound_to_their_owner_and_version() -> None:
    keyring = ring(OLD)
    dek = DataKey.generate(version=3)
    wrapped = keyring.wrap(dek, "members:m-1")
    assert keyring.unwrap(wrapped, "members:m-1", 3) == dek
    with pytest.raises(CryptoError):
        keyring.unwrap(wrapped, "members:m-2", 3)
    with pytest.raises(CryptoError):
        keyring.unwrap(wrapped, "members:m-1", 4)
    rewrapped = ring(NEW, OLD).rewrap(wrapped, "members:m-1", 3)
    assert ring(NEW).unwrap(rewrapped, "members:m-1", 3) == dek


def test_field_ciphertexts_carry_the_data_key_version_and_bind_the_row() -> None:
    dek = DataKey.generate(version=2)
    token = dek.encrypt("anna@example.org", "members.email:m-1")
    assert token.startswith("vzd1.2.") and field_key_version(token) == 2
    assert dek.decrypt(token, "members.email:m-1") == "anna@example.org"
    with pytest.raises(CryptoError):
        dek.decrypt(token, "members.email:m-2")
    with pytest.raises(CryptoError):
        DataKey.generate(version=2).decrypt(token, "members.email:m-1")
    with pytest.raises(CryptoError, match="version 2, not 3"):
        DataKey(3, dek.material).decrypt(token, "members.email:m-1")


def test_blind_index_is_keyed_and_separates_purposes() -> None:
    keyring = ring(OLD)
    email = keyring.blind_index("email", "anna@example.org")
    assert email == ring(NEW).blind_index("email", "anna@example.org")  # master keys don't matter
    assert email != keyring.blind_index("phone", "anna@example.org")
    other = KeyRing([OLD], parse_index_key(generate_index_key()))
    assert email != other.blind_index("email", "anna@example.org")
    assert "anna" not in email


def test_master_keys_parse_from_settings_newest_first() -> None:
    keys = parse_master_keys(f" {NEW.export()} , {OLD.export()} ")
    assert [k.key_id for k in keys] == ["k2", "k1"]
    assert KeyRing(keys, INDEX).current_key_id == "k2"
    assert "material" not in repr(keys) and NEW.export().split(":")[1] not in repr(keys)
    for bad in ("", "k1", "k1:short", "bad id:" + NEW.export().split(":")[1]):
        with pytest.raises(KeyConfigurationError):
            parse_master_keys(bad)
    with pytest.raises(KeyConfigurationError, match="unique"):
        parse_master_keys(f"{OLD.export()},{OLD.export()}")
    with pytest.raises(KeyConfigurationError):
        parse_index_key("c2hvcnQ")


def test_settings_keys_win_over_the_dev_file(tmp_path: Path) -> None:
    settings = Settings(
        database_url=None,
        data_dir=tmp_path,
        master_key=f"{NEW.export()},{OLD.export()}",
        blind_index_key=generate_index_key(),
    )
    assert build_keyring(settings).key_ids == ("k2", "k1")
    assert not (tmp_path / DEV_KEYS_FILE).exists()


def test_without_settings_a_dev_key_pair_is_generated_once_and_kept(tmp_path: Path) -> None:
    settings = Settings(database_url=None, data_dir=tmp_path, master_key=None, blind_index_key=None)
    first = build_keyring(settings)
    token = first.seal("secret", "a")
    path = tmp_path / DEV_KEYS_FILE
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = build_keyring(settings)  # a restart reads the same keys back
    assert again.open(token, "a") == "secret"
    assert again.blind_index("email", "x") == first.blind_index("email", "x")
