"""The webhook and retry functions, invoked with real API Gateway and SQS events against moto."""

from __future__ import annotations

import base64
import json
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters
from moto.core.botocore_stubber import BotocoreStubber

from coursepay import wiring
from coursepay.domain.payment import PaymentFlag, PaymentStatus
from coursepay.domain.signature import TRANSACTION_HMAC_FIELDS
from coursepay.storage import payments as payments_module
from coursepay.storage import queue as queue_module
from tests.support.aws import REGION, AwsStack, FaultyClient, client_error
from tests.support.callbacks import (
    PREVIOUS_HMAC_SECRET,
    TEST_HMAC_SECRET,
    declined_callback,
    encode,
    sign,
    transaction_callback,
)
from tests.support.http import webhook_event
from tests.support.lambdas import Function

ORDER = 217503754
OTHER_ORDER = 217503999
AMOUNT = 100000


@dataclass
class Stack:
    aws: AwsStack
    webhook: Function
    retry: Function
    requests: Counter[str]

    def deliver(self, body: dict[str, Any], hmac: str | None = "", **kwargs: Any) -> dict[str, Any]:
        signature = sign(body) if hmac == "" else hmac
        response: dict[str, Any] = self.webhook(webhook_event(encode(body), signature, **kwargs))
        return response

    def tables(self) -> dict[str, list[dict[str, Any]]]:
        """Every item of every table, for before-and-after comparisons."""
        names = [
            self.aws.payments_table,
            self.aws.webhooks_table,
            self.aws.enrollments_table,
            self.aws.courses_table,
        ]
        return {
            name: sorted(
                (
                    item
                    for page in self.aws.dynamodb.get_paginator("scan").paginate(TableName=name)
                    for item in page["Items"]
                ),
                key=json.dumps,
            )
            for name in names
        }

    def events_of(self, partition: str) -> list[dict[str, Any]]:
        items = self.aws.dynamodb.query(
            TableName=self.aws.webhooks_table,
            KeyConditionExpression="payment_id = :p",
            ExpressionAttributeValues={":p": {"S": partition}},
        )["Items"]
        return list(items)

    def retry_messages(self) -> list[dict[str, Any]]:
        url = self.aws.resources["RetryQueue"]
        found = self.aws.sqs.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"], WaitTimeSeconds=0
        )
        return list(found.get("Messages", []))


def sqs_event(messages: list[dict[str, Any]], queue_arn: str) -> dict[str, Any]:
    """The event Lambda's SQS poller hands the retry function."""
    return {
        "Records": [
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": {
                    "ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"],
                    "SentTimestamp": m["Attributes"]["SentTimestamp"],
                    "SenderId": m["Attributes"].get("SenderId", "AIDAEXAMPLE"),
                    "ApproximateFirstReceiveTimestamp": m["Attributes"][
                        "ApproximateFirstReceiveTimestamp"
                    ],
                },
                "messageAttributes": {},
                "md5OfBody": m["MD5OfBody"],
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": REGION,
            }
            for m in messages
        ]
    }


def _reset_container_state() -> None:
    parameters.clear_caches()
    wiring.callback_service.cache_clear()
    wiring.retry_queue.cache_clear()
    queue_module._default_client.cache_clear()


@pytest.fixture
def stack(aws, lambda_environment, store, monkeypatch) -> Iterator[Stack]:
    environment = lambda_environment("WebhookFunction")
    lambda_environment("RetryFunction")
    boto3.client("secretsmanager", region_name=REGION).create_secret(
        Name=environment["PAYMOB_SECRET_NAME"],
        SecretString=json.dumps(
            {"hmac_secret": TEST_HMAC_SECRET, "hmac_secret_previous": PREVIOUS_HMAC_SECRET}
        ),
    )
    store.payment(payment_id="pay-1", paymob_order_id=str(ORDER), amount_cents=AMOUNT)
    store.payment(payment_id="pay-2", paymob_order_id=str(OTHER_ORDER), amount_cents=AMOUNT)

    requests: Counter[str] = Counter()
    process = BotocoreStubber.process_request

    def counting(self: BotocoreStubber, request: Any) -> Any:
        target = request.headers.get("X-Amz-Target", b"")
        target = target.decode() if isinstance(target, bytes) else target
        requests[target or request.url.split("?")[0]] += 1
        return process(self, request)

    monkeypatch.setattr(BotocoreStubber, "process_request", counting)
    _reset_container_state()
    stack = Stack(aws, Function("WebhookFunction"), Function("RetryFunction"), requests)
    yield stack
    _reset_container_state()


