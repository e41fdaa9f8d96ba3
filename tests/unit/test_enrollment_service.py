"""The enrolment service over in-memory ports: grant once, revoke once, flag duplicates."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from coursepay.domain.payment import Payment, PaymentFlag, PaymentStatus
from coursepay.domain.records import Course, EnrollmentStatus, EventKind
from coursepay.services import enrollment as enrollment_module
from coursepay.services.enrollment import (
    DUPLICATE_EVENT_KEY,
    ENROLMENT_MESSAGE_KIND,
    DetailType,
    EnrollmentService,
    FailedStreamBatch,
    GrantOutcome,
    RevokeOutcome,
    TransferOutcome,
    enrolment_retry_message,
    is_enrolment_retry,
)
from coursepay.storage.catalog import GrantResult, RevokeResult, TransferResult
from coursepay.storage.errors import (
    CourseNotFound,
    PaymentNotFound,
    TransientStorageError,
)
from tests.support.aws import a_course
from tests.support.builders import (
    COURSE_ID,
    STUDENT_ID,
    a_payment,
    a_payment_in,
)
from tests.support.enrollment import (
    ENROLMENT_TIME,
    InMemoryEnrollments,
    RecordingBus,
    StreamOfChanges,
)
from tests.support.fakes import InMemoryPaymentStore, RecordingQueue

EVENTS = Path(__file__).resolve().parents[1] / "events"
NOW = ENROLMENT_TIME
S = PaymentStatus

PAID_EVENTS = [DetailType.PAYMENT_SUCCEEDED, DetailType.ENROLLMENT_CREATED]


@dataclass
class World:
    payments: InMemoryPaymentStore
    enrollments: InMemoryEnrollments
    bus: RecordingBus
    stream: StreamOfChanges
    service: EnrollmentService

    def store(self, payment: Payment) -> Payment:
        self.payments.payments[payment.payment_id] = payment
        return payment

    def enrolment(self, student_id: str = STUDENT_ID, course_id: str = COURSE_ID) -> Any:
        return self.enrollments.get(student_id, course_id)


def a_world(*stored: Payment, course: Course | None = None, no_course: bool = False) -> World:
    payments = InMemoryPaymentStore(*stored)
    courses = () if no_course else (course or a_course(),)
    enrollments = InMemoryEnrollments(payments, *courses)
    bus = RecordingBus()
    stream = StreamOfChanges()
    service = EnrollmentService(payments, enrollments, bus, stream, clock=lambda: NOW)
    return World(payments, enrollments, bus, stream, service)


def paid_world() -> tuple[World, Payment, Payment]:
    """A payment stored PAID, and the record of its PENDING -> PAID change."""
    before, after = a_payment(), a_payment_in(S.PAID)
    return a_world(after), before, after


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The metrics the enrolment service counts, by name, in order."""
    names: list[str] = []
    monkeypatch.setattr(enrollment_module, "count", lambda name, value=1: names.append(name))
    return names


# --- granting --------------------------------------------------------------------------------


def test_a_payment_that_becomes_paid_enrols_its_student_and_announces_both() -> None:
    # Given a payment that went from PENDING to PAID
    world, before, after = paid_world()

    # When the stream delivers the change
    outcome = world.service.on_payment_changed(before, after)

    # Then the student is enrolled once, counted, and both facts are published
    enrolment = world.enrolment()
    assert enrolment is not None
    assert (enrolment.status, enrolment.payment_id) == (EnrollmentStatus.ACTIVE, after.payment_id)
    assert world.enrollments.count(COURSE_ID) == 1
    assert outcome.enrolment == "GRANTED"
    assert world.bus.detail_types == PAID_EVENTS
    created = world.bus.of_type(DetailType.ENROLLMENT_CREATED)[0]
    assert created["enrolled_at"] == enrolment.enrolled_at == NOW


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(None, a_payment_in(S.PAID), id="inserted-paid"),
        pytest.param(a_payment_in(S.FAILED), a_payment_in(S.PAID), id="late-success-after-decline"),
        pytest.param(a_payment_in(S.EXPIRED), a_payment_in(S.PAID), id="late-success-after-expiry"),
        pytest.param(a_payment_in(S.UNDER_REVIEW), a_payment_in(S.PAID), id="override-from-review"),
        pytest.param(a_payment_in(S.REFUNDED), a_payment_in(S.PAID), id="override-from-refunded"),
        pytest.param(
            a_payment_in(S.FAILED), a_payment_in(S.PARTIALLY_REFUNDED), id="late-partial-refund"
        ),
    ],
)
def test_entering_an_entitling_status_from_any_other_enrols(
    before: Payment | None, after: Payment
) -> None:
    # Given a payment now stored in an entitling status
    world = a_world(after)

    # When the change into it arrives
    outcome = world.service.on_payment_changed(before, after)

    # Then the student is enrolled and counted once
    assert outcome.enrolment == "GRANTED"
    assert world.enrollments.count(COURSE_ID) == 1
    assert DetailType.ENROLLMENT_CREATED in world.bus.detail_types


