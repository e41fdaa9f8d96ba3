"""The EventBridge adapter against moto: ten entries a request, refusals raised, never swallowed."""

from __future__ import annotations

import boto3
import pytest
from botocore.stub import Stubber

from coursepay.services.enrollment import DomainEvent
from coursepay.storage.bus import EventBridgePublisher, EventPublishFailed
from coursepay.storage.errors import StorageError, TransientStorageError
from tests.support.aws import REGION, AwsStack, FaultyClient
from tests.support.enrollment import DomainEventCapture

BUS = "course-payments-dev"


def events(n: int) -> list[DomainEvent]:
    return [
        DomainEvent("EnrollmentCreated", {"event_id": f"e{i}", "payment_id": f"pay_{i}"})
        for i in range(n)
    ]


def test_twenty_three_events_go_out_in_three_requests_in_order(aws: AwsStack) -> None:
    # Given a rule capturing the domain bus, and a client that counts requests
    capture = DomainEventCapture(aws.sqs, aws.events, BUS)
    client = FaultyClient(aws.events)

    # When 23 events are published
    EventBridgePublisher(BUS, client=client).publish(events(23))

    # Then three PutEvents requests carried them all, source and type as documented
    assert client.calls["put_events"] == 3
    delivered = capture.drain()
    assert sorted(e["detail"]["event_id"] for e in delivered) == sorted(f"e{i}" for i in range(23))
    assert {(e["source"], e["detail-type"]) for e in delivered} == {
        ("course-payments", "EnrollmentCreated")
    }


def test_no_events_means_no_request(aws: AwsStack) -> None:
    client = FaultyClient(aws.events)
    EventBridgePublisher(BUS, client=client).publish([])
    assert client.calls["put_events"] == 0


def test_entries_eventbridge_refuses_raise_after_the_rest_went_out() -> None:
    # Given EventBridge accepting the first entry of a batch and refusing the second
    client = boto3.client("events", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_response(
        "put_events",
        {
            "FailedEntryCount": 1,
            "Entries": [
                {"EventId": "11111111-2222-3333-4444-555555555555"},
                {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"},
            ],
        },
    )

    # When two events are published, Then the refusal is raised for the caller to retry
    with stubber, pytest.raises(EventPublishFailed) as raised:
        EventBridgePublisher(BUS, client=client).publish(events(2))
    assert raised.value.failed == [("EnrollmentCreated", "InternalFailure")]
    assert isinstance(raised.value, TransientStorageError)


@pytest.mark.parametrize(
    ("code", "error"),
    [
        pytest.param("ThrottlingException", TransientStorageError, id="throttled"),
        pytest.param("AccessDeniedException", StorageError, id="denied"),
    ],
)
def test_a_refused_request_raises_a_storage_error(code: str, error: type[Exception]) -> None:
    client = boto3.client("events", region_name=REGION)
    stubber = Stubber(client)
    stubber.add_client_error("put_events", service_error_code=code, http_status_code=400)
    with stubber, pytest.raises(error) as raised:
        EventBridgePublisher(BUS, client=client).publish(events(1))
    assert isinstance(raised.value, TransientStorageError) is (error is TransientStorageError)
