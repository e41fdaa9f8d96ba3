"""An in-process AWS (moto) holding the stack provisioned from template.yaml, as pytest fixtures.

Integration tests import the fixtures they use in their conftest.py:

    aws_environment       fake credentials and region, for a test that runs its own mock_aws
    aws                   the provisioned stack: table names, queue URLs, clients, and
                          `aws.environment("WebhookFunction")` (the function's template env)
    lambda_environment    sets a function's template environment in os.environ for a test
    payments, courses, enrollments   repositories bound to the stack's tables
    store                 saves payments, courses, enrolments and events in one line each

Plus fault injection for what moto never does: `FaultyClient` and `client_error` (say,
`client_error("TransactionCanceledException", reasons=["None", "TransactionConflict"])`).
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.core.botocore_stubber import BotocoreStubber

from coursepay.domain.payment import Payment
from coursepay.domain.records import (
    Course,
    Enrollment,
    EnrollmentStatus,
    EventKind,
    PaymentEvent,
)
from coursepay.storage import clients, queue, secrets
from coursepay.storage.catalog import CourseRepository, EnrollmentRepository
from coursepay.storage.payments import PaymentRepository
from coursepay.storage.serialization import course_to_item, enrollment_to_item
from devstack.provision import ProvisionedResources, function_environment, provision
from devstack.template import load_template
from tests.support.builders import COURSE_ID, CREATED_AT, PAYMENT_ID, a_payment

TEMPLATE_PATH = Path(__file__).resolve().parents[2] / "template.yaml"
STAGE = "dev"
REGION = "eu-west-1"

# Values for the template parameters that have no default (the deploy supplies them).
PARAMETERS = {
    "JwtIssuer": "https://auth.courses.example",
    "JwtAudience": "course-payments",
    "PaymobIntegrationIds": "4097558",
    "CourseUrlTemplate": "https://learn.courses.example/courses/{course_id}",
    "SupportContact": "support@courses.example",
}


@cache
def stack_template() -> dict[str, Any]:
    """template.yaml in long form; parsed once per test session (treat it as read-only)."""
    return load_template(TEMPLATE_PATH)


@dataclass(frozen=True)
class AwsStack:
    """The stack as the tests see it: where each resource is and clients to look at them."""

    resources: ProvisionedResources
    template: Mapping[str, Any]
    dynamodb: Any
    sqs: Any
    events: Any
    sns: Any

    @property
    def payments_table(self) -> str:
        return self.resources["PaymentsTable"]

    @property
    def webhooks_table(self) -> str:
        return self.resources["PaymentWebhooksTable"]

    @property
    def enrollments_table(self) -> str:
        return self.resources["EnrollmentsTable"]

    @property
    def courses_table(self) -> str:
        return self.resources["CoursesTable"]

    def environment(self, function_logical_id: str, **overrides: str) -> dict[str, str]:
        """A function's environment variables, resolved from the template as Lambda would."""
        return function_environment(
            self.template, function_logical_id, self.resources, overrides=overrides
        )


# DynamoDB applies each request atomically: of two conditional writes to one item, the second
# sees the first. In-process moto checks a transaction's conditions and applies its items
# without a lock (and restores whole tables when it cancels one), so threads racing through
# it can both pass a version condition. One request at a time gives the emulator DynamoDB's
# request atomicity back; the threads still interleave between requests.
_ONE_REQUEST_AT_A_TIME = threading.RLock()
_process_request = BotocoreStubber.process_request


def _process_request_alone(self: BotocoreStubber, request: Any) -> Any:
    with _ONE_REQUEST_AT_A_TIME:
        return _process_request(self, request)


