"""Which endpoint URLs Confab may call: https on public addresses only (no SSRF into the VPC or metadata)."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from urllib.parse import urlsplit

Resolver = Callable[[str, int], list[str]]


class EndpointRefused(ValueError):
    """The URL is not one Confab will call; the message says why (it never echoes the URL)."""


def resolve_host(host: str, port: int) -> list[str]:
    """Every address the host resolves to (A and AAAA), in the resolver's order of preference (which puts the
    families this machine can reach first)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def is_public_address(address: str) -> bool:
    """Whether an IP is globally routable: not loopback, link-local, private, reserved, multicast or unspecified."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        # IPv6 forms that carry an IPv4 address (mapped, 6to4, Teredo's server and client) are judged by it.
        embedded = [ip.ipv4_mapped, ip.sixtofour, *(ip.teredo or ())]
        if any(v4 is not None and not is_public_address(str(v4)) for v4 in embedded):
            return False
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    return not (
        ip.is_loopback
        or ip.is_link_local
        or ip.is_private
        or ip.is_reserved
        or ip.is_multicast
        or ip.is_unspecified
        or not ip.is_global
    )


def check_endpoint_url(url: str, *, resolver: Resolver = resolve_host) -> list[str]:
    """The public addresses an https URL reaches; EndpointRefused for anything else."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port or 443
    except ValueError:
        raise EndpointRefused("The endpoint URL is malformed.") from None
    if parts.scheme != "https":
        raise EndpointRefused("The endpoint URL must use https.")
    if not parts.hostname:
        raise EndpointRefused("The endpoint URL has no host.")
    if parts.username or parts.password:
        raise EndpointRefused("The endpoint URL may not carry credentials.")
    host = parts.hostname
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if host.rstrip(".").lower() in ("localhost",) or host.rstrip(".").lower().endswith(".localhost"):
            raise EndpointRefused("The endpoint URL may not point at loopback.") from None
        try:
            addresses = resolver(host, port)
        except (OSError, UnicodeError):
            # UnicodeError: a name IDNA cannot encode (an empty label, as in "a..b", or one over 63 characters)
            # fails in getaddrinfo before any lookup; no resolver could answer it either.
            raise EndpointRefused("The endpoint host does not resolve.") from None
    if not addresses:
        raise EndpointRefused("The endpoint host does not resolve.")
    if not all(is_public_address(a) for a in addresses):
        raise EndpointRefused("The endpoint URL may not point at loopback, link-local or private addresses.")
    return addresses
