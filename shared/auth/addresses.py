"""The keys a client's requests are counted under by the rate limits (logins, anonymous conversations)."""

from __future__ import annotations

import ipaddress

# An IPv6 client picks any address in the /64 it is given; a customer routed a /56 or /48 picks any of its 256
# or 65536 /64s, so the /48 is counted as well, with a larger budget (docs/auth.md, "Brute force").
CLIENT_PREFIX = 64
NETWORK_PREFIX = 48


def _parse(address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The address as it is counted: an IPv4-mapped IPv6 address as its IPv4 address; None if not an address."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return None
    if isinstance(parsed, ipaddress.IPv6Address) and parsed.ipv4_mapped is not None:
        return parsed.ipv4_mapped
    return parsed


def rate_limited_address(address: str) -> str:
    """An IPv6 client holds a whole /64 and picks any address in it, so it is counted by that network; an
    IPv4-mapped IPv6 address counts as its IPv4 address; anything that is not an address counts as itself."""
    parsed = _parse(address)
    if parsed is None:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((parsed, CLIENT_PREFIX), strict=False))
    return str(parsed)


def rate_limited_network(address: str) -> str | None:
    """The wider network an IPv6 client is counted under as well (its /48); None for IPv4 (an IPv4-mapped IPv6
    address included: those all share ::ffff:0:0/96) and for anything that is not an address."""
    parsed = _parse(address)
    if not isinstance(parsed, ipaddress.IPv6Address):
        return None
    return str(ipaddress.IPv6Network((parsed, NETWORK_PREFIX), strict=False))