def warm(stack: Stack) -> None:
    """One callback for an unrelated order, so the container has its secret and clients."""
    stack.deliver(transaction_callback(order_id=1, transaction_id=1))
    stack.requests.clear()


def payment(stack: Stack, payment_id: str) -> dict[str, Any]:
    item: dict[str, Any] = stack.aws.dynamodb.get_item(
        TableName=stack.aws.payments_table, Key={"payment_id": {"S": payment_id}}
    )["Item"]
    return item


def status_of(stack: Stack, payment_id: str) -> str:
    return str(payment(stack, payment_id)["status"]["S"])


def flags_of(stack: Stack, payment_id: str) -> set[str]:
    return set(payment(stack, payment_id).get("flags", {}).get("SS", []))


# --- the common paths and what they cost --------------------------------------------------


def test_a_signed_success_pays_with_one_read_and_one_write(stack):
    warm(stack)

    response = stack.deliver(transaction_callback(merchant_order_id="pay-1"))

    assert response["statusCode"] == 200
    assert dict(stack.requests) == {
        "DynamoDB_20120810.Query": 1,
        "DynamoDB_20120810.TransactWriteItems": 1,
    }
    assert json.loads(response["body"])["status"] == "accepted"
    assert status_of(stack, "pay-1") == PaymentStatus.PAID


def test_a_duplicate_is_one_failed_conditional_write(stack):
    body = transaction_callback()
    stack.deliver(body)
    stack.requests.clear()

    response = stack.deliver(body)

    assert sum(stack.requests.values()) == 2
    assert json.loads(response["body"])["status"] == "duplicate"
    assert len(stack.events_of("pay-1")) == 1


def test_a_bad_signature_makes_no_aws_request_at_all(stack):
    warm(stack)
    before = stack.tables()
    stack.requests.clear()

    response = stack.deliver(transaction_callback(), hmac="ab" * 64)

    assert response["statusCode"] == 401
    assert json.loads(response["body"])["error"]["code"] == "invalid_signature"
    assert sum(stack.requests.values()) == 0
    assert stack.tables() == before


def test_an_unknown_order_is_kept_as_an_orphan_with_one_read_and_one_write(stack):
    warm(stack)

    response = stack.deliver(transaction_callback(order_id=555, transaction_id=555))

    assert sum(stack.requests.values()) == 2
    assert json.loads(response["body"])["status"] == "orphan"
    assert len(stack.events_of("ORPHAN#555")) == 1


# --- what is refused, and that it changes nothing ---------------------------------------------


def _tampered(value: Any) -> Any:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return f"{value}x" if value else "x"


@pytest.mark.parametrize("field", TRANSACTION_HMAC_FIELDS)
def test_any_tampered_signed_field_is_refused_and_every_table_unchanged(stack, field):
    body = transaction_callback()
    signature = sign(body)
    container = body["obj"]
    *parents, leaf = field.split(".")
    for parent in parents:
        container = container[parent]
    container[leaf] = _tampered(container[leaf])
    before = stack.tables()

    response = stack.deliver(body, hmac=signature)

    assert response["statusCode"] == 401
    assert stack.tables() == before


@pytest.mark.parametrize(
    ("event_body", "status", "code"),
    [
        (b"{not json", 400, "malformed_body"),
        (b"\xff\xfe", 400, "malformed_body"),
        (b'{"type": "TRANSACTION", "obj": {"id": 1}}', 400, "invalid_callback"),
        (b'{"x": "' + b"a" * 70_000 + b'"}', 413, "payload_too_large"),
    ],
)
def test_bad_input_gets_a_clear_error_and_changes_nothing(stack, event_body, status, code):
    before = stack.tables()

    response = stack.webhook(
        webhook_event(event_body, "ab" * 64, content_type="application/octet-stream")
    )

    assert response["statusCode"] == status
    assert json.loads(response["body"])["error"]["code"] == code
    assert stack.tables() == before


def test_a_missing_field_is_named(stack):
    body = transaction_callback()
    del body["obj"]["integration_id"]

    response = stack.deliver(body)

    assert response["statusCode"] == 400
    assert "obj.integration_id" in json.loads(response["body"])["error"]["message"]


def test_a_base64_body_is_decoded(stack):
    body = transaction_callback()
    event = webhook_event(encode(body), sign(body), content_type="application/octet-stream")
    assert event["isBase64Encoded"] is True

    response = stack.webhook(event)

    assert response["statusCode"] == 200
    assert status_of(stack, "pay-1") == PaymentStatus.PAID


