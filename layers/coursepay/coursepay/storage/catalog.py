"""Courses and enrolments in DynamoDB; granting and revoking are single transactions."""

from __future__ import annotations

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
from coursepay.storage.errors import CourseInactive, CourseNotFound, PaymentNotFound
from coursepay.storage.serialization import (
    ENROLLMENT_REVOKED_AT,
    attribute_value,
    course_from_item,
    enrollment_from_item,
    enrollment_to_item,
    from_item,
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
    ALREADY_GRANTED = "ALREADY_GRANTED"  # this payment's enrolment exists: a replay
    DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"  # the student already holds the course by another
    NOT_ENTITLED = "NOT_ENTITLED"  # the stored payment is no longer PAID/PARTIALLY_REFUNDED


class RevokeResult(StrEnum):
    REVOKED = "REVOKED"
    ALREADY_REVOKED = "ALREADY_REVOKED"  # a replay
    NOT_GRANTED = "NOT_GRANTED"  # this payment never enrolled the student (or another did)
    STILL_ENTITLED = "STILL_ENTITLED"  # the stored payment is PAID/PARTIALLY_REFUNDED again


class EnrollmentRepository:
    """Enrolments, with the course counter and the payment's enrolment marks kept in step.

    A payment is granted when its item has `enrolled_at` and no `enrollment_revoked_at`;
    both are set only here, each by the transaction that changes the enrolment, so every
    grant and every revocation happens exactly once however often it is replayed.
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
        response = request(
            self._client.get_item,
            TableName=self._enrollments,
            Key=_enrollment_key(student_id, course_id),
            ConsistentRead=consistent,
        )
        item = response.get("Item")
        return enrollment_from_item(item) if item else None

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

    def grant(self, payment: Payment, now: str) -> GrantResult:
        """Enrol the payment's student in its course, count them, mark the payment: at once.

        Raises CourseNotFound, CourseInactive, PaymentNotFound or TransientStorageError.
        """
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
        course_update = {
            "TableName": self._courses,
            "Key": {"course_id": {"S": payment.course_id}},
            "UpdateExpression": "SET enrollment_count = if_not_exists(enrollment_count, :zero)"
            " + :one",
            "ConditionExpression": "attribute_exists(course_id) AND active = :yes",
            "ExpressionAttributeValues": {
                ":zero": {"N": "0"},
                ":one": {"N": "1"},
                ":yes": {"BOOL": True},
            },
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        payment_update = {
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
        try:
            request(
                self._client.transact_write_items,
                TransactItems=[
                    {"Put": enrolment_put},
                    {"Update": course_update},
                    {"Update": payment_update},
                ],
            )
        except TransactionCanceled as canceled:
            return self._grant_refused(payment, canceled)
        return GrantResult.GRANTED

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
        payment_update = {
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
        items = {
            _ENROLLMENT: {"Update": enrolment_update},
            _COURSE: {"Update": course_update},
            _PAYMENT: {"Update": payment_update},
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

    # --- reading cancellation reasons ----------------------------------------------

    def _grant_refused(self, payment: Payment, canceled: TransactionCanceled) -> GrantResult:
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
            raise CourseInactive(payment.course_id) from None
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


# The items of the grant and revoke transactions, in request order.
_ENROLLMENT, _COURSE, _PAYMENT = "enrollment", "course", "payment"
_POSITIONS = {_ENROLLMENT: 0, _COURSE: 1, _PAYMENT: 2}

_ENTITLING = {f":entitling{i}": {"S": str(s)} for i, s in enumerate(sorted(ENTITLING_STATUSES))}


def _enrollment_key(student_id: str, course_id: str) -> dict[str, Any]:
    return {"student_id": {"S": student_id}, "course_id": {"S": course_id}}