def test_replaying_a_paid_record_enrols_once_and_repeats_the_same_events() -> None:
    # Given a paid payment whose record has been handled once
    world, before, after = paid_world()
    world.service.on_payment_changed(before, after)

    # When the same record arrives four more times
    outcomes = [world.service.on_payment_changed(before, after) for _ in range(4)]

    # Then nothing more is enrolled, and every repeat carries the first events' ids
    assert [o.enrolment for o in outcomes] == ["ALREADY_GRANTED"] * 4
    assert world.enrollments.count(COURSE_ID) == 1
    for detail_type in PAID_EVENTS:
        ids = {detail["event_id"] for detail in world.bus.of_type(detail_type)}
        assert len(ids) == 1, detail_type


def test_concurrent_replays_of_a_paid_record_enrol_once() -> None:
    # Given a paid payment
    world, before, after = paid_world()

    # When sixteen workers handle its record at the same time
    with ThreadPoolExecutor(max_workers=16) as pool:
        outcomes = list(
            pool.map(lambda _: world.service.on_payment_changed(before, after), range(16))
        )

    # Then exactly one of them granted the enrolment
    assert sorted(o.enrolment or "" for o in outcomes).count("GRANTED") == 1
    assert world.enrollments.count(COURSE_ID) == 1


def test_a_failed_publish_raises_and_its_retry_publishes_without_enrolling_again() -> None:
    # Given a paid payment, and a bus that refuses the first publish
    world, before, after = paid_world()
    world.bus.fail_next(TransientStorageError("EventBridge ThrottlingException"))

    # When the record is handled, fails, and is delivered again
    with pytest.raises(TransientStorageError):
        world.service.on_payment_changed(before, after)
    granted_before_retry = world.enrollments.count(COURSE_ID)
    retry = world.service.on_payment_changed(before, after)

    # Then the enrolment was made once, before the publish, and the retry announced it
    assert granted_before_retry == 1
    assert retry.enrolment == "ALREADY_GRANTED"
    assert world.enrollments.count(COURSE_ID) == 1
    assert world.bus.detail_types == PAID_EVENTS
    assert world.bus.of_type(DetailType.ENROLLMENT_CREATED)[0]["enrolled_at"] == NOW


def test_a_transient_storage_failure_raises_and_the_retry_enrols_once() -> None:
    # Given a paid payment, and a throttled first transaction
    world, before, after = paid_world()
    world.enrollments.fail_next(TransientStorageError("DynamoDB ThrottlingException"))

    # When the record fails once and is delivered again
    with pytest.raises(TransientStorageError):
        world.service.on_payment_changed(before, after)
    nothing_published = list(world.bus.published)
    outcome = world.service.on_payment_changed(before, after)

    # Then nothing was announced for the failed attempt, and the retry enrolled once
    assert nothing_published == []
    assert outcome.enrolment == "GRANTED"
    assert world.enrollments.count(COURSE_ID) == 1


def test_a_missing_course_fails_the_record_until_it_exists() -> None:
    # Given a paid payment for a course that does not exist
    after = a_payment_in(S.PAID)
    world = a_world(after, no_course=True)

    # When its record is handled
    with pytest.raises(CourseNotFound):
        world.service.on_payment_changed(a_payment(), after)

    # Then nothing is enrolled or announced; once the course exists, a retry enrols
    assert world.enrolment() is None
    assert world.bus.published == []
    world.enrollments.courses[COURSE_ID] = a_course()
    assert world.service.on_payment_changed(a_payment(), after).enrolment == "GRANTED"


def test_a_course_deactivated_after_checkout_still_enrols_who_paid(counted: list[str]) -> None:
    # Given a paid payment for a course deactivated since the student checked out
    # (this used to fail the record, and every retry, until the DLQ)
    after = a_payment_in(S.PAID)
    world = a_world(after, course=a_course(active=False))

    # When its record is handled
    outcome = world.service.on_payment_changed(a_payment(), after)

    # Then the student is enrolled, counted and announced; the inactive course is counted
    assert outcome.enrolment == "GRANTED"
    enrolment = world.enrolment()
    assert enrolment is not None
    assert (enrolment.status, enrolment.payment_id) == (EnrollmentStatus.ACTIVE, after.payment_id)
    assert world.enrollments.count(COURSE_ID) == 1
    assert world.bus.detail_types == PAID_EVENTS
    assert counted.count("EnrollmentIntoInactiveCourse") == 1
    assert counted.count("EnrollmentGranted") == 1


