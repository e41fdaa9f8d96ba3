"""The Payments stream's consumer: enrol, revoke and publish domain events, with partial failures.

Each record's old and new images become payments; the enrolment service decides what the
change means. A record that raises is reported as a batch item failure: Lambda retries from
it (bisecting), then hands its position to the retry queue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from coursepay.observability import logger, metrics
from coursepay.services.enrollment import EnrollmentOutcome
from coursepay.storage.stream_records import payment_change
from coursepay.wiring import enrollment_service

# A batch whose every record failed is reported like any other: Lambda retries from the first
# failed record (bisecting) either way, and the answer stays one shape for the local pump.
processor = BatchProcessor(
    event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
)


def handle_record(record: DynamoDBRecord) -> EnrollmentOutcome:
    before, after = payment_change(record.raw_event)
    outcome = enrollment_service().on_payment_changed(before, after)
    if not outcome.ignored:
        logger.info(
            "payment change handled",
            payment_id=outcome.payment_id,
            sequence_number=record.dynamodb.sequence_number if record.dynamodb else None,
            enrolment=outcome.enrolment,
            published=list(outcome.published),
        )
    return outcome


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
