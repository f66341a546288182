"""SSRF address checks: IPv6 forms that embed an IPv4 address are judged by that address."""

from __future__ import annotations

import ipaddress

import pytest

from modelserve_orchestrator.webhooks import _blocked, embedded_ipv4


@pytest.mark.parametrize(
    ("addr", "v4"),
    [
        ("2002:a9fe:a9fe::1", "169.254.169.254"),  # 6to4
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64 well-known prefix
        ("64:ff9b:1::a9fe:a9fe", "169.254.169.254"),  # NAT64 local-use prefix
        ("::a9fe:a9fe", "169.254.169.254"),  # IPv4-compatible
        ("::ffff:127.0.0.1", "127.0.0.1"),  # IPv4-mapped
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe", "10.0.0.1"),  # Teredo client
    ],
)
def test_private_ipv4_inside_ipv6_is_blocked(addr: str, v4: str) -> None:
    ip = ipaddress.IPv6Address(addr)
    assert embedded_ipv4(ip) == ipaddress.IPv4Address(v4)
    assert _blocked(ip)


@pytest.mark.parametrize("addr", ["2002:808:808::1", "64:ff9b::808:808", "2606:4700::1111", "8.8.8.8"])
def test_public_addresses_pass(addr: str) -> None:
    assert not _blocked(ipaddress.ip_address(addr))
