"""The retry function's enrolment path against moto: Lambda's on-failure records and reconciling."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from botocore.stub import Stubber

from coursepay.domain.payment import Payment, PaymentStatus
from coursepay.domain.records import EnrollmentStatus
from coursepay.domain.state_machine import decide
from coursepay.services.enrollment import enrolment_retry_message
from coursepay.storage.catalog import CourseRepository, EnrollmentRepository
from coursepay.storage.errors import TransientStorageError
from coursepay.storage.payments import PaymentRepository
from coursepay.storage.queue import SqsRetryQueue
from coursepay.storage.stream_records import PaymentStreamReader, StreamRecordsUnavailable
from devstack.pumps import lambda_sqs_record
from functions.retry import handle_retry
from tests.support.aws import REGION, AwsStack, FaultyClient, Store
from tests.support.builders import (
    AMOUNT_CENTS,
    COURSE_ID,
    NOW,
    SEQUENCE_NUMBER,
    SHARD_ID,
    STREAM_ARN,
    STUDENT_ID,
    a_payment,
    refunded_fact,
    success_fact,
)
from tests.support.enrollment import (
    DomainEventCapture,
    every_stream_record,
    fresh_enrolment_containers,
    schema_errors,
)
from tests.support.events import lambda_context

EVENTS = Path(__file__).resolve().parents[1] / "events"
S = PaymentStatus


@dataclass
class RetryFunction:
    """The retry function in its template environment, fed from the real retry queue."""

    aws: AwsStack
    environment: dict[str, str]
    bus: DomainEventCapture
    sqs: FaultyClient

    @property
    def queue_url(self) -> str:
        return self.environment["RETRY_QUEUE_URL"]

    def enqueue(self, message: dict[str, Any]) -> None:
        self.aws.sqs.send_message(QueueUrl=self.queue_url, MessageBody=json.dumps(message))

    def deliver(self) -> list[str]:
        """Receive what is visible on the queue, invoke the function; the failed message ids."""
        messages = self.aws.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, AttributeNames=["All"]
        ).get("Messages", [])
        assert messages, "nothing visible on the retry queue"
        arn = self.aws.resources.get_att("RetryQueue", "Arn")
        event = {"Records": [lambda_sqs_record(m, queue_arn=arn, region=REGION) for m in messages]}
        try:
            response = handle_retry.lambda_handler(event, lambda_context("retry"))
            failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
        except BatchProcessingError:
            # Every message failed: Lambda returns the whole batch to the queue.
            failed = [m["MessageId"] for m in messages]
        for message in messages:
            if message["MessageId"] in failed:
                # Time passes: the backoff ends and the message is visible again.
                self.aws.sqs.change_message_visibility(
                    QueueUrl=self.queue_url,
                    ReceiptHandle=message["ReceiptHandle"],
                    VisibilityTimeout=0,
                )
            else:
                self.aws.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )
        return failed


@pytest.fixture
def retry(
    aws: AwsStack, lambda_environment: Any, monkeypatch: pytest.MonkeyPatch
) -> Iterator[RetryFunction]:
    environment = lambda_environment("RetryFunction")
    fresh_enrolment_containers()
    sqs = FaultyClient(aws.sqs)
    # The backoff's visibility change goes through a client the test can count.
    queue = SqsRetryQueue(environment["RETRY_QUEUE_URL"], client=sqs)
    monkeypatch.setattr(handle_retry, "retry_queue", lambda: queue)
    yield RetryFunction(
        aws,
        environment,
        DomainEventCapture(aws.sqs, aws.events, environment["EVENT_BUS_NAME"]),
        sqs,
    )
    fresh_enrolment_containers()


def stream_position(aws: AwsStack) -> tuple[str, str, str]:
    """The Payments stream's ARN, its shard and the shard's first sequence number."""
    reader = PaymentStreamReader()
    arn = aws.resources.get_att("PaymentsTable", "StreamArn")
    (shard,) = reader.client.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    return arn, shard["ShardId"], shard["SequenceNumberRange"]["StartingSequenceNumber"]


def records_of(aws: AwsStack, payment_id: str) -> list[dict[str, Any]]:
    arn = aws.resources.get_att("PaymentsTable", "StreamArn")
    return [
        r
        for r in every_stream_record(arn)
        if r["dynamodb"]["Keys"]["payment_id"]["S"] == payment_id
    ]


def on_failure_record(aws: AwsStack, records: list[dict[str, Any]]) -> dict[str, Any]:
    """Lambda's invocation record for these (failed) stream records: where, not what."""
    arn, shard, _ = stream_position(aws)
    record: dict[str, Any] = copy.deepcopy(
        json.loads((EVENTS / "enroll_on_failure_record.json").read_text())
    )
    record["DDBStreamBatchInfo"].update(
        shardId=shard,
        streamArn=arn,
        startSequenceNumber=records[0]["dynamodb"]["SequenceNumber"],
        endSequenceNumber=records[-1]["dynamodb"]["SequenceNumber"],
        batchSize=len(records),
    )
    return record