def test_a_payment_that_vanished_fails_the_record() -> None:
    # Given a record for a payment no longer stored
    world = a_world()

    # When it is handled
    with pytest.raises(PaymentNotFound):
        world.service.on_payment_changed(a_payment(), a_payment_in(S.PAID))

    # Then nothing happened
    assert world.enrollments.enrollments == {}
    assert world.bus.published == []


def test_a_stale_paid_record_does_not_enrol_a_payment_refunded_since() -> None:
    # Given a payment stored REFUNDED whose earlier PENDING -> PAID record arrives late
    world = a_world(a_payment_in(S.REFUNDED, version=5))

    # When the old record is handled
    outcome = world.service.on_payment_changed(a_payment(), a_payment_in(S.PAID))

    # Then no enrolment is made (the success itself is still a fact worth announcing)
    assert outcome.enrolment == "NOT_ENTITLED"
    assert world.enrolment() is None
    assert world.bus.detail_types == [DetailType.PAYMENT_SUCCEEDED]


# --- duplicates ------------------------------------------------------------------------------


def test_a_second_paid_payment_for_an_owned_course_is_flagged_and_not_counted() -> None:
    # Given a student enrolled by a first payment, and a second payment, now PAID
    first = a_payment_in(S.PAID, payment_id="pay_first")
    second = a_payment_in(S.PAID, payment_id="pay_second", paymob_order_id="217503799")
    world = a_world(first, second)
    world.service.on_payment_changed(a_payment(payment_id="pay_first"), first)

    # When the second payment's record arrives
    outcome = world.service.on_payment_changed(
        a_payment(payment_id="pay_second", paymob_order_id="217503799"), second
    )

    # Then the second is flagged through the state machine, with an audit entry, and the
    # enrolment and the count are the first payment's
    assert outcome.enrolment == "DUPLICATE_PAYMENT"
    flagged = world.payments.get("pay_second")
    assert flagged is not None
    assert PaymentFlag.DUPLICATE_PAYMENT in flagged.flags
    assert flagged.version == second.version + 1
    (audit,) = world.payments.events_under("pay_second")
    assert (audit.event_key, audit.kind, audit.decision) == (
        DUPLICATE_EVENT_KEY,
        EventKind.AUDIT,
        "DUPLICATE_PAYMENT",
    )
    assert audit.payload == {"enrolled_by_payment_id": "pay_first"}
    assert world.enrolment().payment_id == "pay_first"
    assert world.enrollments.count(COURSE_ID) == 1
    assert world.bus.of_type(DetailType.ENROLLMENT_CREATED)[0]["payment_id"] == "pay_first"
    assert len(world.bus.of_type(DetailType.ENROLLMENT_CREATED)) == 1


def test_replaying_a_duplicate_payment_record_flags_it_once() -> None:
    # Given a duplicate payment already flagged once
    first = a_payment_in(S.PAID, payment_id="pay_first")
    second = a_payment_in(S.PAID, payment_id="pay_second")
    world = a_world(first, second)
    world.service.on_payment_changed(None, first)
    world.service.on_payment_changed(None, second)
    writes = world.payments.writes

    # When its (now stale) record is handled again
    outcome = world.service.on_payment_changed(None, second)

    # Then the stored flag is found and nothing more is written
    assert outcome.enrolment == "DUPLICATE_PAYMENT"
    assert world.payments.writes == writes + 1  # the audit entry's dedupe refused the repeat
    assert len(world.payments.events_under("pay_second")) == 1


def test_a_duplicate_is_flagged_even_when_the_payment_moved_on_since_the_record() -> None:
    # Given a duplicate payment whose stored version is newer than the record's image
    first = a_payment_in(S.PAID, payment_id="pay_first")
    second = a_payment_in(S.PAID, payment_id="pay_second")
    newer = second.model_copy(update={"version": second.version + 2, "last_checked_at": NOW})
    world = a_world(first, newer)
    world.service.on_payment_changed(None, first)

    # When the record with the older image is handled
    world.service.on_payment_changed(None, second)

    # Then the flag lands on the stored payment, decided again from it
    stored = world.payments.get("pay_second")
    assert stored is not None
    assert PaymentFlag.DUPLICATE_PAYMENT in stored.flags
    assert stored.version == newer.version + 1


