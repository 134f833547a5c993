"""EventBridge-scheduled maintenance: purge expired rows in bounded batches, single-flight, with metrics."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import container
from shared.observability import logger, metrics, tracer
from shared.services.maintenance import run_maintenance

# Stop starting batches this long before Lambda's own timeout: a batch is short, the margin is generous.
TIMEOUT_MARGIN_S = 30.0


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    deps = container()
    remaining_s = context.get_remaining_time_in_millis() / 1000 - TIMEOUT_MARGIN_S
    budget = max(1.0, min(deps.settings.maintenance_time_budget_s, remaining_s))
    result = run_maintenance(deps.db, deps.settings, budget_s=budget)
    for job, count in result.deleted.items():
        metrics.add_metric(name=f"Purged_{job}", unit=MetricUnit.Count, value=count)
    metrics.add_metric(name="MaintenanceBusy", unit=MetricUnit.Count, value=int(result.status == "busy"))
    metrics.add_metric(name="MaintenancePartial", unit=MetricUnit.Count, value=int(result.status == "partial"))
    metrics.add_metric(name="MaintenanceJobsFailed", unit=MetricUnit.Count, value=len(result.failed))
    if result.failed:
        # After the other jobs ran and the metrics above are flushed: a failed invocation is what the Errors
        # alarm watches (infra/monitoring.py).
        raise RuntimeError(f"maintenance jobs failed: {', '.join(result.failed)}")
    return {
        "status": result.status,
        "deleted": result.deleted,
        "batches": result.batches,
        "run_id": result.run_id,
        "source": event.get("source"),
    }
