"""Bounds of the AWS calls a request waits on (S3 for files, Secrets Manager for keys and credentials).

botocore's defaults (60 s to connect, 60 s to read, retried) let one unanswered call outlast a route function's
29 s, and API Gateway would answer a bare 504. Bounded, every attempt together stays well inside it, and a service
that does not answer is the handler's own answer (a 503 with Retry-After). `max_attempts` would count retries
(one attempt more than it says): `total_max_attempts` counts them all.
"""

from __future__ import annotations

from typing import Any

REQUEST_CALL_OPTIONS: dict[str, Any] = {
    "connect_timeout": 2,
    "read_timeout": 5,
    "retries": {"total_max_attempts": 3, "mode": "standard"},
}


def bounded_config(**extra: Any) -> Any:
    """A botocore Config with REQUEST_CALL_OPTIONS (and `extra`), its retries copied: botocore rewrites them in
    place."""
    from botocore.config import Config

    return Config(**{**REQUEST_CALL_OPTIONS, "retries": dict(REQUEST_CALL_OPTIONS["retries"]), **extra})
