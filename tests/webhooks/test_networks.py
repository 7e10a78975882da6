"""The sender allow-list as pure functions: exact network boundaries, IPv4-mapped IPv6, garbage,
the X-Forwarded-For walk, and our copy of the SDK's list staying equal to the SDK's."""

from __future__ import annotations

import ipaddress

import pytest

from core.networks import (
    LOOPBACK_NETWORKS,
    YOOKASSA_NOTIFICATION_NETWORKS,
    address_in,
    client_address,
    parse_address,
    parse_networks,
)
from core.settings import Settings
from webhooks.inbound.policy import InboundPolicy

PUBLISHED = parse_networks(YOOKASSA_NOTIFICATION_NETWORKS)
PROXY = "10.1.2.3"
PROXIES = parse_networks("10.1.2.0/24, fd00::/8")


def test_our_list_equals_the_sdks() -> None:
    # Tests may import the SDK; the application may not (import-linter).
    from yookassa.domain.common.security_helper import SecurityHelper

    assert list(YOOKASSA_NOTIFICATION_NETWORKS) == SecurityHelper.YOOKASSA_NETWORKS
    sdk = SecurityHelper()
    for network in PUBLISHED:
        for address in (network.network_address, network.broadcast_address):
            assert sdk.is_ip_trusted(str(address)), address


BOUNDARIES = [
    # 185.71.76.0/27 and 185.71.77.0/27
    ("185.71.76.0", True),
    ("185.71.76.31", True),
    ("185.71.76.32", False),
    ("185.71.75.255", False),
    ("185.71.77.0", True),
    ("185.71.77.31", True),
    ("185.71.77.32", False),
    # 77.75.153.0/25
    ("77.75.153.0", True),
    ("77.75.153.127", True),
    ("77.75.153.128", False),
    ("77.75.152.255", False),
    # 77.75.154.128/25
    ("77.75.154.127", False),
    ("77.75.154.128", True),
    ("77.75.154.255", True),
    ("77.75.155.0", False),
    # single hosts 77.75.156.11 and 77.75.156.35
    ("77.75.156.10", False),
    ("77.75.156.11", True),
    ("77.75.156.12", False),
    ("77.75.156.34", False),
    ("77.75.156.35", True),
    ("77.75.156.36", False),
    # IPv6 /64s: first and last address in, the neighbours out
    ("2a02:5180:0:1509::", True),
    ("2a02:5180:0:1509:ffff:ffff:ffff:ffff", True),
    ("2a02:5180:0:1508:ffff:ffff:ffff:ffff", False),
    ("2a02:5180:0:150a::", False),
    ("2a02:5180:0:2655::1", True),
    ("2a02:5180:0:2655:ffff:ffff:ffff:ffff", True),
    ("2a02:5180:0:2656::", False),
    ("2a02:5180:0:1533::", True),
    ("2a02:5180:0:1533:ffff:ffff:ffff:ffff", True),
    ("2a02:5180:0:1532:ffff:ffff:ffff:ffff", False),
    ("2a02:5180:0:2669::", True),
    ("2a02:5180:0:2669:ffff:ffff:ffff:ffff", True),
    ("2a02:5180:0:266a::", False),
    ("2a02:5180::1", False),  # the older /32 is not the default
    ("2A02:5180:0:1509::ABCD", True),  # case does not matter
    # IPv4-mapped IPv6 is judged by its IPv4 address
    ("::ffff:185.71.76.5", True),
    ("::ffff:185.71.76.32", False),
    ("::ffff:77.75.156.11", True),
    ("::ffff:b947:4c05", True),  # 185.71.76.5 written in hex
    ("::185.71.76.5", False),  # IPv4-compatible (deprecated) is not IPv4-mapped
    ("64:ff9b::b947:4c05", False),  # NAT64 is somebody else's translator
    # not our networks at all
    ("127.0.0.1", False),
    ("::1", False),
    ("0.0.0.0", False),
    ("::", False),
    ("10.0.0.1", False),
    ("255.255.255.255", False),
    # garbage
    ("", False),
    ("testclient", False),
    ("185.71.76", False),
    ("185.71.76.5.1", False),
    ("185.71.76.256", False),
    ("185.71.76.5/32", False),
    ("185.71.76.5:443", False),
    ("[2a02:5180:0:1509::1]", False),
    ("0x b947", False),
    ("185.71.76.05", False),  # leading zeros are refused by ipaddress (octal ambiguity)
    ("185.71.76.5\x00", False),
    ("unknown", False),
]


@pytest.mark.parametrize(("address", "allowed"), BOUNDARIES, ids=[a for a, _ in BOUNDARIES])
def test_allow_list_boundaries_are_exact(address: str, allowed: bool) -> None:
    assert address_in(parse_address(address), PUBLISHED) is allowed
    assert InboundPolicy().judge_sender(address, []).allowed is allowed