def paid_through_the_state_machine(store: Store, payments: PaymentRepository) -> Payment:
    """A payment created PENDING and paid by a callback: two real stream records."""
    pending = store.payment(a_payment())
    decision = decide(pending, success_fact(), NOW)
    payments.save(decision)
    return decision.after


def count(courses: CourseRepository) -> int:
    course = courses.get(COURSE_ID, consistent=True)
    assert course is not None
    return course.enrollment_count


def test_a_failed_stream_batch_is_read_back_and_replayed_once_the_cause_is_fixed(
    retry: RetryFunction,
    aws: AwsStack,
    store: Store,
    payments: PaymentRepository,
    courses: CourseRepository,
    enrollments: EnrollmentRepository,
) -> None:
    # Given a paid payment whose enrolment failed on the stream (its course was missing), and
    # Lambda's on-failure record for it on the retry queue
    paid = paid_through_the_state_machine(store, payments)
    (paid_record,) = [r for r in records_of(aws, paid.payment_id) if r["eventName"] == "MODIFY"]
    retry.enqueue(on_failure_record(aws, [paid_record]))

    # When the retry function gets it while the course is still missing
    replayed = retry.deliver()

    # Then the range is done with, and the payment that failed again goes on as its own
    # message (so it cannot hold back other payments of the range); nothing is enrolled
    assert replayed == []
    still_missing = retry.deliver()
    assert len(still_missing) == 1
    assert retry.sqs.calls["change_message_visibility"] == 1
    assert enrollments.get(STUDENT_ID, COURSE_ID) is None

    # When the course is restored and the payment's message comes back
    store.course()
    restored = retry.deliver()

    # Then the record is replayed: enrolled once, counted, announced as documented
    assert restored == []
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert (enrolment.status, enrolment.payment_id) == (EnrollmentStatus.ACTIVE, paid.payment_id)
    assert count(courses) == 1
    published = retry.bus.drain()
    assert sorted(e["detail-type"] for e in published) == ["EnrollmentCreated", "PaymentSucceeded"]
    for event in published:
        assert schema_errors(event["detail-type"], event["detail"]) == []


def test_a_replayed_batch_does_not_enrol_a_payment_refunded_since(
    retry: RetryFunction,
    aws: AwsStack,
    store: Store,
    payments: PaymentRepository,
    courses: CourseRepository,
    enrollments: EnrollmentRepository,
) -> None:
    # Given a payment paid (its enrolment failed: the course was missing) and then refunded,
    # and the on-failure record of the batch holding both changes
    paid = paid_through_the_state_machine(store, payments)
    payments.save(decide(paid, refunded_fact(AMOUNT_CENTS), NOW))
    changes = [r for r in records_of(aws, paid.payment_id) if r["eventName"] == "MODIFY"]
    assert len(changes) == 2
    store.course()
    retry.enqueue(on_failure_record(aws, changes))

    # When the retry function replays the batch
    failed = retry.deliver()

    # Then the stale PAID record enrols nothing and the refund finds nothing to revoke
    assert failed == []
    assert enrollments.get(STUDENT_ID, COURSE_ID) is None
    assert count(courses) == 0
    assert [e["detail-type"] for e in retry.bus.drain()] == ["PaymentSucceeded"]


