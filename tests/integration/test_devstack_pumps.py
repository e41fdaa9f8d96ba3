"""The event pumps against the moto server: stream records, filters, retries, SQS, schedules.

The functions here are fakes that record their events and fail on command; the pumps and
the AWS emulator are the real ones the local stack runs.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.filters import parse_filter_criteria
from devstack.lambdas import Invocation
from devstack.pumps import (
    SchedulePump,
    SqsPump,
    StreamPump,
    rate_seconds,
    scheduled_event,
    sqs_destination,
)
from devstack.servers import ServerThread
from devstack.stack import _moto_server_parts
from devstack.template import load_template
from tests.support.polling import wait_until

REPO = Path(__file__).resolve().parents[2]
REGION = "eu-west-1"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:123456789012:function:pump-test"


class FakeFunction:
    """Records every event; `decide(event)` returns the payload or raises to fail."""

    arn = FUNCTION_ARN

    def __init__(self, decide: Callable[[dict[str, Any]], Any] | None = None) -> None:
        self.events: list[dict[str, Any]] = []
        self._decide = decide or (lambda event: None)
        self._lock = threading.Lock()

    def invoke(self, event: Any) -> Invocation:
        with self._lock:
            self.events.append(event)
        try:
            payload = self._decide(event)
        except Exception as exc:
            return Invocation(str(uuid.uuid4()), error={"errorType": type(exc).__name__})
        return Invocation(str(uuid.uuid4()), payload=payload)

    @property
    def records(self) -> list[dict[str, Any]]:
        with self._lock:
            return [record for event in self.events for record in event["Records"]]


@pytest.fixture(scope="module")
def aws_url() -> Iterator[str]:
    app, handler = _moto_server_parts()
    server = ServerThread(app, name="pump-test-aws", request_handler=handler)
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture
def client(aws_url: str) -> Callable[[str], Any]:
    def make(service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=aws_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    return make


@pytest.fixture
def pumps() -> Iterator[list[Any]]:
    started: list[Any] = []
    yield started
    for pump in started:
        pump.stop()


def a_payments_table(client: Callable[[str], Any]) -> tuple[str, str]:
    name = f"payments-{uuid.uuid4().hex[:8]}"
    table = client("dynamodb").create_table(
        TableName=name,
        KeySchema=[{"AttributeName": "payment_id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "payment_id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
        StreamSpecification={"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"},
    )["TableDescription"]
    return name, table["LatestStreamArn"]


def put_payment(client: Callable[[str], Any], table: str, payment_id: str, status: str) -> None:
    client("dynamodb").put_item(
        TableName=table,
        Item={
            "payment_id": {"S": payment_id},
            "status": {"S": status},
            "amount_cents": {"N": "150000"},
            "card": {"M": {"last4": {"S": "2346"}, "raw": {"B": b"\x00\x01"}}},
        },
    )


def a_queue(client: Callable[[str], Any], **attributes: str) -> tuple[str, str]:
    sqs = client("sqs")
    url = sqs.create_queue(QueueName=f"q-{uuid.uuid4().hex[:8]}", Attributes=attributes)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def drain(client: Callable[[str], Any], queue_url: str, expected: int) -> list[dict[str, Any]]:
    """Wait for `expected` messages on a queue and return their bodies."""
    seen: list[dict[str, Any]] = []

    def receive() -> list[dict[str, Any]] | None:
        for message in (
            client("sqs")
            .receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0)
            .get("Messages", [])
        ):
            seen.append(message)
        return seen if len(seen) >= expected else None

    return wait_until(receive, timeout=10, message=f"{expected} messages on {queue_url}")


# --- the DynamoDB stream --------------------------------------------------------------------


def enroll_mapping() -> dict[str, Any]:
    """The enrolment function's stream event properties, as template.yaml declares them."""
    template = load_template(REPO / "template.yaml")
    events = template["Resources"]["EnrollFunction"]["Properties"]["Events"]
    mappings: list[dict[str, Any]] = [
        e["Properties"] for e in events.values() if e["Type"] == "DynamoDB"
    ]
    (mapping,) = mappings
    return mapping