def test_the_flag_change_itself_is_announced_as_payment_flagged() -> None:
    # Given the stream record of the duplicate flag being written
    paid = a_payment_in(S.PAID)
    flagged = paid.model_copy(
        update={"flags": frozenset({PaymentFlag.DUPLICATE_PAYMENT}), "version": paid.version + 1}
    )
    world = a_world(flagged)

    # When it is handled
    outcome = world.service.on_payment_changed(paid, flagged)

    # Then PaymentFlagged names the new flag, and no enrolment is attempted
    assert outcome.enrolment is None
    assert world.enrollments.transactions == 0
    (detail,) = world.bus.of_type(DetailType.PAYMENT_FLAGGED)
    assert detail["flags_added"] == ["DUPLICATE_PAYMENT"]


# --- revoking --------------------------------------------------------------------------------


@pytest.mark.parametrize("revoking", [S.REFUNDED, S.VOIDED])
def test_a_refund_or_void_after_enrolment_revokes_once(revoking: PaymentStatus) -> None:
    # Given an enrolled student whose payment is now refunded (or voided)
    world, before, paid = paid_world()
    world.service.on_payment_changed(before, paid)
    reversed_ = a_payment_in(revoking, version=paid.version + 1)
    world.store(reversed_)

    # When the change arrives, and then the same record again
    first = world.service.on_payment_changed(paid, reversed_)
    second = world.service.on_payment_changed(paid, reversed_)

    # Then the enrolment is revoked and uncounted once; the repeat changes nothing
    assert (first.enrolment, second.enrolment) == ("REVOKED", "ALREADY_REVOKED")
    enrolment = world.enrolment()
    assert (enrolment.status, enrolment.revoked_at) == (EnrollmentStatus.REVOKED, NOW)
    assert world.enrollments.count(COURSE_ID) == 0
    revoked = world.bus.of_type(DetailType.ENROLLMENT_REVOKED)
    assert len(revoked) == 2
    assert revoked[0] == revoked[1]
    assert revoked[0]["payment_status"] == str(revoking)


def test_a_partial_refund_keeps_the_enrolment_and_a_later_full_refund_revokes_it() -> None:
    # Given an enrolled student
    world, before, paid = paid_world()
    world.service.on_payment_changed(before, paid)
    partial = a_payment_in(S.PARTIALLY_REFUNDED, version=paid.version + 1)
    full = a_payment_in(S.REFUNDED, version=paid.version + 2)

    # When a partial refund and then the rest arrive
    world.store(partial)
    on_partial = world.service.on_payment_changed(paid, partial)
    world.store(full)
    on_full = world.service.on_payment_changed(partial, full)

    # Then only the full refund revokes
    assert on_partial.ignored
    assert on_full.enrolment == "REVOKED"
    assert world.enrollments.count(COURSE_ID) == 0


def test_refunding_a_duplicate_payment_leaves_the_student_enrolled() -> None:
    # Given a student enrolled by a first payment and a flagged second payment
    first = a_payment_in(S.PAID, payment_id="pay_first")
    second = a_payment_in(S.PAID, payment_id="pay_second")
    world = a_world(first, second)
    world.service.on_payment_changed(None, first)
    world.service.on_payment_changed(None, second)
    refunded = a_payment_in(S.REFUNDED, payment_id="pay_second", version=9)
    world.store(refunded)

    # When the second payment is refunded
    outcome = world.service.on_payment_changed(second, refunded)

    # Then the first payment's enrolment stands
    assert outcome.enrolment == "NOT_GRANTED"
    assert world.enrolment().status is EnrollmentStatus.ACTIVE
    assert world.enrollments.count(COURSE_ID) == 1


def test_a_stale_refund_record_does_not_revoke_a_payment_paid_again() -> None:
    # Given an enrolled payment, refunded, then paid again by an admin override
    world, before, paid = paid_world()
    world.service.on_payment_changed(before, paid)
    refunded = a_payment_in(S.REFUNDED, version=paid.version + 1)
    world.store(paid.model_copy(update={"version": paid.version + 2}))

    # When the refund's record arrives after the override
    outcome = world.service.on_payment_changed(paid, refunded)

    # Then the enrolment stays
    assert outcome.enrolment == "STILL_ENTITLED"
    assert world.enrollments.count(COURSE_ID) == 1


@pytest.mark.parametrize("status", [S.FAILED, S.UNDER_REVIEW, S.PENDING, S.EXPIRED])
@pytest.mark.parametrize("entitling", [S.PAID, S.PARTIALLY_REFUNDED])
def test_an_override_out_of_an_entitling_status_revokes(
    entitling: PaymentStatus, status: PaymentStatus
) -> None:
    # Given an enrolled payment that an admin moves out of PAID (or PARTIALLY_REFUNDED) into
    # a status that does not entitle (only REFUNDED and VOIDED used to revoke)
    paid = a_payment_in(entitling)
    world = a_world(paid)
    world.service.on_payment_changed(None, paid)
    overridden = a_payment_in(status, flags=frozenset({PaymentFlag.ADMIN_OVERRIDE}), version=7)
    world.store(overridden)

    # When the override's record arrives
    outcome = world.service.on_payment_changed(paid, overridden)

    # Then the enrolment is revoked and uncounted, and the revocation names the status
    assert outcome.enrolment == "REVOKED"
    assert world.enrolment().status is EnrollmentStatus.REVOKED
    assert world.enrollments.count(COURSE_ID) == 0
    (revoked,) = world.bus.of_type(DetailType.ENROLLMENT_REVOKED)
    assert revoked["payment_status"] == str(status)


