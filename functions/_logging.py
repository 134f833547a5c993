"""The logging context of a Lambda invocation; light to import (the authorizer uses it, and keeps cold starts short)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging.lambda_context import build_lambda_context_model

from shared.observability import logger


class LogContext:
    """Per invocation, what `logger.inject_lambda_context(correlation_id_path=API_GATEWAY_REST, clear_state=True)`
    sets: the Lambda context keys, cold_start, the API Gateway request id as correlation_id, earlier requests'
    keys cleared; without its JMESPath lookup, which cost more than the rest of it together. The event is never
    logged. One per Lambda entry point (cold_start is true for its first invocation only)."""

    def __init__(self) -> None:
        self._cold = True

    def __call__(self, event: dict[str, Any], context: Any) -> None:
        logger.structure_logs(cold_start=self._cold, **build_lambda_context_model(context).__dict__)
        self._cold = False
        request_context = event.get("requestContext")
        logger.set_correlation_id(request_context.get("requestId") if isinstance(request_context, dict) else None)
