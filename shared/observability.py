"""The one Logger, Tracer and Metrics of the service, configured from Powertools environment variables.

The Tracer is built on first use: creating it imports the X-Ray SDK, which imports botocore (about a
second of cold start). Functions that never trace (the authorizer) never pay for it.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer

logger = Logger(service="confab")
metrics = Metrics(namespace="Confab", service="confab")


@cache
def get_tracer() -> Tracer:
    """The service's Tracer, created on first use."""
    return Tracer(service="confab")


def __getattr__(name: str) -> Any:
    # `from shared.observability import tracer` keeps working, and builds the Tracer only then.
    if name == "tracer":
        return get_tracer()
    raise AttributeError(name)