def test_a_source_flooding_bad_signatures_is_answered_429(stack, monkeypatch):
    body = transaction_callback()
    statuses = [
        stack.deliver(body, hmac="ab" * 64, source_ip="198.51.100.9")["statusCode"]
        for _ in range(25)
    ]

    assert statuses[:20] == [401] * 20
    assert set(statuses[20:]) == {429}
    assert stack.deliver(body)["statusCode"] == 200  # PayMob's own address is not affected


# --- signed, but not to be believed -------------------------------------------------------------


def test_a_genuine_callback_replayed_with_another_merchant_order_id_pays_nothing_else(stack):
    genuine = transaction_callback(merchant_order_id="pay-1")
    stack.deliver(genuine)
    replay = json.loads(json.dumps(genuine))
    replay["obj"]["order"]["merchant_order_id"] = "pay-2"

    stack.deliver(replay, hmac=sign(genuine))

    assert status_of(stack, "pay-1") == PaymentStatus.PAID
    assert status_of(stack, "pay-2") == PaymentStatus.PENDING


def test_a_signed_amount_that_differs_from_the_payment_goes_under_review(stack):
    stack.deliver(transaction_callback(amount_cents=AMOUNT + 100))

    assert status_of(stack, "pay-1") == PaymentStatus.UNDER_REVIEW
    assert PaymentFlag.AMOUNT_MISMATCH in flags_of(stack, "pay-1")


def test_one_transaction_never_settles_two_payments(stack):
    stack.deliver(transaction_callback())

    response = stack.deliver(transaction_callback(order_id=OTHER_ORDER))

    assert json.loads(response["body"])["status"] == "rejected"
    assert status_of(stack, "pay-2") == PaymentStatus.PENDING


# --- order, duplicates, concurrency ------------------------------------------------------------


def payments_stream_records(stack: Stack, payment_id: str) -> list[dict[str, Any]]:
    stream_arn = stack.aws.dynamodb.describe_table(TableName=stack.aws.payments_table)["Table"][
        "LatestStreamArn"
    ]
    streams = boto3.client(
        "dynamodbstreams",
        region_name=REGION,
        endpoint_url=f"https://streams.dynamodb.{REGION}.amazonaws.com",
    )
    records = []
    for shard in streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        records += streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    return [r for r in records if r["dynamodb"]["Keys"]["payment_id"]["S"] == payment_id]


def test_fifty_concurrent_deliveries_make_one_transition(stack):
    body = transaction_callback()

    with ThreadPoolExecutor(max_workers=16) as pool:
        responses = list(pool.map(lambda _: stack.deliver(body), range(50)))

    assert {r["statusCode"] for r in responses} == {200}
    results = Counter(json.loads(r["body"])["status"] for r in responses)
    assert results["accepted"] == 1
    assert results["accepted"] + results["duplicate"] == 50
    assert status_of(stack, "pay-1") == PaymentStatus.PAID
    assert len(stack.events_of("pay-1")) == 1
    changes = [r for r in payments_stream_records(stack, "pay-1") if r["eventName"] == "MODIFY"]
    assert len(changes) == 1
    assert changes[0]["dynamodb"]["NewImage"]["status"]["S"] == "PAID"


def test_success_then_decline_stays_paid(stack):
    stack.deliver(transaction_callback())
    stack.deliver(declined_callback())

    assert status_of(stack, "pay-1") == PaymentStatus.PAID
    assert len(stack.events_of("pay-1")) == 2


def test_decline_then_success_is_paid_and_flagged_late(stack):
    stack.deliver(declined_callback())
    assert status_of(stack, "pay-1") == PaymentStatus.FAILED

    stack.deliver(transaction_callback())

    assert status_of(stack, "pay-1") == PaymentStatus.PAID
    assert PaymentFlag.LATE_SUCCESS in flags_of(stack, "pay-1")


def refund_callbacks(refunded: int, cumulative: int, child_id: int) -> list[dict[str, Any]]:
    child = transaction_callback(
        transaction_id=child_id,
        amount_cents=refunded,
        has_parent_transaction=True,
        parent_transaction=192036465,
        is_refund=True,
    )
    parent = transaction_callback(is_refunded=True, refunded_amount_cents=cumulative)
    return [child, parent]


@pytest.mark.parametrize("child_first", [True, False], ids=["child-first", "parent-first"])
def test_refund_child_and_parent_in_either_order(stack, child_first):
    stack.deliver(transaction_callback())
    partial = refund_callbacks(40_000, 40_000, child_id=700001)
    rest = refund_callbacks(60_000, AMOUNT, child_id=700002)
    order = (lambda pair: pair) if child_first else (lambda pair: pair[::-1])

    for callback in order(partial):
        stack.deliver(callback)
    assert status_of(stack, "pay-1") == PaymentStatus.PARTIALLY_REFUNDED
    for callback in order(rest):
        stack.deliver(callback)

    refunded = payment(stack, "pay-1")
    assert refunded["status"]["S"] == PaymentStatus.REFUNDED
    assert refunded["refunded_amount_cents"]["N"] == str(AMOUNT)