def test_ipv4_mapped_address_is_its_ipv4_address() -> None:
    assert parse_address("::ffff:185.71.76.5") == ipaddress.IPv4Address("185.71.76.5")
    assert parse_address(None) is None
    assert parse_address(" 185.71.76.5 ") == ipaddress.IPv4Address("185.71.76.5")


def test_a_policy_without_networks_admits_nobody() -> None:
    assert not InboundPolicy(allowed_networks=()).judge_sender("185.71.76.5", []).allowed


def test_from_anywhere_admits_anyone_and_still_reports_the_address() -> None:
    verdict = InboundPolicy(from_anywhere=True).judge_sender("203.0.113.9", [])
    assert verdict.allowed
    assert verdict.address == ipaddress.IPv4Address("203.0.113.9")


WALKS = [
    # (peer, X-Forwarded-For values, expected client)
    pytest.param("185.71.76.5", [], "185.71.76.5", id="direct"),
    pytest.param("203.0.113.9", ["185.71.76.5"], "203.0.113.9", id="spoof-untrusted-peer"),
    pytest.param(PROXY, ["185.71.76.5"], "185.71.76.5", id="through-proxy"),
    pytest.param(PROXY, ["185.71.76.5, 10.1.2.9"], "185.71.76.5", id="two-proxies"),
    pytest.param(PROXY, ["185.71.76.5", "10.1.2.9"], "185.71.76.5", id="two-headers"),
    pytest.param(PROXY, ["185.71.76.5, 203.0.113.9"], "203.0.113.9", id="forged-left-part"),
    pytest.param(PROXY, ["203.0.113.9, 185.71.76.5"], "185.71.76.5", id="left-part-ignored"),
    pytest.param(PROXY, [], PROXY, id="proxy-without-header"),
    pytest.param(PROXY, ["10.1.2.7"], "10.1.2.7", id="all-trusted-leftmost"),
    pytest.param(PROXY, ["garbage"], None, id="garbage-hop"),
    pytest.param(PROXY, ["185.71.76.5, "], None, id="empty-hop"),
    pytest.param("fd00::1", ["::ffff:185.71.76.5"], "185.71.76.5", id="ipv6-proxy-mapped"),
    pytest.param("::ffff:10.1.2.3", ["185.71.76.5"], "185.71.76.5", id="mapped-proxy"),
    pytest.param(None, ["185.71.76.5"], None, id="no-peer"),
    pytest.param("testclient", ["185.71.76.5"], None, id="garbage-peer"),
]


@pytest.mark.parametrize(("peer", "forwarded_for", "expected"), WALKS)
def test_forwarded_for_is_walked_from_the_right_through_trusted_proxies_only(
    peer: str | None, forwarded_for: list[str], expected: str | None
) -> None:
    found = client_address(peer, forwarded_for, PROXIES)
    assert found == (ipaddress.ip_address(expected) if expected else None)


def test_with_no_trusted_proxies_the_header_is_never_believed() -> None:
    for peer in ("127.0.0.1", "::1", PROXY):
        assert client_address(peer, ["185.71.76.5"], ()) == ipaddress.ip_address(peer)
    assert not InboundPolicy().judge_sender("127.0.0.1", ["185.71.76.5"]).allowed


def test_settings_parse_comma_separated_cidrs(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().yookassa_notification_networks == PUBLISHED
    assert Settings().trusted_proxies == ()
    assert Settings().yookassa_notifications_from_anywhere is False
    assert Settings().webhook_max_body_bytes == 64 * 1024
    monkeypatch.setenv("VZNOS_YOOKASSA_NOTIFICATION_NETWORKS", "2a02:5180::/32, 185.71.76.0/27")
    monkeypatch.setenv("VZNOS_TRUSTED_PROXIES", "10.1.2.0/24,::1")
    monkeypatch.setenv("VZNOS_WEBHOOK_MAX_BODY_BYTES", "1024")
    settings = Settings()
    assert settings.yookassa_notification_networks == parse_networks(
        ["2a02:5180::/32", "185.71.76.0/27"]
    )
    assert settings.trusted_proxies == parse_networks(["10.1.2.0/24", "::1/128"])
    policy = InboundPolicy.from_settings(settings)
    assert policy.max_body_bytes == 1024
    assert policy.judge_sender("::1", ["2a02:5180:1::1"]).allowed


@pytest.mark.parametrize("bad", ["185.71.76.5/27", "not-a-network", "10.0.0.0/33"])
def test_a_wrong_network_setting_stops_start_up(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    monkeypatch.setenv("VZNOS_TRUSTED_PROXIES", bad)
    with pytest.raises(ValueError, match="trusted_proxies"):
        Settings()


def test_loopback_networks_cover_both_families() -> None:
    loopback = parse_networks(LOOPBACK_NETWORKS)
    assert address_in(parse_address("127.0.0.1"), loopback)
    assert address_in(parse_address("::1"), loopback)
    assert address_in(parse_address("::ffff:127.0.0.1"), loopback)