# --- the course follows the payments that still entitle -------------------------------------

FIRST, SECOND = "pay_first", "pay_second"


def held_twice(second_status: PaymentStatus = S.PAID) -> tuple[World, Payment, Payment]:
    """A student enrolled by a first payment, with a second payment stored in `second_status`.

    A second PAID payment went through the stream and was flagged DUPLICATE_PAYMENT.
    """
    first = a_payment_in(S.PAID, payment_id=FIRST, paymob_order_id="1", created_at="2024-06-01")
    second = a_payment_in(
        second_status, payment_id=SECOND, paymob_order_id="2", created_at="2024-06-02"
    )
    world = a_world(first, second)
    assert world.service.on_payment_changed(None, first).enrolment == "GRANTED"
    if second.entitles:
        assert world.service.on_payment_changed(None, second).enrolment == "DUPLICATE_PAYMENT"
    stored_second = world.payments.get(SECOND)
    assert stored_second is not None
    return world, first, stored_second


def refund(world: World, payment: Payment, status: PaymentStatus = S.REFUNDED) -> Payment:
    """Store `payment` moved to `status` (as the state machine would) and return it."""
    after = payment.model_copy(update={"status": status, "version": payment.version + 1})
    world.store(after)
    return after


@pytest.mark.parametrize("second_status", [S.PAID, S.PARTIALLY_REFUNDED])
@pytest.mark.parametrize("leaving", [S.REFUNDED, S.VOIDED, S.FAILED, S.UNDER_REVIEW])
def test_revoking_the_holder_moves_the_enrolment_to_another_entitling_payment(
    second_status: PaymentStatus, leaving: PaymentStatus, counted: list[str]
) -> None:
    # Given a student enrolled by a first payment, with a second entitling payment (a flagged
    # duplicate, say): refunding, voiding or overriding the first used to revoke the course
    world, first, second = held_twice(second_status)
    enrolled_at = world.enrolment().enrolled_at
    world.bus.published.clear()
    left = refund(world, first, leaving)

    # When the first payment's change arrives
    outcome = world.service.on_payment_changed(first, left)

    # Then the enrolment now names the second payment, still active, counted once
    assert outcome.enrolment == "TRANSFERRED"
    enrolment = world.enrolment()
    assert (enrolment.payment_id, enrolment.status) == (SECOND, EnrollmentStatus.ACTIVE)
    assert enrolment.enrolled_at == enrolled_at
    assert world.enrollments.count(COURSE_ID) == 1
    assert world.enrollments.marks[FIRST].revoked_at == NOW
    assert world.enrollments.marks[SECOND].enrolled_at == NOW
    assert "EnrollmentTransferred" in counted and "EnrollmentRevoked" not in counted

    # And the move is announced for the new holder, not as a revocation nor a new enrolment
    enrolment_events = [t for t in world.bus.detail_types if t.startswith("Enrollment")]
    assert enrolment_events == [DetailType.ENROLLMENT_TRANSFERRED]
    (moved,) = world.bus.of_type(DetailType.ENROLLMENT_TRANSFERRED)
    assert (moved["payment_id"], moved["previous_payment_id"]) == (SECOND, FIRST)
    assert (moved["transferred_at"], moved["enrolled_at"]) == (NOW, enrolled_at)
    assert moved["amount_cents"] == second.amount_cents


def test_a_replayed_transfer_moves_nothing_and_repeats_the_same_event() -> None:
    # Given an enrolment moved from a refunded first payment to a second one
    world, first, second = held_twice()
    refunded = refund(world, first)
    world.service.on_payment_changed(first, refunded)
    transactions = world.enrollments.transactions

    # When the refund's record comes again, and so does the second payment's PAID record
    again = world.service.on_payment_changed(first, refunded)
    paid_again = world.service.on_payment_changed(None, second)

    # Then nothing more is written, and both repeat the transfer's event with its first id
    assert again.enrolment == "ALREADY_TRANSFERRED"
    assert paid_again.enrolment == "ALREADY_GRANTED"
    assert world.enrollments.transactions == transactions + 2
    assert world.enrolment().payment_id == SECOND
    assert world.enrollments.count(COURSE_ID) == 1
    moved = world.bus.of_type(DetailType.ENROLLMENT_TRANSFERRED)
    assert len(moved) == 3
    assert moved[0] == moved[1] == moved[2]
    assert DetailType.ENROLLMENT_CREATED not in world.bus.detail_types[-2:]