def test_an_enrolment_message_reconciles_the_payment_with_its_stored_status(
    retry: RetryFunction,
    store: Store,
    payments: PaymentRepository,
    courses: CourseRepository,
) -> None:
    # Given a paid payment that no enrolment was ever made for
    store.course()
    paid = paid_through_the_state_machine(store, payments)

    # When an "enrolment" message for it is handled, twice
    retry.enqueue(enrolment_retry_message(paid.payment_id))
    first = retry.deliver()
    retry.enqueue(enrolment_retry_message(paid.payment_id))
    second = retry.deliver()

    # Then it is enrolled once; the repeat publishes the same event again
    assert first == second == []
    assert count(courses) == 1
    created = [e for e in retry.bus.drain() if e["detail-type"] == "EnrollmentCreated"]
    assert len(created) == 2
    assert created[0]["detail"] == created[1]["detail"]


def test_an_enrolment_message_for_an_unknown_payment_keeps_failing_toward_the_dlq(
    retry: RetryFunction,
) -> None:
    # Given an enrolment message naming no stored payment
    retry.enqueue(enrolment_retry_message("pay_missing"))

    # When it is delivered twice, Then it fails each time, backing off further
    assert len(retry.deliver()) == 1
    assert len(retry.deliver()) == 1
    assert retry.sqs.calls["change_message_visibility"] == 2


# --- the stream reader ------------------------------------------------------------------


def test_the_reader_returns_exactly_the_named_records_in_lambdas_shape(
    aws: AwsStack, store: Store, payments: PaymentRepository
) -> None:
    # Given three changes on the stream
    paid = paid_through_the_state_machine(store, payments)
    payments.save(decide(paid, refunded_fact(AMOUNT_CENTS), NOW))
    arn, shard, _ = stream_position(aws)
    insert, pay, refund = records_of(aws, paid.payment_id)

    # When the middle one alone is read back
    sequence = pay["dynamodb"]["SequenceNumber"]
    (record,) = PaymentStreamReader().read(arn, shard, sequence, sequence)
    (change,) = PaymentStreamReader().read_changes(arn, shard, sequence, sequence)

    # Then it is that record, shaped as Lambda delivers it, and it reads as the payment change
    assert record["dynamodb"]["SequenceNumber"] == sequence
    assert record["eventSourceARN"] == arn
    assert isinstance(record["dynamodb"]["ApproximateCreationDateTime"], float)
    before, after = change
    assert before is not None
    assert after is not None
    assert (before.status, after.status) == (S.PENDING, S.PAID)
    assert (insert["eventName"], refund["eventName"]) == ("INSERT", "MODIFY")


@pytest.mark.parametrize(
    ("code", "error"),
    [
        pytest.param("TrimmedDataAccessException", StreamRecordsUnavailable, id="trimmed"),
        pytest.param("ResourceNotFoundException", StreamRecordsUnavailable, id="stream-gone"),
        pytest.param("LimitExceededException", TransientStorageError, id="throttled"),
    ],
)
def test_records_the_stream_no_longer_holds_are_told_apart_from_a_busy_stream(
    code: str, error: type[Exception]
) -> None:
    # Given the streams API answering GetShardIterator with this error
    client = boto3.client("dynamodbstreams", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error("get_shard_iterator", service_error_code=code, http_status_code=400)

    # When the records are read back, Then the error says whether a retry can help
    with stubber, pytest.raises(error):
        PaymentStreamReader(client).read(STREAM_ARN, SHARD_ID, SEQUENCE_NUMBER, SEQUENCE_NUMBER)
