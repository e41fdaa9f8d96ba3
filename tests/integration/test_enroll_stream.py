"""The enroll function against moto: stream records in, one enrolment and the domain events out."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord

from coursepay.domain.payment import Payment, PaymentFlag, PaymentStatus
from coursepay.domain.records import EnrollmentStatus
from coursepay.domain.state_machine import Decision, DecisionReason, decide
from coursepay.services.enrollment import DUPLICATE_EVENT_KEY, EnrollmentService
from coursepay.storage.bus import EventBridgePublisher
from coursepay.storage.catalog import CourseRepository, EnrollmentRepository
from coursepay.storage.payments import PaymentRepository
from functions.enroll import handle_enroll
from tests.support.aws import AwsStack, FaultyClient, Store, client_error
from tests.support.builders import (
    AMOUNT_CENTS,
    COURSE_ID,
    NOW,
    STUDENT_ID,
    a_payment,
    a_payment_in,
    a_stream_event,
    a_stream_record,
    refunded_fact,
)
from tests.support.enrollment import (
    DomainEventCapture,
    every_stream_record,
    fresh_enrolment_containers,
    schema_errors,
)
from tests.support.events import lambda_context

S = PaymentStatus
PAID_SEQUENCE = "4100000000011111111111"


@dataclass
class EnrollFunction:
    """The enroll function in its template environment, and what it put on the bus."""

    aws: AwsStack
    environment: dict[str, str]
    bus: DomainEventCapture

    def invoke(self, *records: dict[str, Any]) -> list[str]:
        """Deliver a batch; the sequence numbers it reported as failed."""
        response = handle_enroll.lambda_handler(a_stream_event(*records), lambda_context("enroll"))
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    def published(self) -> list[dict[str, Any]]:
        return self.bus.drain()


@pytest.fixture
def enroll(aws: AwsStack, lambda_environment: Any) -> Iterator[EnrollFunction]:
    environment = lambda_environment("EnrollFunction")
    fresh_enrolment_containers()
    yield EnrollFunction(
        aws, environment, DomainEventCapture(aws.sqs, aws.events, environment["EVENT_BUS_NAME"])
    )
    fresh_enrolment_containers()


def course_count(courses: CourseRepository) -> int:
    course = courses.get(COURSE_ID, consistent=True)
    assert course is not None
    return course.enrollment_count


def types_and_ids(events: list[dict[str, Any]]) -> Counter[tuple[str, str]]:
    return Counter((e["detail-type"], e["detail"]["event_id"]) for e in events)


def assert_valid(events: list[dict[str, Any]]) -> None:
    for event in events:
        assert event["source"] == "course-payments"
        assert schema_errors(event["detail-type"], event["detail"]) == []


def a_paid_payment_stored(store: Store) -> tuple[Payment, Payment]:
    """The course, and a payment stored PAID; returns its PENDING and PAID images."""
    store.course()
    paid = store.payment(a_payment_in(S.PAID))
    return a_payment(), paid


# --- enrolling exactly once ---------------------------------------------------------------


def test_a_paid_record_enrols_once_however_often_it_is_delivered(
    enroll: EnrollFunction,
    store: Store,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given a payment stored PAID, and the stream record of its PENDING -> PAID change
    pending, paid = a_paid_payment_stored(store)
    record = a_stream_record(pending, paid, sequence_number=PAID_SEQUENCE)

    # When Lambda delivers the record five times
    failures = [enroll.invoke(record) for _ in range(5)]

    # Then every delivery succeeded, one enrolment exists, counted once
    assert failures == [[]] * 5
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert (enrolment.status, enrolment.payment_id) == (EnrollmentStatus.ACTIVE, paid.payment_id)
    assert course_count(courses) == 1

    # And the bus got the same two events each time, with the same ids, as documented
    published = enroll.published()
    assert_valid(published)
    counted = types_and_ids(published)
    assert sorted(detail_type for detail_type, _ in counted) == [
        "EnrollmentCreated",
        "PaymentSucceeded",
    ]
    assert set(counted.values()) == {5}
    created = next(e for e in published if e["detail-type"] == "EnrollmentCreated")
    assert created["detail"]["enrolled_at"] == enrolment.enrolled_at


def test_concurrent_deliveries_of_one_record_enrol_once(
    enroll: EnrollFunction,
    store: Store,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given a paid payment's record
    pending, paid = a_paid_payment_stored(store)
    record = a_stream_record(pending, paid)

    # When twelve workers handle it at once
    with ThreadPoolExecutor(max_workers=12) as pool:
        outcomes = list(
            pool.map(lambda _: handle_enroll.handle_record(DynamoDBRecord(record)), range(12))
        )

    # Then exactly one granted; the others found it granted
    assert Counter(o.enrolment for o in outcomes) == {"GRANTED": 1, "ALREADY_GRANTED": 11}
    assert course_count(courses) == 1
    assert enrollments.get(STUDENT_ID, COURSE_ID) is not None


def test_a_throttled_transaction_fails_the_record_and_its_retry_enrols_once(
    enroll: EnrollFunction,
    aws: AwsStack,
    store: Store,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given a paid payment's record, and DynamoDB throttling the first transaction
    pending, paid = a_paid_payment_stored(store)
    record = a_stream_record(pending, paid, sequence_number=PAID_SEQUENCE)
    faulty = FaultyClient(aws.dynamodb).fail(
        "transact_write_items", client_error("ThrottlingException", "Rate exceeded")
    )
    service = EnrollmentService(
        PaymentRepository(aws.payments_table, aws.webhooks_table, client=aws.dynamodb),
        EnrollmentRepository(
            aws.enrollments_table, aws.courses_table, aws.payments_table, client=faulty
        ),
        EventBridgePublisher(enroll.environment["EVENT_BUS_NAME"], client=aws.events),
    )
    monkeypatch.setattr(handle_enroll, "enrollment_service", lambda: service)

    # When Lambda delivers the record, it fails, and Lambda delivers it again
    first = enroll.invoke(record)
    after_failure = (enrollments.get(STUDENT_ID, COURSE_ID), enroll.published())
    second = enroll.invoke(record)

    # Then the failure named the record, nothing happened for it, and the retry enrolled once
    assert first == [PAID_SEQUENCE]
    assert after_failure == (None, [])
    assert second == []
    assert faulty.calls["transact_write_items"] == 2
    assert course_count(courses) == 1
    assert {e["detail-type"] for e in enroll.published()} == {
        "PaymentSucceeded",
        "EnrollmentCreated",
    }


def test_one_failing_record_does_not_fail_the_others_in_its_batch(
    enroll: EnrollFunction, store: Store, courses: CourseRepository
) -> None:
    # Given a batch: a payment for a course that does not exist, then a payable one
    store.course()
    orphan = store.payment(
        a_payment_in(S.PAID, payment_id="pay_orphan", course_id="course-gone", paymob_order_id="9")
    )
    paid = store.payment(a_payment_in(S.PAID))
    batch = [
        a_stream_record(a_payment(payment_id="pay_orphan"), orphan, sequence_number="410001"),
        a_stream_record(a_payment(), paid, sequence_number="410002"),
    ]

    # When Lambda delivers it
    failures = enroll.invoke(*batch)

    # Then only the first is reported, and the second was enrolled
    assert failures == ["410001"]
    assert course_count(courses) == 1


def test_a_course_deactivated_after_checkout_still_enrols_who_paid_for_it(
    enroll: EnrollFunction,
    store: Store,
    courses: CourseRepository,
    enrollments: EnrollmentRepository,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Given a paid payment for a course deactivated since checkout (this used to fail the
    # record on every delivery, until it reached the DLQ)
    store.course(active=False)
    paid = store.payment(a_payment_in(S.PAID))
    record = a_stream_record(a_payment(), paid, sequence_number=PAID_SEQUENCE)

    # When the record is delivered
    failures = enroll.invoke(record)

    # Then the student is enrolled, counted and announced; the course stays inactive
    assert failures == []
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert (enrolment.status, enrolment.payment_id) == (EnrollmentStatus.ACTIVE, paid.payment_id)
    assert course_count(courses) == 1
    course = courses.get(COURSE_ID, consistent=True)
    assert course is not None and not course.active
    assert {e["detail-type"] for e in enroll.published()} == {
        "PaymentSucceeded",
        "EnrollmentCreated",
    }

    # And it is logged and counted for the course's owner
    assert "enrolment into an inactive course" in caplog.messages
    assert '"EnrollmentIntoInactiveCourse":[1.0]' in capsys.readouterr().out


def test_a_record_for_a_payment_that_vanished_fails(enroll: EnrollFunction, store: Store) -> None:
    # Given a record for a payment that is not stored
    store.course()
    record = a_stream_record(a_payment(), a_payment_in(S.PAID), sequence_number=PAID_SEQUENCE)

    # When it is delivered, Then it is reported, never dropped
    assert enroll.invoke(record) == [PAID_SEQUENCE]
    assert enroll.published() == []


# --- revoking ----------------------------------------------------------------------------------


def test_a_refund_after_enrolment_revokes_once_and_a_second_refund_record_changes_nothing(
    enroll: EnrollFunction,
    store: Store,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given an enrolled student
    pending, paid = a_paid_payment_stored(store)
    assert enroll.invoke(a_stream_record(pending, paid)) == []
    enroll.published()

    # When the payment is refunded and the refund's record is delivered twice
    stored = payments.get(paid.payment_id)
    assert stored is not None
    decision = decide(stored, refunded_fact(AMOUNT_CENTS), NOW)
    assert decision.after.status is S.REFUNDED
    payments.save(decision)
    refunded = decision.after
    first = enroll.invoke(a_stream_record(stored, refunded, sequence_number="410010"))
    revoked = enrollments.get(STUDENT_ID, COURSE_ID)
    second = enroll.invoke(a_stream_record(stored, refunded, sequence_number="410010"))

    # Then the enrolment is revoked and uncounted once; the repeat changes nothing
    assert first == second == []
    assert revoked is not None
    assert revoked.status is EnrollmentStatus.REVOKED
    assert enrollments.get(STUDENT_ID, COURSE_ID) == revoked
    assert course_count(courses) == 0
    published = enroll.published()
    assert_valid(published)
    assert [e["detail-type"] for e in published] == ["EnrollmentRevoked"] * 2
    assert published[0]["detail"] == published[1]["detail"]


# --- duplicates and flags ----------------------------------------------------------------


def stream_records(aws: AwsStack) -> list[dict[str, Any]]:
    """Every record the Payments table's stream holds, read as the retry path reads them."""
    return every_stream_record(aws.resources.get_att("PaymentsTable", "StreamArn"))


