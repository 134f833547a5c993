"""A link that a client shows to people (an avatar, a template's icon).

Only an http or https URL with a host, or a path on the client's own site (`/icons/planner.svg`), is stored, so
that a `javascript:`, `data:` or `vbscript:` URL saved by one user (or one admin) never reaches a page that
renders it as a link or an image for someone else.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator, StringConstraints


def _is_http_link(value: str) -> bool:
    if any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return False
    try:
        parts = urlsplit(value)
        host = parts.hostname
    except ValueError:  # a malformed host ("https://[::1")
        return False
    if parts.scheme:
        return parts.scheme.lower() in ("http", "https") and bool(host)
    return value.startswith("/")  # "/a.png" on the client's own site, or "//cdn.example.com/a.png"


def _http_link(value: str) -> str:
    if not _is_http_link(value):
        raise ValueError("must be an http or https URL (https://cdn.example.com/a.png) or a path (/icons/a.svg)")
    return value


WebUrl = Annotated[str, StringConstraints(max_length=2048), AfterValidator(_http_link)]