# --- transient failures, the retry queue and the DLQ ---------------------------------------


def test_a_callback_that_fails_twice_transiently_is_applied_by_the_retry_path_once(
    stack, monkeypatch
):
    conflict = client_error(
        "TransactionCanceledException", reasons=["None", "None", "TransactionConflict"]
    )
    faulty = FaultyClient(stack.aws.dynamodb).fail("transact_write_items", conflict, conflict)
    monkeypatch.setattr(payments_module, "dynamodb_client", lambda: faulty)
    monkeypatch.setattr("handle_retry.redelivery_delay", lambda count: 0)
    _reset_container_state()
    body = transaction_callback()

    first = stack.deliver(body)
    assert json.loads(first["body"])["status"] == "queued"
    assert status_of(stack, "pay-1") == PaymentStatus.PENDING
    queue_arn = stack.aws.resources.get_att("RetryQueue", "Arn")

    failed = stack.retry(sqs_event(stack.retry_messages(), queue_arn))  # fails again
    assert len(failed["batchItemFailures"]) == 1
    assert status_of(stack, "pay-1") == PaymentStatus.PENDING

    applied = stack.retry(sqs_event(stack.retry_messages(), queue_arn))
    assert applied["batchItemFailures"] == []
    assert status_of(stack, "pay-1") == PaymentStatus.PAID
    assert payment(stack, "pay-1")["version"]["N"] == "2"  # created at 1, paid once
    assert len(stack.events_of("pay-1")) == 1


def test_a_poison_message_lands_in_the_dead_letter_queue(stack, monkeypatch):
    monkeypatch.setattr("handle_retry.redelivery_delay", lambda count: 0)
    retry_url = stack.aws.resources["RetryQueue"]
    dlq_url = stack.aws.resources["RetryDeadLetterQueue"]
    queue_arn = stack.aws.resources.get_att("RetryQueue", "Arn")
    stack.aws.sqs.send_message(QueueUrl=retry_url, MessageBody='{"kind": "no-such-kind"}')

    for _ in range(10):
        messages = stack.retry_messages()
        if not messages:
            break
        result = stack.retry(sqs_event(messages, queue_arn))
        assert len(result["batchItemFailures"]) == 1

    dead = stack.aws.sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [json.loads(m["Body"]) for m in dead] == [{"kind": "no-such-kind"}]


# --- other callback types ------------------------------------------------------------------


def test_other_types_are_stored_and_acknowledged_without_touching_payments(stack):
    before = stack.tables()[stack.aws.payments_table]
    body = {"type": "DELIVERY_STATUS", "obj": {"order_id": ORDER, "status": "delivered"}}

    response = stack.webhook(webhook_event(encode(body), None))

    assert response["statusCode"] == 200
    assert stack.tables()[stack.aws.payments_table] == before
    assert len(stack.events_of("UNLINKED#DELIVERY_STATUS")) == 1


def test_the_handler_logs_no_secret_and_no_card_number(stack, capsys):
    stack.deliver(transaction_callback())

    logged = capsys.readouterr().out
    assert TEST_HMAC_SECRET not in logged
    assert "512345xxxxxx2346" not in logged
    assert base64.b64encode(TEST_HMAC_SECRET.encode()).decode() not in logged


def test_a_queued_callback_that_no_longer_verifies_is_kept_for_the_dead_letter_queue(
    stack, monkeypatch
):
    monkeypatch.setattr("handle_retry.redelivery_delay", lambda count: 0)
    body = transaction_callback()
    stack.aws.sqs.send_message(
        QueueUrl=stack.aws.resources["RetryQueue"],
        MessageBody=json.dumps(
            {"kind": "paymob-callback", "body": json.dumps(body), "hmac": "ab" * 64}
        ),
    )
    queue_arn = stack.aws.resources.get_att("RetryQueue", "Arn")

    result = stack.retry(sqs_event(stack.retry_messages(), queue_arn))

    assert len(result["batchItemFailures"]) == 1
    assert status_of(stack, "pay-1") == PaymentStatus.PENDING


def test_an_unforeseen_failure_is_a_503_in_the_error_shape(stack, monkeypatch):
    def broken():
        raise RuntimeError("configuration lost")

    monkeypatch.setattr("handle_webhook.callback_service", broken)

    response = stack.deliver(transaction_callback())

    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"]["code"] == "temporarily_unavailable"
