"""Secrets Manager reads: cached for five minutes (so a rotation lands), through a client whose attempts fit in a
function's time.

Powertools' default provider uses botocore's defaults (60 s to connect, 60 s to read, retried): a Secrets Manager
that does not answer at a cold start would hold the request until the function timed out, and API Gateway would
answer a bare 504. Bounded, the read fails within about 25 s and the request is answered by its handler.
"""

from __future__ import annotations

from functools import cache
from typing import Any

CACHE_S = 300


@cache
def _provider() -> Any:
    # Imported here: boto3 is paid for only by containers that read a secret.
    from aws_lambda_powertools.utilities.parameters import SecretsProvider

    from shared.aws_calls import bounded_config

    return SecretsProvider(boto_config=bounded_config())


def secret_text(arn: str) -> str:
    """A secret's string value."""
    return str(_provider().get(arn, max_age=CACHE_S))


def secret_json(arn: str) -> dict[str, Any]:
    """A secret's value read as a JSON object (an RDS secret's username, password, host...)."""
    value: dict[str, Any] = _provider().get(arn, max_age=CACHE_S, transform="json")
    return value