def test_a_second_payment_for_an_owned_course_is_flagged_not_counted_and_announced(
    enroll: EnrollFunction,
    aws: AwsStack,
    store: Store,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given a student enrolled by a first payment, and a second payment for the course, PAID
    first = store.payment(a_payment_in(S.PAID, payment_id="pay_first", paymob_order_id="1"))
    store.course()
    second = store.payment(a_payment_in(S.PAID, payment_id="pay_second", paymob_order_id="2"))
    assert enroll.invoke(a_stream_record(a_payment(payment_id="pay_first"), first)) == []

    # When the second payment's record is delivered
    failures = enroll.invoke(a_stream_record(a_payment(payment_id="pay_second"), second))

    # Then the second payment is flagged through the state machine, with its audit entry,
    # and the count and the enrolment stay the first payment's
    assert failures == []
    flagged = payments.get("pay_second")
    assert flagged is not None
    assert flagged.flags == {PaymentFlag.DUPLICATE_PAYMENT}
    assert flagged.status is S.PAID
    audit = [e for e in payments.events_for("pay_second") if e.event_key == DUPLICATE_EVENT_KEY]
    assert [a.payload for a in audit] == [{"enrolled_by_payment_id": "pay_first"}]
    assert course_count(courses) == 1
    held = enrollments.get(STUDENT_ID, COURSE_ID)
    assert held is not None
    assert held.payment_id == "pay_first"

    # And the flag's own change, read from the table's stream, announces PaymentFlagged
    (flag_change,) = [
        r
        for r in stream_records(aws)
        if r["dynamodb"]["Keys"]["payment_id"]["S"] == "pay_second"
        and "flags" in r["dynamodb"].get("NewImage", {})
    ]
    enroll.published()
    assert enroll.invoke(flag_change) == []
    (announced,) = enroll.published()
    assert announced["detail-type"] == "PaymentFlagged"
    assert announced["detail"]["flags_added"] == ["DUPLICATE_PAYMENT"]
    assert_valid([announced])


def test_a_change_that_does_not_concern_enrolment_is_not_acted_on(
    enroll: EnrollFunction, store: Store, enrollments: EnrollmentRepository
) -> None:
    # Given a pending payment whose last PayMob check was recorded (its status unchanged)
    store.course()
    pending = store.payment(a_payment())
    checked = pending.model_copy(update={"last_checked_at": NOW, "version": pending.version + 1})

    # When such a record reaches the function anyway
    failures = enroll.invoke(a_stream_record(pending, checked))

    # Then nothing is enrolled or announced
    assert failures == []
    assert enrollments.get(STUDENT_ID, COURSE_ID) is None
    assert enroll.published() == []


# --- the course follows the payments that still entitle -------------------------------------


def test_refunding_the_holding_payment_moves_the_course_to_the_students_other_payment(
    enroll: EnrollFunction,
    store: Store,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given a student enrolled by a first payment, and a second PAID payment for the course,
    # flagged DUPLICATE_PAYMENT
    store.course()
    first = store.payment(
        a_payment_in(S.PAID, payment_id="pay_first", paymob_order_id="1", created_at="2024-06-01")
    )
    second = store.payment(
        a_payment_in(S.PAID, payment_id="pay_second", paymob_order_id="2", created_at="2024-06-02")
    )
    assert enroll.invoke(a_stream_record(a_payment(payment_id="pay_first"), first)) == []
    assert enroll.invoke(a_stream_record(a_payment(payment_id="pay_second"), second)) == []
    enroll.published()

    # When the first payment is refunded in full and the record delivered twice
    stored = payments.get("pay_first")
    assert stored is not None
    decision = decide(stored, refunded_fact(AMOUNT_CENTS), NOW)
    payments.save(decision)
    record = a_stream_record(stored, decision.after, sequence_number="410020")
    failures = [enroll.invoke(record), enroll.invoke(record)]

    # Then the student keeps the course, now held by the second payment, counted once
    assert failures == [[], []]
    held = enrollments.get(STUDENT_ID, COURSE_ID)
    assert held is not None
    assert (held.payment_id, held.status) == ("pay_second", EnrollmentStatus.ACTIVE)
    assert course_count(courses) == 1
    holder = payments.get("pay_second")
    assert holder is not None and holder.enrolled_at is not None

    # And the move is announced twice with one id, as documented; nothing was revoked
    published = [e for e in enroll.published() if e["detail-type"].startswith("Enrollment")]
    assert_valid(published)
    assert [e["detail-type"] for e in published] == ["EnrollmentTransferred"] * 2
    assert published[0]["detail"] == published[1]["detail"]
    detail = published[0]["detail"]
    assert (detail["payment_id"], detail["previous_payment_id"]) == ("pay_second", "pay_first")
    assert detail["transferred_at"] == holder.enrolled_at


@pytest.mark.parametrize("status", [S.FAILED, S.UNDER_REVIEW, S.PENDING, S.EXPIRED])
def test_an_override_out_of_paid_revokes_the_enrolment(
    enroll: EnrollFunction,
    store: Store,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
    status: PaymentStatus,
) -> None:
    # Given an enrolled student
    pending, paid = a_paid_payment_stored(store)
    assert enroll.invoke(a_stream_record(pending, paid)) == []
    enroll.published()

    # When an admin moves the payment out of PAID into a status that does not entitle
    stored = payments.get(paid.payment_id)
    assert stored is not None
    overridden = stored.model_copy(update={"status": status, "version": stored.version + 1})
    payments.save(Decision(stored, overridden, DecisionReason.OVERRIDDEN))
    failures = enroll.invoke(a_stream_record(stored, overridden, sequence_number="410030"))

    # Then the enrolment is revoked and uncounted, and the revocation says why
    assert failures == []
    revoked = enrollments.get(STUDENT_ID, COURSE_ID)
    assert revoked is not None
    assert revoked.status is EnrollmentStatus.REVOKED
    assert course_count(courses) == 0
    published = enroll.published()
    assert_valid(published)
    (event,) = [e for e in published if e["detail-type"] == "EnrollmentRevoked"]
    assert event["detail"]["payment_status"] == str(status)