def test_the_new_holder_refunded_in_turn_revokes_the_course() -> None:
    # Given an enrolment moved to a second payment after the first was refunded
    world, first, second = held_twice()
    world.service.on_payment_changed(first, refund(world, first))

    # When the second payment is refunded too
    outcome = world.service.on_payment_changed(second, refund(world, second))

    # Then no entitling payment is left: the enrolment is revoked and uncounted
    assert outcome.enrolment == "REVOKED"
    assert world.enrolment().status is EnrollmentStatus.REVOKED
    assert world.enrollments.count(COURSE_ID) == 0
    (revoked,) = world.bus.of_type(DetailType.ENROLLMENT_REVOKED)
    assert revoked["payment_id"] == SECOND


@pytest.mark.parametrize("second_status", [S.PENDING, S.FAILED, S.REFUNDED, S.UNDER_REVIEW])
def test_other_payments_that_do_not_entitle_do_not_keep_the_course(
    second_status: PaymentStatus,
) -> None:
    # Given an enrolled student whose other payment for the course does not entitle
    world, first, _ = held_twice(second_status)

    # When the enrolled payment is refunded
    outcome = world.service.on_payment_changed(first, refund(world, first))

    # Then the enrolment is revoked
    assert outcome.enrolment == "REVOKED"
    assert world.enrollments.count(COURSE_ID) == 0


def test_another_students_or_another_courses_payment_does_not_keep_the_course() -> None:
    # Given an enrolled payment, and PAID payments of another student and of another course
    first = a_payment_in(S.PAID, payment_id=FIRST)
    world = a_world(
        first,
        a_payment_in(S.PAID, payment_id="pay_other_student", student_id="someone-else"),
        a_payment_in(S.PAID, payment_id="pay_other_course", course_id="course-other"),
    )
    world.service.on_payment_changed(None, first)

    # When the enrolled payment is refunded
    outcome = world.service.on_payment_changed(first, refund(world, first))

    # Then nothing entitles this student to this course any more
    assert outcome.enrolment == "REVOKED"


def test_a_successor_that_stopped_entitling_meanwhile_is_passed_over() -> None:
    # Given an enrolled payment, and a second one the index still shows PAID but which is
    # stored REFUNDED by the time the move runs
    world, first, second = held_twice()
    refund(world, second)
    found = iter([second, None])
    world.enrollments.other_entitling_payment = (  # type: ignore[method-assign]
        lambda student_id, course_id, excluding: next(found)
    )

    # When the first payment is refunded
    outcome = world.service.on_payment_changed(first, refund(world, first))

    # Then the move is refused, nothing else entitles, and the enrolment is revoked
    assert outcome.enrolment == "REVOKED"
    assert world.enrollments.count(COURSE_ID) == 0


def test_a_grant_takes_over_an_enrolment_held_by_a_payment_that_no_longer_entitles() -> None:
    # Given a student enrolled by a first payment that has since been refunded, its own
    # record not yet handled, and a second payment now PAID
    first = a_payment_in(S.PAID, payment_id=FIRST, paymob_order_id="1")
    second = a_payment_in(S.PAID, payment_id=SECOND, paymob_order_id="2")
    world = a_world(first, second)
    world.service.on_payment_changed(None, first)
    refunded = refund(world, first)
    world.bus.published.clear()

    # When the second payment's PAID record is handled first
    outcome = world.service.on_payment_changed(None, second)

    # Then it takes the enrolment over instead of being flagged a duplicate
    assert outcome.enrolment == "TRANSFERRED"
    stored = world.payments.get(SECOND)
    assert stored is not None
    assert PaymentFlag.DUPLICATE_PAYMENT not in stored.flags
    assert world.enrolment().payment_id == SECOND
    assert world.enrollments.count(COURSE_ID) == 1
    assert world.bus.detail_types == [
        DetailType.PAYMENT_SUCCEEDED,
        DetailType.ENROLLMENT_TRANSFERRED,
    ]

    # And the first payment's refund record, arriving later, repeats the same move
    late = world.service.on_payment_changed(first, refunded)
    assert late.enrolment == "ALREADY_TRANSFERRED"
    moved = world.bus.of_type(DetailType.ENROLLMENT_TRANSFERRED)
    assert len(moved) == 2 and moved[0] == moved[1]
    assert world.enrollments.count(COURSE_ID) == 1


