"""Fakes and helpers for the enrolment path: enrolments with storage's semantics, a bus, schemas.

`InMemoryEnrollments` answers grant, revoke and transfer the way storage's transactions do
(the same conditions on the stored payment, the enrolment and the course, checked in the same
order), so service tests exercise the real decisions without an emulator.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, FormatChecker

from coursepay.domain.payment import ENTITLING_STATUSES, Payment
from coursepay.domain.records import Course, Enrollment, EnrollmentStatus
from coursepay.services.enrollment import DomainEvent
from coursepay.storage.catalog import Handover
from coursepay.storage.errors import CourseNotFound, PaymentNotFound
from tests.support.fakes import InMemoryPaymentStore

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "docs" / "events"

# The enrolment service's clock in tests: when enrolments are granted and revoked.
ENROLMENT_TIME = "2024-06-13T12:00:00.000000+00:00"


@dataclass
class _Marks:
    enrolled_at: str | None = None
    revoked_at: str | None = None


class InMemoryEnrollments:
    """Enrolments, course counts and the payments' enrolment marks, changed all-or-nothing."""

    def __init__(self, payments: InMemoryPaymentStore, *courses: Course) -> None:
        self._payments = payments
        self.courses: dict[str, Course] = {c.course_id: c for c in courses}
        self.enrollments: dict[tuple[str, str], Enrollment] = {}
        self.handovers: dict[tuple[str, str], Handover] = {}  # kept beside the enrolment
        self.marks: dict[str, _Marks] = {}
        self.failures: list[Exception] = []  # raised, in order, by the next grants or revokes
        self.transactions = 0
        self._lock = threading.Lock()

    def fail_next(self, *errors: Exception) -> None:
        self.failures.extend(errors)

    def count(self, course_id: str) -> int:
        return self.courses[course_id].enrollment_count

    def get(self, student_id: str, course_id: str, consistent: bool = True) -> Enrollment | None:
        return self.enrollments.get((student_id, course_id))

    def handover(self, student_id: str, course_id: str) -> Handover | None:
        return self.handovers.get((student_id, course_id))

    def other_entitling_payment(
        self, student_id: str, course_id: str, excluding: str
    ) -> Payment | None:
        """The oldest other entitling payment of the student and course, as stored."""
        candidates = sorted(
            (
                p
                for p in self._payments.payments.values()
                if (p.student_id, p.course_id) == (student_id, course_id)
                and p.payment_id != excluding
                and p.status in ENTITLING_STATUSES
            ),
            key=lambda p: (p.created_at, p.payment_id),
        )
        return candidates[0] if candidates else None

    def list_for_student(self, student_id: str) -> list[Enrollment]:
        mine = [e for (s, _), e in self.enrollments.items() if s == student_id]
        return sorted(mine, key=lambda e: (e.enrolled_at, e.course_id), reverse=True)

    def grant(self, payment: Payment, now: str) -> str:
        with self._lock:
            self._begin()
            stored = self._payments.get(payment.payment_id)
            marks = self.marks.setdefault(payment.payment_id, _Marks())
            if stored is None:
                raise PaymentNotFound(payment.payment_id)
            if stored.status not in ENTITLING_STATUSES:
                return "NOT_ENTITLED"
            if marks.enrolled_at is not None and marks.revoked_at is None:
                return "ALREADY_GRANTED"
            key = (payment.student_id, payment.course_id)
            held = self.enrollments.get(key)
            if held is not None and held.status is EnrollmentStatus.ACTIVE:
                return (
                    "ALREADY_GRANTED"
                    if held.payment_id == payment.payment_id
                    else ("DUPLICATE_PAYMENT")
                )
            course = self.courses.get(payment.course_id)
            if course is None:
                raise CourseNotFound(payment.course_id)
            self.handovers.pop(key, None)
            self.enrollments[key] = Enrollment(
                student_id=payment.student_id,
                course_id=payment.course_id,
                payment_id=payment.payment_id,
                status=EnrollmentStatus.ACTIVE,
                enrolled_at=now,
            )
            self._recount(course, +1)
            self.marks[payment.payment_id] = _Marks(enrolled_at=now)
            return "GRANTED" if course.active else "GRANTED_INACTIVE_COURSE"

    def revoke(self, payment: Payment, now: str) -> str:
        with self._lock:
            self._begin()
            stored = self._payments.get(payment.payment_id)
            if stored is None:
                raise PaymentNotFound(payment.payment_id)
            marks = self.marks.setdefault(payment.payment_id, _Marks())
            if stored.status in ENTITLING_STATUSES:
                return "STILL_ENTITLED"
            if marks.revoked_at is not None:
                return "ALREADY_REVOKED"
            if marks.enrolled_at is None:
                return "NOT_GRANTED"
            key = (payment.student_id, payment.course_id)
            held = self.enrollments.get(key)
            if held is None or held.payment_id != payment.payment_id:
                return "NOT_GRANTED"
            if held.status is EnrollmentStatus.REVOKED:
                return "ALREADY_REVOKED"
            self.enrollments[key] = held.model_copy(
                update={"status": EnrollmentStatus.REVOKED, "revoked_at": now}
            )
            course = self.courses.get(payment.course_id)
            if course is not None and course.enrollment_count > 0:
                self._recount(course, -1)
            marks.revoked_at = now
            return "REVOKED"

    def transfer(self, old: Payment, new: Payment, now: str) -> str:
        with self._lock:
            self._begin()
            key = (old.student_id, old.course_id)
            assert key == (new.student_id, new.course_id)
            held = self.enrollments.get(key)
            handover = self.handovers.get(key)
            moved = handover is not None and (handover.from_payment_id, handover.to_payment_id) == (
                old.payment_id,
                new.payment_id,
            )
            stored_old = self._payments.get(old.payment_id)
            if stored_old is None:
                raise PaymentNotFound(old.payment_id)
            old_marks = self.marks.setdefault(old.payment_id, _Marks())
            if stored_old.status in ENTITLING_STATUSES:
                return "STILL_ENTITLED"
            if old_marks.enrolled_at is None or old_marks.revoked_at is not None:
                return "ALREADY_TRANSFERRED" if moved else "NOT_HELD"
            if (
                held is None
                or held.payment_id != old.payment_id
                or held.status is not EnrollmentStatus.ACTIVE
            ):
                return "ALREADY_TRANSFERRED" if moved else "NOT_HELD"
            stored_new = self._payments.get(new.payment_id)
            new_marks = self.marks.setdefault(new.payment_id, _Marks())
            if (
                stored_new is None
                or stored_new.status not in ENTITLING_STATUSES
                or (new_marks.enrolled_at is not None and new_marks.revoked_at is None)
            ):
                return "NOT_ENTITLED"
            self.enrollments[key] = held.model_copy(update={"payment_id": new.payment_id})
            self.handovers[key] = Handover(old.payment_id, new.payment_id, now)
            old_marks.revoked_at = now
            self.marks[new.payment_id] = _Marks(enrolled_at=now)
            return "TRANSFERRED"

    def _begin(self) -> None:
        self.transactions += 1
        if self.failures:
            raise self.failures.pop(0)

    def _recount(self, course: Course, delta: int) -> None:
        self.courses[course.course_id] = course.model_copy(
            update={"enrollment_count": course.enrollment_count + delta}
        )