@cache
def _client(service: str) -> Any:
    # Clients are slow to create and moto intercepts any client made after it is imported,
    # so the tests share one per service; only the `aws` fixture uses them, inside mock_aws.
    return boto3.client(service, region_name=REGION)


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Fake credentials, one region, no endpoint override: boto3 can only reach moto."""
    monkeypatch.setattr(BotocoreStubber, "process_request", _process_request_alone)
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    # Adapters built without a client cache one per container; start each test afresh.
    _forget_container_state()
    yield
    _forget_container_state()


def _forget_container_state() -> None:
    clients.dynamodb_client.cache_clear()
    queue._default_client.cache_clear()
    secrets.forget_cached_secrets()


@pytest.fixture
def aws(aws_environment: None) -> Iterator[AwsStack]:
    """A fresh in-process AWS with everything template.yaml declares that moto emulates."""
    with mock_aws():
        dynamodb, sqs, events, sns = (
            _client(service) for service in ("dynamodb", "sqs", "events", "sns")
        )
        resources = provision(
            stack_template(),
            stage=STAGE,
            parameters=PARAMETERS,
            dynamodb=dynamodb,
            sqs=sqs,
            events=events,
            sns=sns,
            sts=_client("sts"),
        )
        yield AwsStack(resources, stack_template(), dynamodb, sqs, events, sns)


@pytest.fixture
def lambda_environment(
    aws: AwsStack, monkeypatch: pytest.MonkeyPatch
) -> Callable[..., dict[str, str]]:
    """Call with a function's logical id to run the test under that function's environment."""

    def apply(function_logical_id: str, **overrides: str) -> dict[str, str]:
        environment = aws.environment(function_logical_id, **overrides)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        return environment

    return apply


@pytest.fixture
def payments(aws: AwsStack) -> PaymentRepository:
    return PaymentRepository(aws.payments_table, aws.webhooks_table, client=aws.dynamodb)


@pytest.fixture
def courses(aws: AwsStack) -> CourseRepository:
    return CourseRepository(aws.courses_table, client=aws.dynamodb)


@pytest.fixture
def enrollments(aws: AwsStack) -> EnrollmentRepository:
    return EnrollmentRepository(
        aws.enrollments_table, aws.courses_table, aws.payments_table, client=aws.dynamodb
    )


# --- records and a factory that stores them ------------------------------------------------


def a_course(**overrides: Any) -> Course:
    """The course the default payment buys (1500.00 EGP); any field can be overridden."""
    fields: dict[str, Any] = {
        "course_id": COURSE_ID,
        "title": "Python 101",
        "price_cents": 150_000,
        "currency": "EGP",
        "active": True,
        "enrollment_count": 0,
    }
    fields.update(overrides)
    return Course(**fields)


def an_event(**overrides: Any) -> PaymentEvent:
    """A callback recorded under the default payment; any field can be overridden."""
    fields: dict[str, Any] = {
        "partition": PAYMENT_ID,
        "event_key": "CB#192036465#PAID",
        "kind": EventKind.CALLBACK,
        "received_at": CREATED_AT,
        "source": "CALLBACK",
        "paymob_transaction_id": "192036465",
        "paymob_order_id": "217503754",
        "payload": {"success": True, "amount_cents": 150_000},
    }
    fields.update(overrides)
    return PaymentEvent(**fields)


def an_enrollment(**overrides: Any) -> Enrollment:
    fields: dict[str, Any] = {
        "student_id": a_payment().student_id,
        "course_id": COURSE_ID,
        "payment_id": PAYMENT_ID,
        "status": EnrollmentStatus.ACTIVE,
        "enrolled_at": CREATED_AT,
    }
    fields.update(overrides)
    return Enrollment(**fields)


class Store:
    """Puts records straight into the stack's tables: the Given of a test, in one line."""

    def __init__(self, aws: AwsStack) -> None:
        self._aws = aws
        self._payments = PaymentRepository(aws.payments_table, aws.webhooks_table, aws.dynamodb)
        self._courses = CourseRepository(aws.courses_table, aws.dynamodb)

    def payment(self, payment: Payment | None = None, **overrides: Any) -> Payment:
        """Store `payment`, or the default payment with `overrides` (builders.a_payment)."""
        stored = payment if payment is not None else a_payment(**overrides)
        self._payments.create(stored)
        return stored

    def course(self, course: Course | None = None, **overrides: Any) -> Course:
        """Store a course with exactly these fields (its enrolment count included)."""
        stored = course if course is not None else a_course(**overrides)
        self._aws.dynamodb.put_item(TableName=self._aws.courses_table, Item=course_to_item(stored))
        return stored

    def enrollment(self, enrollment: Enrollment | None = None, **overrides: Any) -> Enrollment:
        stored = enrollment if enrollment is not None else an_enrollment(**overrides)
        self._aws.dynamodb.put_item(
            TableName=self._aws.enrollments_table, Item=enrollment_to_item(stored)
        )
        return stored

    def event(self, event: PaymentEvent | None = None, **overrides: Any) -> PaymentEvent:
        stored = event if event is not None else an_event(**overrides)
        self._payments.record_event(stored)
        return stored


@pytest.fixture
def store(aws: AwsStack) -> Store:
    return Store(aws)


# --- faults moto never produces --------------------------------------------------------------


def client_error(
    code: str,
    message: str = "injected fault",
    *,
    operation: str = "TransactWriteItems",
    reasons: list[str] | None = None,
) -> ClientError:
    """A ClientError shaped as botocore parses DynamoDB's (cancellation reasons included)."""
    response: dict[str, Any] = {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 400},
    }
    if reasons is not None:
        response["CancellationReasons"] = [
            {"Code": reason} if reason == "None" else {"Code": reason, "Message": message}
            for reason in reasons
        ]
    return ClientError(response, operation)


class FaultyClient:
    """Wraps a real client; the next calls of an operation raise the queued errors first."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._faults: dict[str, deque[BaseException]] = defaultdict(deque)
        self.calls: dict[str, int] = defaultdict(int)

    def fail(self, operation: str, *errors: BaseException) -> FaultyClient:
        self._faults[operation].extend(errors)
        return self

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if not callable(real) or name.startswith("_") or name in ("meta", "exceptions"):
            return real

        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            if self._faults[name]:
                raise self._faults[name].popleft()
            return real(*args, **kwargs)

        return call