# --- what is not acted on ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(a_payment(), a_payment(last_checked_at=NOW, version=2), id="pending-checked"),
        pytest.param(
            a_payment_in(S.PAID), a_payment_in(S.PAID, enrolled_at=NOW), id="paid-marked-enrolled"
        ),
        pytest.param(
            a_payment_in(S.PAID), a_payment_in(S.PARTIALLY_REFUNDED), id="paid-partly-refunded"
        ),
        pytest.param(a_payment_in(S.REFUNDED), a_payment_in(S.VOIDED), id="refunded-then-voided"),
        pytest.param(a_payment_in(S.PAID), None, id="removed"),
    ],
)
def test_changes_that_do_not_concern_enrolment_are_ignored(
    before: Payment, after: Payment | None
) -> None:
    # Given a change that enters no entitling, revoking or failed status and adds no flag
    world = a_world(after or before)

    # When it is delivered anyway
    outcome = world.service.on_payment_changed(before, after)

    # Then nothing is read, written or published
    assert outcome.ignored
    assert world.enrollments.transactions == 0
    assert world.bus.requests == 0


def test_a_decline_is_announced_without_touching_enrolments() -> None:
    # Given a payment PayMob declined
    world = a_world(a_payment_in(S.FAILED))

    # When its change arrives
    world.service.on_payment_changed(a_payment(), a_payment_in(S.FAILED))

    # Then PaymentFailed carries PayMob's reason, and no enrolment was attempted
    (detail,) = world.bus.of_type(DetailType.PAYMENT_FAILED)
    assert detail["failure_reason"] == "Do not honour"
    assert world.enrollments.transactions == 0


# --- reconciling and retry messages -----------------------------------------------------


def test_reconcile_enrols_a_paid_payment_that_has_no_enrolment() -> None:
    # Given a payment stored PAID whose record was never handled
    world = a_world(a_payment_in(S.PAID))

    # When it is reconciled
    outcome = world.service.reconcile(a_payment_in(S.PAID).payment_id)

    # Then it is enrolled and announced
    assert outcome.enrolment == "GRANTED"
    assert world.bus.detail_types == [DetailType.ENROLLMENT_CREATED]


def test_reconcile_revokes_a_refunded_payment_still_enrolled() -> None:
    # Given an enrolled payment stored REFUNDED whose refund record was lost
    world, before, paid = paid_world()
    world.service.on_payment_changed(before, paid)
    world.store(a_payment_in(S.REFUNDED, version=paid.version + 1))

    # When it is reconciled, twice
    first = world.service.reconcile(paid.payment_id)
    second = world.service.reconcile(paid.payment_id)

    # Then it is revoked once
    assert (first.enrolment, second.enrolment) == ("REVOKED", "ALREADY_REVOKED")
    assert world.enrollments.count(COURSE_ID) == 0


def test_reconcile_revokes_a_payment_overridden_out_of_paid_that_was_enrolled() -> None:
    # Given an enrolled payment an admin moved to FAILED, whose record was lost: as storage
    # reads it back, it carries its enrolment mark
    world, before, paid = paid_world()
    world.service.on_payment_changed(before, paid)
    world.store(a_payment_in(S.FAILED, version=paid.version + 1, enrolled_at=NOW))

    # When it is reconciled
    outcome = world.service.reconcile(paid.payment_id)

    # Then its enrolment is revoked
    assert outcome.enrolment == "REVOKED"
    assert world.enrollments.count(COURSE_ID) == 0


def test_reconcile_leaves_a_pending_payment_alone_and_refuses_an_unknown_one() -> None:
    # Given a pending payment
    world = a_world(a_payment())

    # When it, and a payment that does not exist, are reconciled
    outcome = world.service.reconcile(a_payment().payment_id)
    with pytest.raises(PaymentNotFound):
        world.service.reconcile("pay_missing")

    # Then nothing was enrolled
    assert outcome.enrolment is None
    assert world.enrollments.transactions == 0


def test_an_enrolment_message_from_the_retry_queue_reconciles_its_payment() -> None:
    # Given a paid payment and the retry message for it
    world = a_world(a_payment_in(S.PAID))
    message = enrolment_retry_message(a_payment_in(S.PAID).payment_id)

    # When the retry path handles it
    assert is_enrolment_retry(message)
    (outcome,) = world.service.retry(message)

    # Then the payment is enrolled
    assert message["kind"] == ENROLMENT_MESSAGE_KIND
    assert outcome.enrolment == "GRANTED"


def on_failure_record() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / "enroll_on_failure_record.json").read_text())
    return loaded


