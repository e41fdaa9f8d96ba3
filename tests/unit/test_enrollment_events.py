"""The domain events the enrolment service publishes match the schemas in docs/events/."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from coursepay.domain.payment import Payment, PaymentFlag, PaymentStatus
from coursepay.services.enrollment import DetailType, EnrollmentService
from coursepay.storage.bus import EventBridgePublisher
from tests.support.aws import a_course
from tests.support.builders import a_payment, a_payment_in
from tests.support.enrollment import (
    ENROLMENT_TIME,
    SCHEMAS,
    InMemoryEnrollments,
    RecordingBus,
    schema_errors,
)
from tests.support.fakes import InMemoryPaymentStore

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"
S = PaymentStatus


def published_by_a_payments_life() -> RecordingBus:
    """Every kind of event, as the service publishes them over one payment's life and a twin's."""
    payments = InMemoryPaymentStore()
    enrollments = InMemoryEnrollments(payments, a_course())
    bus = RecordingBus()
    service = EnrollmentService(payments, enrollments, bus, clock=lambda: ENROLMENT_TIME)

    def change(before: Payment | None, after: Payment) -> None:
        payments.payments[after.payment_id] = after
        service.on_payment_changed(before, after)

    declined = a_payment_in(S.FAILED)
    late = a_payment_in(S.PAID, flags=frozenset({PaymentFlag.LATE_SUCCESS}), version=4)
    refunded = a_payment_in(S.REFUNDED, flags=late.flags, version=5)
    change(a_payment(), declined)  # PaymentFailed
    change(declined, late)  # PaymentSucceeded, PaymentFlagged, EnrollmentCreated
    change(late, refunded)  # EnrollmentRevoked
    voided = a_payment_in(S.VOIDED, payment_id="pay_void", paymob_order_id="1", version=6)
    paid_void = a_payment_in(S.PAID, payment_id="pay_void", paymob_order_id="1")
    change(None, paid_void)
    change(paid_void, voided)  # EnrollmentRevoked of a void
    # Paid twice: the second is a duplicate until the first is refunded, then it holds the course
    first = a_payment_in(S.PAID, payment_id="pay_first", paymob_order_id="2")
    twin = a_payment_in(S.PAID, payment_id="pay_twin", paymob_order_id="3")
    change(None, first)
    change(None, twin)  # PaymentFlagged (DUPLICATE_PAYMENT)
    change(first, a_payment_in(S.REFUNDED, payment_id="pay_first", paymob_order_id="2", version=7))
    # ... EnrollmentTransferred to the twin
    overridden = a_payment_in(S.UNDER_REVIEW, payment_id="pay_twin", paymob_order_id="3", version=8)
    change(payments.payments["pay_twin"], overridden)  # EnrollmentRevoked of an override
    return bus


@pytest.fixture(scope="module")
def bus() -> RecordingBus:
    return published_by_a_payments_life()


def test_every_detail_type_has_a_schema_and_every_schema_a_detail_type() -> None:
    # Given the schema files and the service's detail types
    files = {path.name.removesuffix(".schema.json") for path in SCHEMAS.glob("*.schema.json")}

    # Then they are the same six
    assert files == {str(t) for t in DetailType}


def test_a_payments_life_publishes_every_detail_type(bus: RecordingBus) -> None:
    assert set(bus.detail_types) == {str(t) for t in DetailType}


@pytest.mark.parametrize("detail_type", [str(t) for t in DetailType])
def test_what_is_published_matches_its_schema(bus: RecordingBus, detail_type: str) -> None:
    # Given every event of this type the service published
    details = bus.of_type(detail_type)

    # Then each one is valid against the documented schema
    assert details
    for detail in details:
        assert schema_errors(detail_type, detail) == []


@pytest.mark.parametrize(
    ("mutation", "expected"),
    [
        pytest.param({"amount_cents": 1499.99}, "is not of type 'integer'", id="float-money"),
        pytest.param({"currency": "egp"}, "does not match", id="currency-case"),
        pytest.param({"email": "student@example.com"}, "Additional properties", id="personal"),
        pytest.param({"event_id": "not-a-uuid"}, "is not a 'uuid'", id="event-id"),
        pytest.param({"enrolled_at": "yesterday"}, "is not a 'date-time'", id="timestamp"),
    ],
)
def test_the_schemas_refuse_what_must_never_be_published(
    bus: RecordingBus, mutation: dict[str, Any], expected: str
) -> None:
    # Given a valid EnrollmentCreated detail, changed in one way it must not be
    detail = {**bus.of_type(DetailType.ENROLLMENT_CREATED)[0], **mutation}

    # Then the schema says what is wrong
    assert any(expected in error for error in schema_errors("EnrollmentCreated", detail))


def test_events_carry_amounts_in_minor_units_and_no_personal_data_beyond_the_student_id(
    bus: RecordingBus,
) -> None:
    for event in bus.published:
        assert isinstance(event.detail["amount_cents"], int)
        assert event.detail["schema_version"] == "1"
        assert not {"email", "phone_number", "given_name", "family_name", "card", "pan"} & set(
            event.detail
        )


def test_the_bus_entry_names_the_source_the_type_and_the_bus(bus: RecordingBus) -> None:
    # Given the adapter that puts events on the bus
    publisher = EventBridgePublisher("course-payments-dev", client=object())

    # When it shapes an entry
    entry = publisher.entry(bus.published[0])

    # Then EventBridge routes on the source and the type; the detail is the JSON object
    assert entry["Source"] == "course-payments"
    assert entry["DetailType"] == bus.published[0].detail_type
    assert entry["EventBusName"] == "course-payments-dev"
    assert isinstance(entry["Detail"], str)


def test_the_events_documentation_names_every_event_and_its_schema() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for detail_type in DetailType:
        assert f"`{detail_type}`" in text
        assert f"events/{detail_type}.schema.json" in text
