"""CORS: which browser origins may read the API's answers, and the headers that say so.

API Gateway answers preflights (OPTIONS) and its own errors with these; the functions add them to their
answers (functions/_http.py), and the local server to both (shared/local/server.py).
"""

from __future__ import annotations

# Request headers a browser may send (the preflight's Access-Control-Allow-Headers).
REQUEST_HEADERS = ("Authorization", "Content-Type", "X-Api-Key", "Idempotency-Key", "X-Request-Id")
# Response headers a browser script may read besides the CORS-safelisted ones.
EXPOSED_HEADERS = "Location, Retry-After, WWW-Authenticate"
METHODS = "DELETE,GET,HEAD,OPTIONS,PATCH,POST,PUT"
# The files bucket's CORS rule (infra/storage.py), which the local server's file URLs follow.
FILE_METHODS = "GET,HEAD,POST"
FILE_PREFLIGHT_MAX_AGE_S = 3000
PREFLIGHT_MAX_AGE_S = 3600


def origin_headers(origin: str | None, allowed: list[str]) -> dict[str, str]:
    """The headers that let `origin` read an answer; none when it is absent or not allowed."""
    if origin is None:
        return {}
    if "*" in allowed:
        headers = {"Access-Control-Allow-Origin": "*"}
    elif origin in allowed:
        headers = {"Access-Control-Allow-Origin": origin, "Vary": "Origin"}
    else:
        return {}
    headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
    return headers


def preflight_headers(origin: str | None, allowed: list[str]) -> dict[str, str]:
    """A preflight's answer headers (what API Gateway's default_cors_preflight_options answer)."""
    headers = origin_headers(origin, allowed)
    if headers:
        headers.update(
            {
                "Access-Control-Allow-Methods": METHODS,
                "Access-Control-Allow-Headers": ",".join(REQUEST_HEADERS),
                "Access-Control-Max-Age": str(PREFLIGHT_MAX_AGE_S),
            }
        )
    return headers


def file_preflight_headers(origin: str | None, allowed: list[str], requested_headers: str | None) -> dict[str, str]:
    """A preflight's answer headers for a presigned upload or download URL (the bucket allows every header)."""
    headers = origin_headers(origin, allowed)
    if headers:
        headers["Access-Control-Allow-Methods"] = FILE_METHODS
        if requested_headers:
            headers["Access-Control-Allow-Headers"] = requested_headers
        headers["Access-Control-Max-Age"] = str(FILE_PREFLIGHT_MAX_AGE_S)
    return headers