class RecordingBus:
    """The bus port: keeps what was published; can refuse the next publishes."""

    def __init__(self) -> None:
        self.published: list[DomainEvent] = []
        self.failures: list[Exception] = []
        self.requests = 0
        self._lock = threading.Lock()

    def fail_next(self, *errors: Exception) -> None:
        self.failures.extend(errors)

    def publish(self, events: Sequence[DomainEvent]) -> None:
        with self._lock:
            self.requests += 1
            if self.failures:
                raise self.failures.pop(0)
            self.published.extend(events)

    def of_type(self, detail_type: str) -> list[dict[str, Any]]:
        return [e.detail for e in self.published if e.detail_type == detail_type]

    @property
    def detail_types(self) -> list[str]:
        return [e.detail_type for e in self.published]


@dataclass
class StreamOfChanges:
    """The stream reader port over a list of (sequence number, before, after)."""

    changes: list[tuple[str, Payment | None, Payment | None]] = field(default_factory=list)
    reads: list[tuple[str, str, str, str]] = field(default_factory=list)

    def read_changes(
        self, stream_arn: str, shard_id: str, first_sequence: str, last_sequence: str
    ) -> list[tuple[Payment | None, Payment | None]]:
        self.reads.append((stream_arn, shard_id, first_sequence, last_sequence))
        return [
            (before, after)
            for sequence, before, after in self.changes
            if int(first_sequence) <= int(sequence) <= int(last_sequence)
        ]


# --- the published events' JSON Schemas ---------------------------------------------------


@cache
def event_schema(detail_type: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (SCHEMAS / f"{detail_type}.schema.json").read_text(encoding="utf-8")
    )
    return loaded


def schema_errors(detail_type: str, detail: dict[str, Any]) -> list[str]:
    """Every way `detail` breaks its documented schema (formats checked too); [] if none."""
    validator = Draft202012Validator(event_schema(detail_type), format_checker=FormatChecker())
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<detail>'}: {error.message}"
        for error in validator.iter_errors(detail)
    ]


# --- against the in-process AWS ----------------------------------------------------------


def fresh_enrolment_containers() -> None:
    """Forget the clients and services a previous test's "container" cached."""
    # Imported here: the in-memory fakes above must not need the wiring or the adapters.
    from coursepay import wiring
    from coursepay.storage import bus, stream_records

    wiring.enrollment_service.cache_clear()
    wiring.enrollment_reader.cache_clear()
    bus._default_client.cache_clear()
    stream_records._default_client.cache_clear()


class DomainEventCapture:
    """A rule on the domain bus that copies every event to a queue the test reads."""

    def __init__(self, sqs: Any, events: Any, bus_name: str) -> None:
        self._sqs = sqs
        self.queue_url = sqs.create_queue(QueueName="captured-domain-events")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(
            Name="capture-domain-events",
            EventBusName=bus_name,
            EventPattern=json.dumps({"source": ["course-payments"]}),
        )
        events.put_targets(
            Rule="capture-domain-events",
            EventBusName=bus_name,
            Targets=[{"Id": "captured", "Arn": queue_arn}],
        )

    def drain(self) -> list[dict[str, Any]]:
        """Every event delivered since the last drain, as EventBridge delivers them."""
        delivered: list[dict[str, Any]] = []
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return delivered
            for message in messages:
                delivered.append(json.loads(message["Body"]))
                self._sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"]
                )


def every_stream_record(stream_arn: str) -> list[dict[str, Any]]:
    """Every record the stream holds now, in Lambda's shape (the emulator's open shard ends
    where its records end: the first empty page)."""
    from coursepay.storage.stream_records import PaymentStreamReader, lambda_record

    client = PaymentStreamReader().client
    found: list[dict[str, Any]] = []
    for shard in client.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]:
        iterator = client.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        while iterator:
            page = client.get_records(ShardIterator=iterator, Limit=1000)
            if not page.get("Records"):
                break
            found += [lambda_record(record, stream_arn) for record in page["Records"]]
            iterator = page.get("NextShardIterator")
    return found