def test_stream_records_reach_the_function_in_lambdas_shape_filtered_by_the_template(
    client: Callable[[str], Any], pumps: list[Any]
) -> None:
    # Given the Payments stream pumped with the template's own filter criteria
    table, stream_arn = a_payments_table(client)
    function = FakeFunction()
    pump = StreamPump(
        name="enroll",
        function=function,
        stream_arn=stream_arn,
        region=REGION,
        streams_client=client("dynamodbstreams"),
        batch_size=10,
        filters=parse_filter_criteria(enroll_mapping()["FilterCriteria"]),
    )
    pumps.append(pump)
    pump.start()

    # When payments are created and change status, including changes enrolment ignores
    started = time.time()
    put_payment(client, table, "pay-1", "PENDING")  # INSERT PENDING: filtered out
    put_payment(client, table, "pay-1", "PAID")  # PENDING -> PAID: delivered
    put_payment(client, table, "pay-1", "PAID")  # PAID -> PAID: filtered out
    put_payment(client, table, "pay-1", "REFUNDED")  # PAID -> REFUNDED: delivered
    put_payment(client, table, "pay-2", "PAID")  # INSERT PAID: delivered

    # Then exactly the status changes enrolment cares about arrive, in order
    records = wait_until(
        lambda: function.records if len(function.records) >= 3 else None,
        message="three stream records",
    )
    time.sleep(0.5)  # and nothing more arrives
    assert len(function.records) == 3
    assert pump.filtered_out == 2
    assert [(r["eventName"], r["dynamodb"]["NewImage"]["status"]["S"]) for r in records] == [
        ("MODIFY", "PAID"),
        ("MODIFY", "REFUNDED"),
        ("INSERT", "PAID"),
    ]
    first = records[0]
    assert first["eventSource"] == "aws:dynamodb"
    assert first["eventSourceARN"] == stream_arn
    assert first["awsRegion"] == REGION
    assert first["eventVersion"] == "1.1"
    change = first["dynamodb"]
    created = change["ApproximateCreationDateTime"]
    assert isinstance(created, int)
    assert started - 5 <= created <= time.time() + 1
    assert change["Keys"] == {"payment_id": {"S": "pay-1"}}
    assert change["OldImage"]["status"] == {"S": "PENDING"}
    assert change["StreamViewType"] == "NEW_AND_OLD_IMAGES"
    assert change["SequenceNumber"].isdigit()
    # binary attributes travel as base64 text, as in Lambda's JSON event
    assert change["NewImage"]["card"]["M"]["raw"] == {"B": "AAE="}
    assert "OldImage" not in records[2]["dynamodb"]
    # the event is JSON all the way down, as Lambda hands it over
    json.dumps(function.events)


