"""The SSRF guard's classification: which addresses a download may never connect to.

These tests only classify addresses; nothing here opens a socket. (The guard's end-to-end
behaviour is tested against a loopback canary in tests/integration/test_worker_address_guard.py.)
"""

from __future__ import annotations

import pytest

from imagebatch.worker.address_guard import AddressGuard, BlockedAddressError, classify


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("::1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("172.31.255.255", "private"),
        ("192.168.1.1", "private"),
        ("fc00::1", "private"),
        ("fd12:3456::1", "private"),
        ("169.254.169.254", "link-local"),
        ("fe80::1", "link-local"),
        ("fec0::1", "link-local"),
        ("100.64.0.1", "CGNAT (100.64/10)"),
        ("100.127.255.254", "CGNAT (100.64/10)"),
        ("224.0.0.1", "multicast"),
        ("239.255.255.250", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "reserved"),
        ("240.0.0.1", "reserved"),
        ("192.0.2.1", "private"),
        ("198.18.0.1", "private"),
        ("2001:db8::1", "private"),
    ],
)
def test_non_public_addresses_are_refused_with_their_kind(address: str, why: str) -> None:
    assert classify(address) == why


@pytest.mark.parametrize(
    ("address", "inner"),
    [
        ("::ffff:127.0.0.1", "loopback"),
        ("::ffff:10.1.2.3", "private"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:100.64.1.1", "CGNAT (100.64/10)"),
        ("::127.0.0.1", "loopback"),
        ("64:ff9b::7f00:1", "loopback"),
        ("64:ff9b::a9fe:a9fe", "link-local"),
        ("64:ff9b:1::a00:1", "private"),
        ("2002:7f00:1::", "loopback"),
        ("2002:c0a8:101::1", "private"),
        ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),
    ],
)
def test_ipv4_embedded_in_ipv6_is_judged_by_the_ipv4_inside(address: str, inner: str) -> None:
    assert classify(address) == f"IPv4-embedded IPv6 ({inner})"


@pytest.mark.parametrize(
    "address",
    ["93.184.216.34", "8.8.8.8", "1.1.1.1", "100.128.0.1", "2606:4700::1111", "::ffff:8.8.8.8"],
)
def test_public_addresses_pass(address: str) -> None:
    assert classify(address) is None


def test_a_scoped_ipv6_address_is_refused() -> None:
    assert AddressGuard().refusal("fe80::1%eth0") is not None


def test_allow_private_sources_allows_everything() -> None:
    guard = AddressGuard(allow_private=True)
    assert guard.refusal("127.0.0.1") is None
    assert guard.refusal("10.0.0.1") is None


def test_an_allowed_network_is_exempt_but_its_neighbours_are_not() -> None:
    guard = AddressGuard.from_settings(False, ["10.20.0.0/16", "127.0.0.3/32"])
    assert guard.refusal("10.20.3.4") is None
    assert guard.refusal("127.0.0.3") is None
    assert guard.refusal("10.21.0.1") == "private"
    assert guard.refusal("127.0.0.1") == "loopback"


def test_the_socket_factory_refuses_before_creating_a_socket() -> None:
    guard = AddressGuard()
    with pytest.raises(BlockedAddressError, match="loopback"):
        guard.socket_factory((2, 1, 6, "", ("127.0.0.1", 80)))
