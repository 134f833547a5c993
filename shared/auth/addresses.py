"""The key a client's requests are counted under by the rate limits (logins, anonymous conversations)."""

from __future__ import annotations

import ipaddress


def rate_limited_address(address: str) -> str:
    """An IPv6 client holds a whole /64 and picks any address in it, so it is counted by that network; an
    IPv4-mapped IPv6 address counts as its IPv4 address; anything that is not an address counts as itself."""
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return str(parsed.ipv4_mapped)
        return str(ipaddress.IPv6Network((parsed, 64), strict=False))
    return str(parsed)
