"""The keys rate limits count a client under: the /64 and the /48 of an IPv6 client, an IPv4 address as itself."""

from __future__ import annotations

import pytest

from shared.auth.addresses import rate_limited_address, rate_limited_network


@pytest.mark.parametrize(
    ("address", "client", "network"),
    [
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64", "2001:db8:1::/48"),
        ("2001:DB8:1:ff00::1", "2001:db8:1:ff00::/64", "2001:db8:1::/48"),
        ("2001:db8:1:ffff:ffff:ffff:ffff:ffff", "2001:db8:1:ffff::/64", "2001:db8:1::/48"),
        ("198.51.100.7", "198.51.100.7", None),
        ("::ffff:198.51.100.7", "198.51.100.7", None),
        ("::ffff:c633:6407", "198.51.100.7", None),
        ("not an address", "not an address", None),
    ],
)
def test_client_is_counted_by_its_64_and_48_when_ipv6_and_by_its_address_alone_otherwise(address, client, network):
    assert rate_limited_address(address) == client
    assert rate_limited_network(address) == network


def test_every_64_of_a_48_shares_one_network_key_when_a_client_rotates_them():
    keys = {rate_limited_network(f"2001:db8:a:{n:x}::1") for n in range(0, 0x10000, 0x101)}
    assert keys == {"2001:db8:a::/48"}
    assert rate_limited_network("2001:db8:b::1") != rate_limited_network("2001:db8:a::1")