def test_lambdas_on_failure_record_replays_the_records_it_names() -> None:
    # Given the stream holds a paid payment's change at the sequence number Lambda gave up on
    record = on_failure_record()
    info = record["DDBStreamBatchInfo"]
    world, before, after = paid_world()
    world.stream.changes = [
        (str(int(info["startSequenceNumber"]) - 1), a_payment(), a_payment(version=2)),
        (info["startSequenceNumber"], before, after),
    ]

    # When the retry path handles Lambda's invocation record
    assert is_enrolment_retry(record)
    outcomes = world.service.retry(record)

    # Then it read that range back and replayed only the record in it
    assert world.stream.reads == [
        (
            info["streamArn"],
            info["shardId"],
            info["startSequenceNumber"],
            info["endSequenceNumber"],
        )
    ]
    assert [o.enrolment for o in outcomes] == ["GRANTED"]
    assert world.enrollments.count(COURSE_ID) == 1


def test_the_on_failure_record_parses_into_where_the_records_are() -> None:
    # Given Lambda's invocation record for a failed stream batch
    record = on_failure_record()

    # When it is parsed
    batch = FailedStreamBatch.from_invocation_record(record)

    # Then it names the stream, shard, range and why Lambda gave up
    assert batch.stream_arn.endswith("/stream/2024-06-13T11:00:00.000")
    assert batch.shard_id == record["DDBStreamBatchInfo"]["shardId"]
    assert batch.batch_size == 1
    assert batch.condition == "RetryAttemptsExhausted"
    assert batch.invoke_count == 4


@pytest.mark.parametrize(
    ("message", "claimed"),
    [
        pytest.param({"kind": "paymob-callback", "body": "{}"}, False, id="callback"),
        pytest.param(["DDBStreamBatchInfo"], False, id="not-an-object"),
        pytest.param({"kind": ENROLMENT_MESSAGE_KIND}, True, id="enrolment-without-payment"),
    ],
)
def test_messages_the_enrolment_path_cannot_act_on_are_refused(message: Any, claimed: bool) -> None:
    # Given a retry message of another path, or an enrolment message naming no payment
    world = a_world()

    # When the retry handler asks whose it is
    ours = is_enrolment_retry(message)

    # Then other paths' messages are left to them, and a malformed enrolment one is refused
    assert ours is claimed
    if ours:
        with pytest.raises(ValueError, match="not an enrolment retry message"):
            world.service.retry(message)


def test_the_service_knows_every_answer_storage_can_give() -> None:
    # Storage's enums live beside boto3, which the service may not import: same values.
    assert {str(r) for r in GrantResult} == {str(o) for o in GrantOutcome}
    assert {str(r) for r in RevokeResult} == {str(o) for o in RevokeOutcome}
    assert {str(r) for r in TransferResult} == {str(o) for o in TransferOutcome}


def test_a_replayed_record_that_keeps_failing_does_not_hold_back_the_others() -> None:
    # Given Lambda gave up on a range holding a payment for a course that no longer exists
    # and another student's paid payment
    record = on_failure_record()
    start = record["DDBStreamBatchInfo"]["startSequenceNumber"]
    orphaned = a_payment_in(S.PAID, payment_id="pay-gone-course", course_id="deleted-course")
    other = a_payment_in(S.PAID, payment_id="pay-other", student_id="student-2")
    world = a_world(orphaned, other)
    queue = RecordingQueue()
    world.service = EnrollmentService(
        world.payments,
        world.enrollments,
        world.bus,
        world.stream,
        retry_queue=queue,
        clock=lambda: NOW,
    )
    world.stream.changes = [
        (start, orphaned.model_copy(update={"status": S.PENDING}), orphaned),
        (start, other.model_copy(update={"status": S.PENDING}), other),
    ]

    # When the retry path replays it
    outcomes = world.service.retry(record)

    # Then the other student is enrolled, and the failing payment goes on as its own message
    assert [o.payment_id for o in outcomes] == ["pay-other"]
    assert world.enrolment("student-2") is not None
    [requeued] = queue.messages
    assert requeued["payment_id"] == "pay-gone-course"

    # And once its course exists, that message enrols the student with the record's events
    world.enrollments.courses["deleted-course"] = a_course(course_id="deleted-course")
    (outcome,) = world.service.retry(requeued)
    assert outcome.enrolment == "GRANTED"
    assert DetailType.PAYMENT_SUCCEEDED in outcome.published


def test_a_failing_replayed_record_that_cannot_be_requeued_fails_the_message() -> None:
    record = on_failure_record()
    start = record["DDBStreamBatchInfo"]["startSequenceNumber"]
    orphaned = a_payment_in(S.PAID, course_id="deleted-course")
    world = a_world(orphaned)
    world.stream.changes = [(start, orphaned.model_copy(update={"status": S.PENDING}), orphaned)]

    with pytest.raises(TransientStorageError):
        world.service.retry(record)
