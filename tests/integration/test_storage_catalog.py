"""Courses and enrolments against moto: exactly-once grants and revocations, counted once."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from coursepay.domain.payment import Payment, PaymentStatus
from coursepay.domain.records import Enrollment, EnrollmentStatus
from coursepay.domain.state_machine import Decision, DecisionReason
from coursepay.storage.catalog import (
    CourseRepository,
    EnrollmentRepository,
    GrantResult,
    Handover,
    RevokeResult,
    TransferResult,
)
from coursepay.storage.errors import (
    CourseNotFound,
    PaymentNotFound,
    TransientStorageError,
)
from coursepay.storage.payments import PaymentRepository
from tests.support.aws import AwsStack, FaultyClient, Store, a_course, client_error
from tests.support.builders import COURSE_ID, NOW, STUDENT_ID, a_payment_in

LATER = "2024-06-14T09:00:00+00:00"


def enrollment_count(courses: CourseRepository) -> int:
    course = courses.get(COURSE_ID, consistent=True)
    assert course is not None
    return course.enrollment_count


def payment_marks(aws: AwsStack, payment_id: str) -> dict[str, str]:
    """The enrolment marks the transactions keep on the payment item."""
    item = aws.dynamodb.get_item(
        TableName=aws.payments_table, Key={"payment_id": {"S": payment_id}}
    )["Item"]
    return {
        name: item[name]["S"] for name in ("enrolled_at", "enrollment_revoked_at") if name in item
    }


def refunded(
    payments: PaymentRepository, payment: Payment, status: PaymentStatus = PaymentStatus.REFUNDED
) -> Payment:
    """The stored payment, now REFUNDED (as the state machine would have saved it)."""
    stored = payments.get(payment.payment_id)
    assert stored is not None
    after = stored.model_copy(update={"status": status, "version": stored.version + 1})
    payments.save(Decision(stored, after, DecisionReason.REFUND_APPLIED))
    return after


# --- the catalogue ---------------------------------------------------------------------------


def test_a_course_is_stored_and_read_back(courses: CourseRepository) -> None:
    # Given a new course
    course = a_course()

    # When an admin puts it
    stored = courses.put(course)

    # Then it reads back as put, with no enrolments yet
    assert stored == course
    assert courses.get(COURSE_ID) == course
    assert courses.get("no-such-course") is None


def test_editing_a_course_keeps_its_enrolment_count(
    store: Store, courses: CourseRepository
) -> None:
    # Given a course with 41 enrolments
    store.course(enrollment_count=41)

    # When an admin edits its price and title from a copy that says zero enrolments
    edited = courses.put(a_course(title="Python 101 (2024)", price_cents=99_000))

    # Then the edit applies and the count the enrolments maintain is kept
    assert edited.title == "Python 101 (2024)"
    assert edited.price_cents == 99_000
    assert edited.enrollment_count == 41


def test_the_active_catalogue_lists_active_courses_by_title(
    store: Store, courses: CourseRepository
) -> None:
    # Given three active courses and a retired one
    store.course(course_id="c-3", title="Rust")
    store.course(course_id="c-1", title="Go")
    store.course(course_id="c-2", title="Python")
    store.course(course_id="c-0", title="COBOL", active=False)

    # When the catalogue is listed
    # Then only the active ones come back, by title
    assert [c.course_id for c in courses.list_active()] == ["c-1", "c-2", "c-3"]


# --- granting ------------------------------------------------------------------------------


@pytest.fixture
def paid_payment(store: Store) -> Payment:
    """A PAID payment for the default course, which exists and is open."""
    store.course()
    return store.payment(a_payment_in(PaymentStatus.PAID))


def test_granting_enrols_counts_and_marks_the_payment_at_once(
    aws: AwsStack,
    paid_payment: Payment,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given a paid payment for an open course
    # When the enrolment is granted
    result = enrollments.grant(paid_payment, NOW)

    # Then the student is enrolled by this payment, counted once, and the payment marked
    assert result is GrantResult.GRANTED
    assert enrollments.get(STUDENT_ID, COURSE_ID) == Enrollment(
        student_id=STUDENT_ID,
        course_id=COURSE_ID,
        payment_id=paid_payment.payment_id,
        status=EnrollmentStatus.ACTIVE,
        enrolled_at=NOW,
    )
    assert enrollment_count(courses) == 1
    assert payment_marks(aws, paid_payment.payment_id) == {"enrolled_at": NOW}


def test_replaying_a_grant_any_number_of_times_enrols_once(
    paid_payment: Payment, enrollments: EnrollmentRepository, courses: CourseRepository
) -> None:
    # Given a granted enrolment
    enrollments.grant(paid_payment, NOW)

    # When the same grant is replayed (stream retries, the retry queue, an admin reprocess)
    replays = [enrollments.grant(paid_payment, LATER) for _ in range(5)]

    # Then each replay is recognised and nothing is counted twice
    assert replays == [GrantResult.ALREADY_GRANTED] * 5
    assert enrollment_count(courses) == 1
    assert len(enrollments.list_for_student(STUDENT_ID)) == 1


def test_concurrent_grants_of_one_payment_enrol_once(
    paid_payment: Payment, enrollments: EnrollmentRepository, courses: CourseRepository
) -> None:
    # Given ten workers granting the same payment at once
    start = threading.Barrier(10)

    def grant(_: int) -> GrantResult:
        start.wait()
        return enrollments.grant(paid_payment, NOW)

    # When they run
    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(grant, range(10)))

    # Then one grants, the others see it granted, and the course counts one student
    assert sorted(results) == [GrantResult.ALREADY_GRANTED] * 9 + [GrantResult.GRANTED]
    assert enrollment_count(courses) == 1


def test_a_second_payment_for_an_owned_course_is_a_duplicate(
    store: Store,
    paid_payment: Payment,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given the student holds the course through one payment
    enrollments.grant(paid_payment, NOW)
    second = store.payment(
        a_payment_in(PaymentStatus.PAID, payment_id="pay_second", paymob_order_id="555")
    )

    # When a second paid payment of the same course is granted
    result = enrollments.grant(second, LATER)

    # Then it is reported as a duplicate payment; the enrolment and the count stay as they were
    assert result is GrantResult.DUPLICATE_PAYMENT
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert enrolment.payment_id == paid_payment.payment_id
    assert enrollment_count(courses) == 1


@pytest.mark.parametrize(
    "status", [PaymentStatus.PENDING, PaymentStatus.REFUNDED, PaymentStatus.UNDER_REVIEW]
)
def test_a_payment_that_does_not_entitle_is_not_granted(
    store: Store,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
    status: PaymentStatus,
) -> None:
    # Given the stored payment is not (or no longer) paid
    store.course()
    payment = store.payment(a_payment_in(status))

    # When an enrolment is granted for it (say, from a stale stream record)
    result = enrollments.grant(payment.model_copy(update={"status": PaymentStatus.PAID}), NOW)

    # Then the stored status decides: nothing is granted
    assert result is GrantResult.NOT_ENTITLED
    assert enrollments.get(STUDENT_ID, COURSE_ID) is None
    assert enrollment_count(courses) == 0


def test_granting_for_a_missing_course_fails_and_writes_nothing(
    aws: AwsStack, store: Store, enrollments: EnrollmentRepository
) -> None:
    # Given a paid payment whose course does not exist
    payment = store.payment(a_payment_in(PaymentStatus.PAID))

    # When the enrolment is granted
    # Then it is refused, and nothing is enrolled or marked
    with pytest.raises(CourseNotFound):
        enrollments.grant(payment, NOW)
    assert enrollments.get(STUDENT_ID, COURSE_ID) is None
    assert payment_marks(aws, payment.payment_id) == {}


def test_a_course_deactivated_after_checkout_still_takes_the_paid_enrolment(
    aws: AwsStack,
    store: Store,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given a paid payment whose course was deactivated since checkout (this used to raise
    # CourseInactive, on every retry, until the record reached the DLQ)
    store.course(active=False, enrollment_count=7)
    payment = store.payment(a_payment_in(PaymentStatus.PAID))

    # When the enrolment is granted, and replayed
    result = enrollments.grant(payment, NOW)
    replay = enrollments.grant(payment, LATER)

    # Then the student is enrolled and counted once, and the answer says the course is inactive
    assert result is GrantResult.GRANTED_INACTIVE_COURSE
    assert replay is GrantResult.ALREADY_GRANTED
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert (enrolment.payment_id, enrolment.status) == (payment.payment_id, EnrollmentStatus.ACTIVE)
    assert enrollment_count(courses) == 8
    assert payment_marks(aws, payment.payment_id) == {"enrolled_at": NOW}


def test_granting_for_an_unknown_payment_fails(
    store: Store, enrollments: EnrollmentRepository
) -> None:
    store.course()
    with pytest.raises(PaymentNotFound):
        enrollments.grant(a_payment_in(PaymentStatus.PAID, payment_id="pay_ghost"), NOW)


def test_a_contended_grant_is_transient(aws: AwsStack, paid_payment: Payment) -> None:
    # Given DynamoDB cancels the grant for a conflicting transaction
    client = FaultyClient(aws.dynamodb).fail(
        "transact_write_items",
        client_error(
            "TransactionCanceledException", reasons=["TransactionConflict"] + ["None"] * 2
        ),
    )
    enrollments = EnrollmentRepository(
        aws.enrollments_table, aws.courses_table, aws.payments_table, client=client
    )

    # When the grant runs, then runs again
    with pytest.raises(TransientStorageError):
        enrollments.grant(paid_payment, NOW)

    # Then the retry grants it
    assert enrollments.grant(paid_payment, NOW) is GrantResult.GRANTED


# --- revoking ------------------------------------------------------------------------------


def test_revoking_uncounts_and_marks_exactly_once(
    aws: AwsStack,
    paid_payment: Payment,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given a granted enrolment whose payment was then refunded
    enrollments.grant(paid_payment, NOW)
    payment = refunded(payments, paid_payment)

    # When the revocation runs, and is replayed
    first = enrollments.revoke(payment, LATER)
    replays = [enrollments.revoke(payment, LATER) for _ in range(3)]

    # Then the enrolment is revoked once, the count goes back to zero and stays there
    assert first is RevokeResult.REVOKED
    assert replays == [RevokeResult.ALREADY_REVOKED] * 3
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert enrolment.status is EnrollmentStatus.REVOKED
    assert enrolment.revoked_at == LATER
    assert enrollment_count(courses) == 0
    assert payment_marks(aws, payment.payment_id) == {
        "enrolled_at": NOW,
        "enrollment_revoked_at": LATER,
    }


def test_revoking_a_payment_that_still_entitles_does_nothing(
    paid_payment: Payment, enrollments: EnrollmentRepository, courses: CourseRepository
) -> None:
    # Given a granted enrolment whose payment is still PAID (a stale refund record, say)
    enrollments.grant(paid_payment, NOW)

    # When a revocation runs
    # Then the stored status wins and the student keeps the course
    assert enrollments.revoke(paid_payment, LATER) is RevokeResult.STILL_ENTITLED
    assert enrollment_count(courses) == 1


def test_revoking_a_payment_that_never_enrolled_does_nothing(
    store: Store,
    paid_payment: Payment,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given the student holds the course through one payment, and a second payment of theirs
    # that was refused as a duplicate and then refunded
    enrollments.grant(paid_payment, NOW)
    second = store.payment(
        a_payment_in(PaymentStatus.PAID, payment_id="pay_second", paymob_order_id="555")
    )
    assert enrollments.grant(second, NOW) is GrantResult.DUPLICATE_PAYMENT
    second = refunded(payments, second)

    # When the refund of the second payment is revoked
    result = enrollments.revoke(second, LATER)

    # Then the enrolment the first payment granted is untouched
    assert result is RevokeResult.NOT_GRANTED
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert enrolment.status is EnrollmentStatus.ACTIVE
    assert enrollment_count(courses) == 1


def test_a_revoked_course_can_be_bought_again(
    store: Store,
    paid_payment: Payment,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given an enrolment granted and then revoked
    enrollments.grant(paid_payment, NOW)
    enrollments.revoke(refunded(payments, paid_payment), NOW)
    again = store.payment(
        a_payment_in(PaymentStatus.PAID, payment_id="pay_again", paymob_order_id="556")
    )

    # When a new paid payment of the course is granted
    result = enrollments.grant(again, LATER)

    # Then the student is enrolled again, by the new payment, counted once
    assert result is GrantResult.GRANTED
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert (enrolment.payment_id, enrolment.status, enrolment.revoked_at) == (
        "pay_again",
        EnrollmentStatus.ACTIVE,
        None,
    )
    assert enrollment_count(courses) == 1


def test_revocation_still_happens_when_the_count_is_already_zero(
    aws: AwsStack,
    store: Store,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given a granted enrolment on a course whose count was reset to zero by hand
    store.course()
    payment = store.payment(a_payment_in(PaymentStatus.PAID))
    enrollments.grant(payment, NOW)
    store.course(enrollment_count=0)

    # When the refunded payment's enrolment is revoked
    result = enrollments.revoke(refunded(payments, payment), LATER)

    # Then the student loses access, and the count does not go negative
    assert result is RevokeResult.REVOKED
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert enrolment.status is EnrollmentStatus.REVOKED
    assert enrollment_count(courses) == 0


def test_a_students_enrolments_are_listed_newest_first(
    store: Store, enrollments: EnrollmentRepository
) -> None:
    # Given a student with two enrolments (one revoked) and another student's enrolment
    older = store.enrollment(course_id="c-1", enrolled_at="2024-01-01T00:00:00+00:00")
    newer = store.enrollment(
        course_id="c-2",
        enrolled_at="2024-02-01T00:00:00+00:00",
        status=EnrollmentStatus.REVOKED,
        revoked_at="2024-03-01T00:00:00+00:00",
    )
    store.enrollment(student_id="someone-else", course_id="c-1")

    # When their enrolments are listed
    # Then both come back, newest first
    assert enrollments.list_for_student(STUDENT_ID) == [newer, older]


# --- transferring --------------------------------------------------------------------------


def enrolled_with_a_second_payment(
    store: Store,
    enrollments: EnrollmentRepository,
    second_status: PaymentStatus = PaymentStatus.PAID,
) -> tuple[Payment, Payment]:
    """A student enrolled by a first payment, and a second payment of theirs for the course."""
    store.course()
    first = store.payment(
        a_payment_in(PaymentStatus.PAID, payment_id="pay_first", created_at="2024-06-01")
    )
    assert enrollments.grant(first, NOW) is GrantResult.GRANTED
    second = store.payment(
        a_payment_in(
            second_status, payment_id="pay_second", paymob_order_id="555", created_at="2024-06-02"
        )
    )
    return first, second


def test_transferring_moves_the_enrolment_marks_both_payments_and_keeps_the_count(
    aws: AwsStack,
    store: Store,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given an enrolment held by a payment since refunded, and another PAID payment
    first, second = enrolled_with_a_second_payment(store, enrollments)
    first = refunded(payments, first)

    # When the enrolment is transferred, and the transfer replayed
    result = enrollments.transfer(first, second, LATER)
    replays = [enrollments.transfer(first, second, "2024-06-15T00:00:00+00:00") for _ in range(3)]

    # Then it names the second payment, still active since it was granted, counted once
    assert result is TransferResult.TRANSFERRED
    assert replays == [TransferResult.ALREADY_TRANSFERRED] * 3
    assert enrollments.get(STUDENT_ID, COURSE_ID) == Enrollment(
        student_id=STUDENT_ID,
        course_id=COURSE_ID,
        payment_id="pay_second",
        status=EnrollmentStatus.ACTIVE,
        enrolled_at=NOW,
    )
    assert enrollments.handover(STUDENT_ID, COURSE_ID) == Handover("pay_first", "pay_second", LATER)
    assert enrollment_count(courses) == 1

    # And the first payment is released, the second holds it: a revoke of the first is a
    # replay, a grant of the second is a replay
    assert payment_marks(aws, "pay_first") == {"enrolled_at": NOW, "enrollment_revoked_at": LATER}
    assert payment_marks(aws, "pay_second") == {"enrolled_at": LATER}
    assert enrollments.revoke(first, LATER) is RevokeResult.ALREADY_REVOKED
    assert enrollments.grant(second, LATER) is GrantResult.ALREADY_GRANTED
    assert enrollment_count(courses) == 1


def test_a_transfer_from_a_payment_that_entitles_again_is_refused(
    store: Store, enrollments: EnrollmentRepository, courses: CourseRepository
) -> None:
    # Given an enrolment whose payment is (again) PAID
    first, second = enrolled_with_a_second_payment(store, enrollments)

    # When a transfer to the other payment runs (from a stale record, say)
    # Then the holder keeps the enrolment
    assert enrollments.transfer(first, second, LATER) is TransferResult.STILL_ENTITLED
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert enrolment.payment_id == "pay_first"
    assert enrollments.handover(STUDENT_ID, COURSE_ID) is None


@pytest.mark.parametrize(
    "second_status", [PaymentStatus.PENDING, PaymentStatus.REFUNDED, PaymentStatus.UNDER_REVIEW]
)
def test_a_transfer_to_a_payment_that_does_not_entitle_is_refused(
    aws: AwsStack,
    store: Store,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    second_status: PaymentStatus,
) -> None:
    # Given an enrolment held by a refunded payment, and another that does not entitle
    first, second = enrolled_with_a_second_payment(store, enrollments, second_status)
    first = refunded(payments, first)

    # When a transfer to it runs
    result = enrollments.transfer(first, second.model_copy(update={"status": "PAID"}), LATER)

    # Then the stored status decides: nothing moves, nothing is marked
    assert result is TransferResult.NOT_ENTITLED
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert enrolment.payment_id == "pay_first"
    assert payment_marks(aws, "pay_first") == {"enrolled_at": NOW}
    assert payment_marks(aws, "pay_second") == {}


def test_a_transfer_of_an_enrolment_the_payment_does_not_hold_is_refused(
    store: Store, payments: PaymentRepository, enrollments: EnrollmentRepository
) -> None:
    # Given an enrolment held by a first payment, and a refunded duplicate that never held it
    _, second = enrolled_with_a_second_payment(store, enrollments)
    assert enrollments.grant(second, LATER) is GrantResult.DUPLICATE_PAYMENT
    duplicate = refunded(payments, second)
    third = store.payment(
        a_payment_in(PaymentStatus.PAID, payment_id="pay_third", paymob_order_id="556")
    )

    # When the duplicate's "enrolment" is transferred to a third payment
    # Then nothing moves: the enrolment is the first payment's
    assert enrollments.transfer(duplicate, third, LATER) is TransferResult.NOT_HELD
    enrolment = enrollments.get(STUDENT_ID, COURSE_ID)
    assert enrolment is not None
    assert enrolment.payment_id == "pay_first"


def test_a_transfer_from_a_revoked_enrolment_is_refused(
    store: Store,
    payments: PaymentRepository,
    enrollments: EnrollmentRepository,
    courses: CourseRepository,
) -> None:
    # Given an enrolment revoked with its refunded payment
    first, second = enrolled_with_a_second_payment(store, enrollments)
    first = refunded(payments, first)
    assert enrollments.revoke(first, LATER) is RevokeResult.REVOKED

    # When a transfer from it runs
    # Then a revoked enrolment does not come back through a transfer (a grant does that)
    assert enrollments.transfer(first, second, LATER) is TransferResult.NOT_HELD
    assert enrollment_count(courses) == 0


def test_a_grant_after_a_transfer_replaces_the_handover(
    store: Store, payments: PaymentRepository, enrollments: EnrollmentRepository
) -> None:
    # Given an enrolment moved to a second payment, then revoked with it
    first, second = enrolled_with_a_second_payment(store, enrollments)
    enrollments.transfer(refunded(payments, first), second, LATER)
    enrollments.revoke(refunded(payments, second), LATER)
    again = store.payment(
        a_payment_in(PaymentStatus.PAID, payment_id="pay_again", paymob_order_id="557")
    )

    # When the student buys the course again
    assert enrollments.grant(again, LATER) is GrantResult.GRANTED

    # Then the new enrolment has no handover
    assert enrollments.handover(STUDENT_ID, COURSE_ID) is None


def test_the_other_entitling_payment_is_the_oldest_of_the_student_and_course(
    store: Store, payments: PaymentRepository, enrollments: EnrollmentRepository
) -> None:
    # Given a student's payments for the course in every status, and others' payments
    enrolled_with_a_second_payment(store, enrollments, PaymentStatus.PARTIALLY_REFUNDED)
    store.payment(a_payment_in(PaymentStatus.PAID, payment_id="pay_newer", created_at="2024-06-03"))
    store.payment(
        a_payment_in(PaymentStatus.PAID, payment_id="pay_older_refunded", created_at="2024-05-01")
    )
    refunded(payments, a_payment_in(PaymentStatus.PAID, payment_id="pay_older_refunded"))
    for n, status in enumerate([PaymentStatus.PENDING, PaymentStatus.FAILED, PaymentStatus.VOIDED]):
        store.payment(a_payment_in(status, payment_id=f"pay_{status}", created_at=f"2024-04-0{n}"))
    store.payment(a_payment_in(PaymentStatus.PAID, payment_id="pay_x", course_id="course-other"))
    store.payment(a_payment_in(PaymentStatus.PAID, payment_id="pay_y", student_id="someone-else"))

    # When the other entitling payment is looked for, leaving out the first
    found = enrollments.other_entitling_payment(STUDENT_ID, COURSE_ID, excluding="pay_first")

    # Then it is the oldest PAID or PARTIALLY_REFUNDED one, read back whole
    assert found is not None
    assert found == payments.get("pay_second")
    assert found.status is PaymentStatus.PARTIALLY_REFUNDED
    assert enrollments.other_entitling_payment("someone-else", COURSE_ID, excluding="pay_y") is None


def test_the_other_entitling_payment_is_read_again_by_key(
    aws: AwsStack, store: Store, payments: PaymentRepository, enrollments: EnrollmentRepository
) -> None:
    # Given the index still shows a PAID payment that the table already holds as REFUNDED
    store.course()
    store.payment(a_payment_in(PaymentStatus.PAID, payment_id="pay_second"))
    stale_index = aws.dynamodb.query(
        TableName=aws.payments_table,
        IndexName="by-student",
        KeyConditionExpression="student_id = :s",
        ExpressionAttributeValues={":s": {"S": STUDENT_ID}},
    )
    refunded(payments, a_payment_in(PaymentStatus.PAID, payment_id="pay_second"))

    class StaleIndex:
        def __getattr__(self, name: str) -> object:
            return getattr(aws.dynamodb, name)

        def query(self, **params: object) -> object:
            return stale_index

    stale = EnrollmentRepository(
        aws.enrollments_table, aws.courses_table, aws.payments_table, client=StaleIndex()
    )

    # When the other entitling payment is looked for
    # Then the stored status wins: there is none
    assert stale.other_entitling_payment(STUDENT_ID, COURSE_ID, excluding="pay_first") is None
