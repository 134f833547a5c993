"""SQS consumer of usage events: parse every record, report the malformed ones, apply the rest in one transaction.

Exactly-once totals come from the database (event_id is unique), not from SQS: a redelivered or
redriven message, whatever its message id, finds its event already recorded and changes nothing.
If the transaction fails the whole invocation fails and SQS redelivers the batch, which is safe; if the
database refuses a value, the events are applied one at a time and only the refused records are reported.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.bootstrap import container
from shared.events.usage import UsageEvent
from shared.observability import logger, metrics, tracer
from shared.services.usage import record_usage

# A batch where every record is malformed is still answered with partial failures (they go to the DLQ).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


def parse_record(record: SQSRecord) -> UsageEvent:
    """The event in one message; a ValidationError here marks only this record as failed."""
    return UsageEvent.model_validate_json(record.body)


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler(capture_response=False)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") or []
    with processor(records=records, handler=parse_record, lambda_context=context):
        processed = processor.process()
    parsed = [(result, record) for status, result, record in processed if status == "success"]
    outcome = record_usage(container().db, [event for event, _ in parsed])
    # Records the database refused are reported like malformed ones: SQS retries them alone, then the DLQ.
    failures = [
        *processor.response()["batchItemFailures"],
        *({"itemIdentifier": record["messageId"]} for event, record in parsed if event.event_id in outcome.refused),
    ]
    failed = len(failures)
    metrics.add_metric(name="UsageEventsRecorded", unit=MetricUnit.Count, value=outcome.inserted)
    metrics.add_metric(name="UsageEventsDuplicate", unit=MetricUnit.Count, value=outcome.duplicates)
    metrics.add_metric(name="UsageEventsMalformed", unit=MetricUnit.Count, value=failed)
    logger.info(
        "usage batch applied",
        extra={
            "records": len(records),
            "inserted": outcome.inserted,
            "duplicates": outcome.duplicates,
            "failed": failed,
        },
    )
    return {"batchItemFailures": failures}
