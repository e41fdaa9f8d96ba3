"""Courses and enrolments in DynamoDB; each grant, revocation and transfer is one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coursepay.domain.payment import ENTITLING_STATUSES, Payment
from coursepay.domain.records import Course, Enrollment, EnrollmentStatus
from coursepay.storage._requests import (
    CancellationReason,
    Expression,
    TransactionCanceled,
    request,
)
from coursepay.storage.clients import dynamodb_client
from coursepay.storage.errors import CourseNotFound, PaymentNotFound
from coursepay.storage.payments import BY_STUDENT
from coursepay.storage.serialization import (
    ENROLLMENT_REVOKED_AT,
    attribute_value,
    course_from_item,
    enrollment_from_item,
    enrollment_to_item,
    from_item,
    payment_from_item,
)

BY_COURSE = "by-course"


class CourseRepository:
    """The course catalogue; `enrollment_count` is only ever changed by enrolment transactions."""

    def __init__(self, courses_table: str, client: Any = None) -> None:
        self._courses = courses_table
        self._client = client if client is not None else dynamodb_client()

    def get(self, course_id: str, consistent: bool = False) -> Course | None:
        response = request(
            self._client.get_item,
            TableName=self._courses,
            Key={"course_id": {"S": course_id}},
            ConsistentRead=consistent,
        )
        item = response.get("Item")
        return course_from_item(item) if item else None

    def put(self, course: Course) -> Course:
        """Create or update a course's title, price, currency and state; return it as stored.

        The enrolment count is kept as stored (zero for a new course): it belongs to the
        enrolment transactions, and an admin edit racing with them must not overwrite it.
        """
        expression = Expression(attribute_value)
        fields = ("title", "price_cents", "currency", "active")
        assignments = [
            f"{expression.name(name)} = {expression.value(getattr(course, name))}"
            for name in fields
        ]
        count = expression.name("enrollment_count")
        assignments.append(f"{count} = if_not_exists({count}, {expression.value(0)})")
        response = request(
            self._client.update_item,
            TableName=self._courses,
            Key={"course_id": {"S": course.course_id}},
            UpdateExpression="SET " + ", ".join(assignments),
            ReturnValues="ALL_NEW",
            **expression.params(),
        )
        return course_from_item(response["Attributes"])

    def list_active(self) -> list[Course]:
        """Every active course, by title.

        A filtered scan reads the whole table: fine for a catalogue of a few hundred
        courses (a few KB); a larger catalogue would want a sparse `active` index.
        """
        courses: list[Course] = []
        params: dict[str, Any] = {
            "TableName": self._courses,
            "FilterExpression": "active = :yes",
            "ExpressionAttributeValues": {":yes": {"BOOL": True}},
        }
        while True:
            response = request(self._client.scan, **params)
            courses.extend(course_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return sorted(courses, key=lambda c: (c.title, c.course_id))


class GrantResult(StrEnum):
    GRANTED = "GRANTED"
    # Granted although the course was deactivated after checkout: the student paid while it
    # was offered. Only a missing course refuses an enrolment.
    GRANTED_INACTIVE_COURSE = "GRANTED_INACTIVE_COURSE"
    ALREADY_GRANTED = "ALREADY_GRANTED"  # this payment's enrolment exists: a replay
    DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"  # the student already holds the course by another
    NOT_ENTITLED = "NOT_ENTITLED"  # the stored payment is no longer PAID/PARTIALLY_REFUNDED


class RevokeResult(StrEnum):
    REVOKED = "REVOKED"
    ALREADY_REVOKED = "ALREADY_REVOKED"  # a replay (or the enrolment moved on to another payment)
    NOT_GRANTED = "NOT_GRANTED"  # this payment never enrolled the student (or another did)
    STILL_ENTITLED = "STILL_ENTITLED"  # the stored payment is PAID/PARTIALLY_REFUNDED again


class TransferResult(StrEnum):
    TRANSFERRED = "TRANSFERRED"
    ALREADY_TRANSFERRED = "ALREADY_TRANSFERRED"  # a replay: it moved from `old` to `new` already
    NOT_HELD = "NOT_HELD"  # the enrolment is not (or no longer) old's and active
    STILL_ENTITLED = "STILL_ENTITLED"  # old's stored status entitles again: it keeps it
    NOT_ENTITLED = "NOT_ENTITLED"  # new's stored status does not entitle (or it is gone)


@dataclass(frozen=True, slots=True)
class Handover:
    """The last move of an enrolment from one payment to another, as kept on the enrolment."""

    from_payment_id: str
    to_payment_id: str
    at: str


class EnrollmentRepository:
    """Enrolments, with the course counter and the payment's enrolment marks kept in step.

    A payment is granted when its item has `enrolled_at` and no `enrollment_revoked_at`;
    both are set only here, each by the transaction that changes the enrolment, so every
    grant, revocation and transfer happens exactly once however often it is replayed. At
    most one payment of a student and course is granted at a time: the one the enrolment
    names.
    """

    def __init__(
        self,
        enrollments_table: str,
        courses_table: str,
        payments_table: str,
        client: Any = None,
    ) -> None:
        self._enrollments = enrollments_table
        self._courses = courses_table
        self._payments = payments_table
        self._client = client if client is not None else dynamodb_client()

    def get(self, student_id: str, course_id: str, consistent: bool = True) -> Enrollment | None:
        item = self._enrollment_item(student_id, course_id, consistent)
        return enrollment_from_item(item) if item else None

    def handover(self, student_id: str, course_id: str) -> Handover | None:
        """How the enrolment came to its payment, if it was transferred to it (read consistently).

        Kept on the enrolment by `transfer` and dropped when a grant replaces the enrolment,
        so a replay can publish the transfer again with its first time.
        """
        item = self._enrollment_item(student_id, course_id, consistent=True)
        return _handover(item) if item else None

    def list_for_student(self, student_id: str) -> list[Enrollment]:
        """A student's enrolments, active and revoked, most recent first."""
        enrollments: list[Enrollment] = []
        params: dict[str, Any] = {
            "TableName": self._enrollments,
            "KeyConditionExpression": "student_id = :student",
            "ExpressionAttributeValues": {":student": {"S": student_id}},
        }
        while True:
            response = request(self._client.query, **params)
            enrollments.extend(enrollment_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return sorted(enrollments, key=lambda e: (e.enrolled_at, e.course_id), reverse=True)

    def other_entitling_payment(
        self, student_id: str, course_id: str, excluding: str
    ) -> Payment | None:
        """The student's oldest other PAID or PARTIALLY_REFUNDED payment of the course, if any.

        Found through the `by-student` index (filtered by course and status; the index is
        eventually consistent), then read again by key, consistently: only a payment whose
        stored status entitles is answered. The transfer re-checks that status anyway.
        """
        params: dict[str, Any] = {
            "TableName": self._payments,
            "IndexName": BY_STUDENT,
            "KeyConditionExpression": "student_id = :student",
            "FilterExpression": "course_id = :course AND payment_id <> :excluded"
            " AND #status IN (" + ", ".join(_ENTITLING) + ")",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":student": {"S": student_id},
                ":course": {"S": course_id},
                ":excluded": {"S": excluding},
                **_ENTITLING,
            },
            "ScanIndexForward": True,  # oldest first
        }
        while True:
            response = request(self._client.query, **params)
            for item in response.get("Items", []):
                stored = request(
                    self._client.get_item,
                    TableName=self._payments,
                    Key={"payment_id": item["payment_id"]},
                    ConsistentRead=True,
                ).get("Item")
                if stored is None:
                    continue
                payment = payment_from_item(stored)
                if (
                    payment.entitles
                    and payment.student_id == student_id
                    and payment.course_id == course_id
                ):
                    return payment
            if "LastEvaluatedKey" not in response:
                return None
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]

    def grant(self, payment: Payment, now: str) -> GrantResult:
        """Enrol the payment's student in its course, count them, mark the payment: at once.

        A course deactivated after checkout still takes the enrolment (the student paid while
        it was offered): answered GRANTED_INACTIVE_COURSE, after a second transaction that
        only requires the course to exist. Raises CourseNotFound, PaymentNotFound or
        TransientStorageError.
        """
        result = self._grant(payment, now, require_active=True)
        if result is None:
            result = self._grant(payment, now, require_active=False)
            if result is GrantResult.GRANTED:
                return GrantResult.GRANTED_INACTIVE_COURSE
        if result is None:
            raise AssertionError("a grant that does not require an active course refused one")
        return result

    def revoke(self, payment: Payment, now: str) -> RevokeResult:
        """Revoke the enrolment this payment granted, uncount it, mark the payment: at once.

        Raises PaymentNotFound or TransientStorageError.
        """
        enrolment_update = {
            "TableName": self._enrollments,
            "Key": _enrollment_key(payment.student_id, payment.course_id),
            "UpdateExpression": "SET #status = :revoked, revoked_at = :now",
            "ConditionExpression": "payment_id = :payment AND #status = :active",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":revoked": {"S": EnrollmentStatus.REVOKED.value},
                ":active": {"S": EnrollmentStatus.ACTIVE.value},
                ":now": {"S": now},
                ":payment": {"S": payment.payment_id},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        course_update = {
            "TableName": self._courses,
            "Key": {"course_id": {"S": payment.course_id}},
            "UpdateExpression": "SET enrollment_count = enrollment_count - :one",
            "ConditionExpression": "enrollment_count > :zero",
            "ExpressionAttributeValues": {":zero": {"N": "0"}, ":one": {"N": "1"}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        items = {
            _ENROLLMENT: {"Update": enrolment_update},
            _COURSE: {"Update": course_update},
            _PAYMENT: {"Update": self._release(payment, now)},
        }
        result = self._revoke(payment, items)
        if result is None:
            # Only the counter refused (a missing course or a count already at zero): the
            # student must still lose access, so revoke without touching the counter.
            del items[_COURSE]
            result = self._revoke(payment, items)
        if result is None:
            raise AssertionError("a revocation without the counter was refused by the counter")
        return result

    def transfer(self, old: Payment, new: Payment, now: str) -> TransferResult:
        """Move the enrolment `old` holds to `new`, another payment of the student and course.

        One transaction: the enrolment names `new` (if it still names `old` and is active;
        it keeps its `enrolled_at` and records the handover), `new` is marked enrolled (if
        its stored status entitles and it holds no enrolment), `old` is marked released (if
        it held the enrolment and its stored status no longer entitles). The course count
        is unchanged: the student stays enrolled. Raises PaymentNotFound (for `old`) or
        TransientStorageError.
        """
        if (old.student_id, old.course_id) != (new.student_id, new.course_id):
            raise ValueError("an enrolment moves only between payments of one student and course")
        if old.payment_id == new.payment_id:
            raise ValueError("an enrolment cannot move to the payment that holds it")
        enrolment_update = {
            "TableName": self._enrollments,
            "Key": _enrollment_key(old.student_id, old.course_id),
            "UpdateExpression": "SET payment_id = :new, previous_payment_id = :old,"
            " transferred_at = :now",
            "ConditionExpression": "payment_id = :old AND #status = :active",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {
                ":active": {"S": EnrollmentStatus.ACTIVE.value},
                ":new": {"S": new.payment_id},
                ":old": {"S": old.payment_id},
                ":now": {"S": now},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        items = [
            {"Update": enrolment_update},
            {"Update": self._release(old, now)},
            {"Update": self._mark_enrolled(new, now)},
        ]
        try:
            request(self._client.transact_write_items, TransactItems=items)
        except TransactionCanceled as canceled:
            return self._transfer_refused(old, new, canceled)
        return TransferResult.TRANSFERRED

    # --- transaction items ----------------------------------------------------------

    def _grant(self, payment: Payment, now: str, *, require_active: bool) -> GrantResult | None:
        """Run one grant transaction; None if only the course's `active` refused it."""
        enrollment = Enrollment(
            student_id=payment.student_id,
            course_id=payment.course_id,
            payment_id=payment.payment_id,
            status=EnrollmentStatus.ACTIVE,
            enrolled_at=now,
        )
        enrolment_put = {
            "TableName": self._enrollments,
            "Item": enrollment_to_item(enrollment),
            # A revoked enrolment is replaced: the student bought the course again.
            "ConditionExpression": "attribute_not_exists(course_id) OR #status = :revoked",
            "ExpressionAttributeNames": {"#status": "status"},
            "ExpressionAttributeValues": {":revoked": {"S": EnrollmentStatus.REVOKED.value}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        course_values: dict[str, Any] = {":zero": {"N": "0"}, ":one": {"N": "1"}}
        course_condition = "attribute_exists(course_id)"
        if require_active:
            course_condition += " AND active = :yes"
            course_values[":yes"] = {"BOOL": True}
        course_update = {
            "TableName": self._courses,
            "Key": {"course_id": {"S": payment.course_id}},
            "UpdateExpression": "SET enrollment_count = if_not_exists(enrollment_count, :zero)"
            " + :one",
            "ConditionExpression": course_condition,
            "ExpressionAttributeValues": course_values,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            request(
                self._client.transact_write_items,
                TransactItems=[
                    {"Put": enrolment_put},
                    {"Update": course_update},
                    {"Update": self._mark_enrolled(payment, now)},
                ],
            )
        except TransactionCanceled as canceled:
            return self._grant_refused(payment, canceled)
        return GrantResult.GRANTED

    def _mark_enrolled(self, payment: Payment, now: str) -> dict[str, Any]:
        """The payment holds the enrolment from now: if it entitles and holds none already."""
        return {
            "TableName": self._payments,
            "Key": {"payment_id": {"S": payment.payment_id}},
            "UpdateExpression": "SET enrolled_at = :now REMOVE #revoked",
            "ConditionExpression": "attribute_exists(payment_id)"
            " AND #status IN (" + ", ".join(_ENTITLING) + ")"
            " AND (attribute_not_exists(enrolled_at) OR attribute_exists(#revoked))",
            "ExpressionAttributeNames": {"#status": "status", "#revoked": ENROLLMENT_REVOKED_AT},
            "ExpressionAttributeValues": {":now": {"S": now}, **_ENTITLING},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _release(self, payment: Payment, now: str) -> dict[str, Any]:
        """The payment holds the enrolment no more: if it held it and no longer entitles."""
        return {
            "TableName": self._payments,
            "Key": {"payment_id": {"S": payment.payment_id}},
            "UpdateExpression": "SET #revoked = :now",
            "ConditionExpression": "attribute_exists(enrolled_at)"
            " AND attribute_not_exists(#revoked)"
            " AND NOT (#status IN (" + ", ".join(_ENTITLING) + "))",
            "ExpressionAttributeNames": {"#status": "status", "#revoked": ENROLLMENT_REVOKED_AT},
            "ExpressionAttributeValues": {":now": {"S": now}, **_ENTITLING},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _enrollment_item(
        self, student_id: str, course_id: str, consistent: bool
    ) -> dict[str, Any] | None:
        response = request(
            self._client.get_item,
            TableName=self._enrollments,
            Key=_enrollment_key(student_id, course_id),
            ConsistentRead=consistent,
        )
        item: dict[str, Any] | None = response.get("Item")
        return item

    # --- reading cancellation reasons ----------------------------------------------

    def _grant_refused(self, payment: Payment, canceled: TransactionCanceled) -> GrantResult | None:
        stored = canceled.reason(_POSITIONS[_PAYMENT])
        if stored.condition_failed:
            if stored.item is None:
                raise PaymentNotFound(payment.payment_id) from None
            if from_item(stored.item).get("status") not in ENTITLING_STATUSES:
                return GrantResult.NOT_ENTITLED
            return GrantResult.ALREADY_GRANTED
        existing = canceled.reason(_POSITIONS[_ENROLLMENT])
        if existing.condition_failed:
            holder = (
                enrollment_from_item(existing.item)
                if existing.item
                else self.get(payment.student_id, payment.course_id)
            )
            if holder is not None and holder.payment_id == payment.payment_id:
                return GrantResult.ALREADY_GRANTED
            return GrantResult.DUPLICATE_PAYMENT
        course = canceled.reason(_POSITIONS[_COURSE])
        if course.condition_failed:
            if course.item is None:
                raise CourseNotFound(payment.course_id) from None
            return None  # it exists: only `active` refused
        raise canceled.as_storage_error() from canceled

    def _transfer_refused(
        self, old: Payment, new: Payment, canceled: TransactionCanceled
    ) -> TransferResult:
        enrolment, released, marked = (canceled.reason(i) for i in range(3))

        def moved_already() -> bool:
            item = enrolment.item if enrolment.condition_failed else None
            if item is None:
                item = self._enrollment_item(old.student_id, old.course_id, consistent=True)
            handover = _handover(item) if item else None
            return handover is not None and (handover.from_payment_id, handover.to_payment_id) == (
                old.payment_id,
                new.payment_id,
            )

        if released.condition_failed:
            if released.item is None:
                raise PaymentNotFound(old.payment_id) from None
            marks = from_item(released.item)
            if marks.get("status") in ENTITLING_STATUSES:
                return TransferResult.STILL_ENTITLED
            if ENROLLMENT_REVOKED_AT in marks and moved_already():
                return TransferResult.ALREADY_TRANSFERRED
            return TransferResult.NOT_HELD
        if enrolment.condition_failed:
            if moved_already():
                return TransferResult.ALREADY_TRANSFERRED
            return TransferResult.NOT_HELD
        if marked.condition_failed:
            return TransferResult.NOT_ENTITLED
        raise canceled.as_storage_error() from canceled

    def _revoke(self, payment: Payment, items: dict[str, dict[str, Any]]) -> RevokeResult | None:
        """Run one revocation transaction; None if only the course counter refused it."""
        try:
            request(self._client.transact_write_items, TransactItems=list(items.values()))
        except TransactionCanceled as canceled:
            reasons = {role: canceled.reason(i) for i, role in enumerate(items)}
            return _revoke_refused(payment, reasons, canceled)
        return RevokeResult.REVOKED


def _revoke_refused(
    payment: Payment, reasons: dict[str, CancellationReason], canceled: TransactionCanceled
) -> RevokeResult | None:
    stored = reasons[_PAYMENT]
    if stored.condition_failed:
        if stored.item is None:
            raise PaymentNotFound(payment.payment_id) from None
        marks = from_item(stored.item)
        if marks.get("status") in ENTITLING_STATUSES:
            return RevokeResult.STILL_ENTITLED
        if ENROLLMENT_REVOKED_AT in marks:
            return RevokeResult.ALREADY_REVOKED
        return RevokeResult.NOT_GRANTED
    enrolment = reasons[_ENROLLMENT]
    if enrolment.condition_failed:
        held = enrollment_from_item(enrolment.item) if enrolment.item else None
        if held is not None and held.payment_id == payment.payment_id:
            return RevokeResult.ALREADY_REVOKED
        return RevokeResult.NOT_GRANTED
    if _COURSE in reasons and reasons[_COURSE].condition_failed:
        return None
    raise canceled.as_storage_error() from canceled


def _handover(item: dict[str, Any]) -> Handover | None:
    plain = from_item(item)
    previous, at = plain.get(PREVIOUS_PAYMENT_ID), plain.get(TRANSFERRED_AT)
    if not previous or not at:
        return None
    return Handover(str(previous), str(plain["payment_id"]), str(at))


# The items of the grant and revoke transactions, in request order.
_ENROLLMENT, _COURSE, _PAYMENT = "enrollment", "course", "payment"
_POSITIONS = {_ENROLLMENT: 0, _COURSE: 1, _PAYMENT: 2}

# What `transfer` keeps on the enrolment item beside the Enrollment's own fields.
PREVIOUS_PAYMENT_ID = "previous_payment_id"
TRANSFERRED_AT = "transferred_at"

_ENTITLING = {f":entitling{i}": {"S": str(s)} for i, s in enumerate(sorted(ENTITLING_STATUSES))}


def _enrollment_key(student_id: str, course_id: str) -> dict[str, Any]:
    return {"student_id": {"S": student_id}, "course_id": {"S": course_id}}