def test_a_failing_stream_record_is_retried_then_reported_to_the_destination(
    client: Callable[[str], Any], pumps: list[Any]
) -> None:
    # Given a mapping with three retries, partial batch responses and an SQS destination
    table, stream_arn = a_payments_table(client)
    destination_url, _ = a_queue(client)

    def fail_pay_2(event: dict[str, Any]) -> dict[str, Any]:
        failures = [
            {"itemIdentifier": r["dynamodb"]["SequenceNumber"]}
            for r in event["Records"]
            if r["dynamodb"]["Keys"]["payment_id"]["S"] == "pay-2"
        ]
        return {"batchItemFailures": failures}

    function = FakeFunction(fail_pay_2)
    pump = StreamPump(
        name="enroll",
        function=function,
        stream_arn=stream_arn,
        region=REGION,
        streams_client=client("dynamodbstreams"),
        batch_size=10,
        maximum_retry_attempts=3,
        report_batch_item_failures=True,
        on_failure=sqs_destination(client("sqs"), destination_url),
        retry_delay_seconds=0.05,
    )
    # When three payments are written before the pump reads them (one batch)
    for payment_id in ("pay-1", "pay-2", "pay-3"):
        put_payment(client, table, payment_id, "PAID")
    pumps.append(pump)
    pump.start()

    # Then the failed record (and what follows it) is retried three times, then reported
    (message,) = drain(client, destination_url, 1)
    record = json.loads(message["Body"])
    batches = [
        [r["dynamodb"]["Keys"]["payment_id"]["S"] for r in e["Records"]] for e in function.events
    ]
    assert batches == [["pay-1", "pay-2", "pay-3"]] + [["pay-2", "pay-3"]] * 3
    info = record["DDBStreamBatchInfo"]
    failed = function.events[-1]["Records"]
    assert info["streamArn"] == stream_arn
    assert info["startSequenceNumber"] == failed[0]["dynamodb"]["SequenceNumber"]
    assert info["endSequenceNumber"] == failed[-1]["dynamodb"]["SequenceNumber"]
    assert info["batchSize"] == 2
    assert info["shardId"].startswith("shardId-")
    assert record["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert record["requestContext"]["functionArn"] == FUNCTION_ARN
    assert record["requestContext"]["approximateInvokeCount"] == 4
    assert record["responseContext"] == {"statusCode": 200, "executedVersion": "$LATEST"}
    assert record["version"] == "1.0"
    datetime.strptime(info["approximateArrivalOfFirstRecord"], "%Y-%m-%dT%H:%M:%SZ")


def test_bisecting_on_error_isolates_the_record_that_breaks_the_function(
    client: Callable[[str], Any], pumps: list[Any]
) -> None:
    # Given a function that crashes on any batch holding pay-3, with bisect on error
    table, stream_arn = a_payments_table(client)
    destination_url, _ = a_queue(client)

    def crash_on_pay_3(event: dict[str, Any]) -> None:
        if any(r["dynamodb"]["Keys"]["payment_id"]["S"] == "pay-3" for r in event["Records"]):
            raise RuntimeError("poison record")

    function = FakeFunction(crash_on_pay_3)
    pump = StreamPump(
        name="enroll",
        function=function,
        stream_arn=stream_arn,
        region=REGION,
        streams_client=client("dynamodbstreams"),
        batch_size=10,
        maximum_retry_attempts=2,
        bisect_on_error=True,
        on_failure=sqs_destination(client("sqs"), destination_url),
        retry_delay_seconds=0.05,
    )
    for payment_id in ("pay-1", "pay-2", "pay-3", "pay-4"):
        put_payment(client, table, payment_id, "PAID")
    pumps.append(pump)
    pump.start()

    # Then only the poison record is reported, and every other record was delivered
    (message,) = drain(client, destination_url, 1)
    record = json.loads(message["Body"])
    assert record["DDBStreamBatchInfo"]["batchSize"] == 1
    assert record["responseContext"]["functionError"] == "Unhandled"
    succeeded = {
        r["dynamodb"]["Keys"]["payment_id"]["S"]
        for event in function.events
        if not any(r["dynamodb"]["Keys"]["payment_id"]["S"] == "pay-3" for r in event["Records"])
        for r in event["Records"]
    }
    assert succeeded == {"pay-1", "pay-2", "pay-4"}


class FlakyStreams:
    """The real streams client, except that GetRecords fails when told to (once)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.fail_next = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def get_records(self, **kwargs: Any) -> Any:
        if self.fail_next.is_set():
            self.fail_next.clear()
            raise ConnectionError("the emulator went away for a moment")
        return self._client.get_records(**kwargs)


def a_running_stream_pump(pumps: list[Any], stream_arn: str, streams: Any) -> FakeFunction:
    """A started stream pump with default settings, feeding a recording function."""
    function = FakeFunction()
    pump = StreamPump(
        name="enroll",
        function=function,
        stream_arn=stream_arn,
        region=REGION,
        streams_client=streams,
    )
    pumps.append(pump)
    pump.start()
    return function


def delivered_ids(function: FakeFunction) -> list[str]:
    return [r["dynamodb"]["Keys"]["payment_id"]["S"] for r in function.records]


def test_after_a_failed_poll_the_stream_resumes_where_it_was_without_redelivering(
    client: Callable[[str], Any], pumps: list[Any]
) -> None:
    table, stream_arn = a_payments_table(client)
    streams = FlakyStreams(client("dynamodbstreams"))
    function = a_running_stream_pump(pumps, stream_arn, streams)
    put_payment(client, table, "pay-1", "PAID")
    wait_until(lambda: len(function.records) == 1, message="the first record")

    # When a poll fails, then more records are written
    streams.fail_next.set()
    wait_until(lambda: not streams.fail_next.is_set(), message="the failed poll")
    put_payment(client, table, "pay-2", "PAID")

    # Then the pump carries on after the last record it handled: nothing twice, nothing lost
    wait_until(lambda: len(function.records) >= 2, message="the second record")
    time.sleep(0.5)
    assert delivered_ids(function) == ["pay-1", "pay-2"]


def test_a_cancelled_transaction_neither_blinds_the_pump_nor_shows_it_a_phantom(
    client: Callable[[str], Any], pumps: list[Any]
) -> None:
    # Given a pump reading a table in which a transaction is then cancelled (moto swaps in a
    # copy of the table, and an old iterator would read the discarded one)
    table, stream_arn = a_payments_table(client)
    function = a_running_stream_pump(pumps, stream_arn, client("dynamodbstreams"))
    put_payment(client, table, "pay-1", "PAID")
    wait_until(lambda: len(function.records) == 1, message="the first record")
    with pytest.raises(client("dynamodb").exceptions.TransactionCanceledException):
        client("dynamodb").transact_write_items(
            TransactItems=[
                {"Put": {"TableName": table, "Item": {"payment_id": {"S": "phantom"}}}},
                {
                    "Put": {
                        "TableName": table,
                        "Item": {"payment_id": {"S": "pay-1"}},
                        "ConditionExpression": "attribute_not_exists(payment_id)",
                    }
                },
            ]
        )

    # When more records are written
    put_payment(client, table, "pay-2", "PAID")
    put_payment(client, table, "pay-3", "PAID")

    # Then the pump delivers them, and never the cancelled write
    wait_until(lambda: len(function.records) >= 3, message="the later records")
    time.sleep(0.5)
    assert delivered_ids(function) == ["pay-1", "pay-2", "pay-3"]


# --- SQS ------------------------------------------------------------------------------------


def test_a_partially_failed_sqs_batch_redelivers_only_the_failure_until_the_dlq(
    client: Callable[[str], Any], pumps: list[Any]
) -> None:
    # Given a queue (1 s visibility, DLQ after 2 receives) and a function failing one message
    dlq_url, dlq_arn = a_queue(client)
    queue_url, queue_arn = a_queue(
        client,
        VisibilityTimeout="1",
        RedrivePolicy=json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": 2}),
    )

    def fail_poison(event: dict[str, Any]) -> dict[str, Any]:
        return {
            "batchItemFailures": [
                {"itemIdentifier": r["messageId"]}
                for r in event["Records"]
                if r["body"] == "poison"
            ]
        }

    function = FakeFunction(fail_poison)
    sqs = client("sqs")
    for body in ("first", "poison", "third"):
        sqs.send_message(
            QueueUrl=queue_url,
            MessageBody=body,
            MessageAttributes={"kind": {"DataType": "String", "StringValue": "test"}},
        )
    pump = SqsPump(
        name="retry",
        function=function,
        queue_url=queue_url,
        queue_arn=queue_arn,
        region=REGION,
        sqs_client=sqs,
        batch_size=10,
        report_batch_item_failures=True,
    )
    pumps.append(pump)
    pump.start()

    # Then the poison message lands in the DLQ after its second failed delivery
    (dead,) = drain(client, dlq_url, 1)
    assert dead["Body"] == "poison"
    deliveries = [(r["body"], r["attributes"]["ApproximateReceiveCount"]) for r in function.records]
    # the good messages were delivered once and deleted; the poison one twice
    assert sorted(d for d in deliveries if d[0] != "poison") == [("first", "1"), ("third", "1")]
    assert [d for d in deliveries if d[0] == "poison"] == [("poison", "1"), ("poison", "2")]
    record = function.records[0]
    assert record["eventSource"] == "aws:sqs"
    assert record["eventSourceARN"] == queue_arn
    assert record["awsRegion"] == REGION
    assert record["messageAttributes"]["kind"] == {
        "stringValue": "test",
        "stringListValues": [],
        "binaryListValues": [],
        "dataType": "String",
    }
    assert {"SentTimestamp", "SenderId", "ApproximateFirstReceiveTimestamp"} <= set(
        record["attributes"]
    )
    assert record["md5OfBody"] and record["receiptHandle"] and record["messageId"]
    # and the queue is empty now
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessages"] == "0"
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"


def test_a_function_error_leaves_the_whole_sqs_batch_on_the_queue(
    client: Callable[[str], Any], pumps: list[Any]
) -> None:
    queue_url, queue_arn = a_queue(client, VisibilityTimeout="1")
    calls: list[int] = []

    def fail_first_time(event: dict[str, Any]) -> None:
        calls.append(len(event["Records"]))
        if len(calls) == 1:
            raise RuntimeError("transient")

    function = FakeFunction(fail_first_time)
    sqs = client("sqs")
    for body in ("a", "b"):
        sqs.send_message(QueueUrl=queue_url, MessageBody=body)
    pump = SqsPump(
        name="retry",
        function=function,
        queue_url=queue_url,
        queue_arn=queue_arn,
        region=REGION,
        sqs_client=sqs,
        report_batch_item_failures=True,
    )
    pumps.append(pump)
    pump.start()

    wait_until(lambda: len(calls) >= 2, message="a second delivery")
    redelivered = function.events[1]["Records"]
    assert sorted(r["body"] for r in redelivered) == ["a", "b"]
    assert {r["attributes"]["ApproximateReceiveCount"] for r in redelivered} == {"2"}


# --- schedules ------------------------------------------------------------------------------


def test_a_schedule_invokes_its_function_every_period_with_a_scheduled_event(
    pumps: list[Any],
) -> None:
    rule_arn = f"arn:aws:events:{REGION}:123456789012:rule/course-payments-dev-Reconcile"
    function = FakeFunction()
    pump = SchedulePump(
        name="reconcile",
        function=function,
        period_seconds=0.3,
        event_factory=lambda: scheduled_event(
            rule_arn=rule_arn, region=REGION, account_id="123456789012"
        ),
    )
    pumps.append(pump)
    started = time.monotonic()
    pump.start()

    wait_until(lambda: len(function.events) >= 2, timeout=5, message="two scheduled runs")

    # the first run comes one period after the start, not at once
    assert time.monotonic() - started >= 0.6
    event = function.events[0]
    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] == "aws.events"
    assert event["resources"] == [rule_arn]
    assert event["detail"] == {}
    assert event["region"] == REGION
    datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert event["id"] != function.events[1]["id"]


def test_a_schedule_without_a_period_runs_only_when_triggered(pumps: list[Any]) -> None:
    function = FakeFunction(lambda event: {"checked": 3})
    pump = SchedulePump(
        name="reconcile", function=function, period_seconds=None, event_factory=lambda: {}
    )
    pumps.append(pump)
    pump.start()
    time.sleep(0.5)
    assert function.events == []

    invocation = pump.run_now()

    assert invocation.ok
    assert invocation.payload == {"checked": 3}
    assert len(function.events) == 1


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [
        ("rate(5 minutes)", 300),
        ("rate(1 minute)", 60),
        ("rate(2 hours)", 7200),
        ("rate(1 day)", 86400),
        ("cron(0 12 * * ? *)", None),
    ],
)
def test_rate_expressions(expression: str, seconds: int | None) -> None:
    assert rate_seconds(expression) == seconds
