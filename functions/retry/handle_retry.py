"""The retry queue's consumer: re-applies queued callbacks with backoff and partial failures."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from coursepay.observability import count, logger, metrics
from coursepay.services.backoff import redelivery_delay
from coursepay.services.callbacks import RETRY_MESSAGE_KIND, CallbackResult
from coursepay.services.enrollment import is_enrolment_retry
from coursepay.wiring import callback_service, enrollment_service, retry_queue

# Every failure is reported per message, even when the whole batch fails, so each keeps
# the backoff set on it rather than the whole batch coming back at once.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


class RetryNotDone(RuntimeError):
    """The message could not be applied this time; SQS delivers it again, or dead-letters it."""


def handle_message(record: SQSRecord) -> None:
    receive_count = int(record.attributes.approximate_receive_count or 1)
    try:
        _apply(record)
    except Exception:
        delay = redelivery_delay(receive_count)
        logger.exception(
            "retry failed", message_id=record.message_id, receive_count=receive_count, delay=delay
        )
        count("RetryFailed")
        try:
            retry_queue().delay_redelivery(record.receipt_handle, delay)
        except Exception:
            logger.exception("could not set the redelivery delay", message_id=record.message_id)
        raise


def _apply(record: SQSRecord) -> None:
    message = json.loads(record.body)
    if is_enrolment_retry(message):
        # Lambda's on-failure record for the Payments stream, or an "enrolment" message.
        outcomes = enrollment_service().retry(message)
        count("RetryApplied")
        logger.info(
            "enrolment retry applied",
            message_id=record.message_id,
            payment_ids=[o.payment_id for o in outcomes],
        )
        return
    kind = message.get("kind") if isinstance(message, dict) else None
    if kind != RETRY_MESSAGE_KIND:
        raise RetryNotDone(f"unknown retry message kind {kind!r}")
    outcome = callback_service().reprocess(message)
    # A queued callback that cannot be applied now (storage busy) or ever (its secret was
    # rotated away, say) is redelivered and, in the end, dead-lettered: never dropped.
    if outcome.is_error or outcome.result is CallbackResult.QUEUED:
        raise RetryNotDone(f"{outcome.result}: {outcome.message}")
    count("RetryApplied")
    logger.info(
        "queued callback applied",
        message_id=record.message_id,
        result=str(outcome.result),
        payment_id=outcome.payment_id,
    )


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=handle_message, processor=processor, context=context
    )
