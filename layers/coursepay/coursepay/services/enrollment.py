"""Enrolment from payment changes: grant once, revoke once, flag duplicates, publish domain events.

Every payment change reaches here from the Payments table's stream (the one place all of them
pass, whichever path made them), as the payment before and after the change:

- entering PAID or PARTIALLY_REFUNDED from a status that did not entitle (INSERTs, late
  successes and admin overrides included) grants the enrolment; entering REFUNDED or VOIDED
  revokes it. Storage does each in one transaction conditioned on the *stored* payment, so a
  replayed or out-of-date record cannot grant or revoke twice, nor grant a payment refunded
  since (GrantOutcome.NOT_ENTITLED, RevokeOutcome.STILL_ENTITLED);
- a student who already holds the course by another payment is not enrolled twice: the
  payment is flagged DUPLICATE_PAYMENT through the state machine, for an admin to refund;
- events go on the bus only after the transaction committed. A publish that fails raises, the
  record is delivered again, the grant answers ALREADY_GRANTED and the events are published
  again: delivery is at least once, and a repeat carries the same `detail.event_id`.

Failures (course missing or closed, payment gone, throttling, bus down) raise, so the record
is retried by the stream mapping, then sent to the retry queue as a DDBStreamBatchInfo
invocation record, then (after the queue's receive limit) to its dead-letter queue. Nothing
is dropped silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from coursepay.domain.facts import FactKind, FactSource, TransactionFact
from coursepay.domain.payment import (
    ENTITLING_STATUSES,
    REVOKING_STATUSES,
    Payment,
    PaymentFlag,
    PaymentStatus,
)
from coursepay.domain.records import Enrollment, EnrollmentStatus, EventKind, PaymentEvent
from coursepay.domain.state_machine import decide
from coursepay.observability import count, logger
from coursepay.services.clock import utc_now
from coursepay.services.ports import PaymentStore
from coursepay.storage.errors import (
    CourseInactive,
    CourseNotFound,
    DuplicateEvent,
    PaymentNotFound,
    StalePayment,
    StorageError,
    TransientStorageError,
)

SCHEMA_VERSION = "1"
# Retry messages: the enrolment path's own, and Lambda's on-failure record for the stream.
ENROLMENT_MESSAGE_KIND = "enrolment"
STREAM_BATCH_KEY = "DDBStreamBatchInfo"
DUPLICATE_EVENT_KEY = "ENROLMENT#DUPLICATE_PAYMENT"

_EVENT_IDS = uuid.uuid5(uuid.NAMESPACE_URL, "urn:course-payments:events")


class DetailType(StrEnum):
    PAYMENT_SUCCEEDED = "PaymentSucceeded"
    PAYMENT_FAILED = "PaymentFailed"
    PAYMENT_FLAGGED = "PaymentFlagged"
    ENROLLMENT_CREATED = "EnrollmentCreated"
    ENROLLMENT_REVOKED = "EnrollmentRevoked"


class GrantOutcome(StrEnum):
    """What storage's grant transaction answered (the same values as storage's GrantResult)."""

    GRANTED = "GRANTED"
    ALREADY_GRANTED = "ALREADY_GRANTED"
    DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"
    NOT_ENTITLED = "NOT_ENTITLED"


class RevokeOutcome(StrEnum):
    """What storage's revoke transaction answered (the same values as storage's RevokeResult)."""

    REVOKED = "REVOKED"
    ALREADY_REVOKED = "ALREADY_REVOKED"
    NOT_GRANTED = "NOT_GRANTED"
    STILL_ENTITLED = "STILL_ENTITLED"


# --- ports ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """One event for the bus: DetailType and detail (ids, minor units, no personal data)."""

    detail_type: str
    detail: dict[str, Any]


class EnrollmentStore(Protocol):
    def get(
        self, student_id: str, course_id: str, consistent: bool = True
    ) -> Enrollment | None: ...

    def grant(self, payment: Payment, now: str) -> str: ...

    def revoke(self, payment: Payment, now: str) -> str: ...


class EnrollmentReader(Protocol):
    def list_for_student(self, student_id: str) -> list[Enrollment]: ...


class EventPublisher(Protocol):
    def publish(self, events: Sequence[DomainEvent]) -> None: ...


class PaymentChangeSource(Protocol):
    """Reads stream records back by shard and sequence numbers, as (before, after) payments."""

    def read_changes(
        self, stream_arn: str, shard_id: str, first_sequence: str, last_sequence: str
    ) -> list[tuple[Payment | None, Payment | None]]: ...


# --- messages and outcomes ----------------------------------------------------------------


class FailedStreamBatch(BaseModel):
    """Where Lambda's stream mapping gave up: its on-failure invocation record, parsed.

    The record names a shard and a range of sequence numbers, never the records themselves.
    """

    model_config = ConfigDict(frozen=True, populate_by_name=True)

    stream_arn: str = Field(alias="streamArn", min_length=1)
    shard_id: str = Field(alias="shardId", min_length=1)
    start_sequence_number: str = Field(alias="startSequenceNumber", pattern=r"^[0-9]+$")
    end_sequence_number: str = Field(alias="endSequenceNumber", pattern=r"^[0-9]+$")
    batch_size: int = Field(alias="batchSize", ge=1)
    condition: str | None = None  # RetryAttemptsExhausted, RecordAgeExceeded, ...
    invoke_count: int | None = None

    @classmethod
    def from_invocation_record(cls, message: Mapping[str, Any]) -> FailedStreamBatch:
        context = message.get("requestContext") or {}
        return cls.model_validate(
            {
                **message[STREAM_BATCH_KEY],
                "condition": context.get("condition"),
                "invoke_count": context.get("approximateInvokeCount"),
            }
        )


def is_enrolment_retry(message: object) -> bool:
    """Whether a retry-queue message belongs to the enrolment path (either shape)."""
    return isinstance(message, Mapping) and (
        STREAM_BATCH_KEY in message or message.get("kind") == ENROLMENT_MESSAGE_KIND
    )


def enrolment_retry_message(payment_id: str) -> dict[str, Any]:
    """A retry-queue message asking to reconcile one payment's enrolment with its status."""
    return {"kind": ENROLMENT_MESSAGE_KIND, "payment_id": payment_id}


@dataclass(frozen=True, slots=True)
class EnrollmentOutcome:
    payment_id: str | None
    enrolment: str | None = None  # a GrantOutcome or RevokeOutcome; None if neither was due
    published: tuple[str, ...] = ()  # detail types, in publishing order
    ignored: bool = False  # nothing in the change concerns enrolment or the bus


@dataclass(frozen=True, slots=True)
class _Change:
    """What a stream record says happened, in the terms enrolment cares about."""

    before: Payment | None
    after: Payment
    flags_added: frozenset[PaymentFlag] = field(default_factory=frozenset)

    @property
    def entered_entitling(self) -> bool:
        return self.after.status in ENTITLING_STATUSES and (
            self.before is None or self.before.status not in ENTITLING_STATUSES
        )

    @property
    def entered_revoking(self) -> bool:
        return self.after.status in REVOKING_STATUSES and (
            self.before is None or self.before.status not in REVOKING_STATUSES
        )

    @property
    def entered_failed(self) -> bool:
        return self.after.status is PaymentStatus.FAILED and (
            self.before is None or self.before.status is not PaymentStatus.FAILED
        )

    @property
    def relevant(self) -> bool:
        return (
            self.entered_entitling
            or self.entered_revoking
            or self.entered_failed
            or bool(self.flags_added)
        )


# --- the use cases ------------------------------------------------------------------------


class EnrollmentService:
    def __init__(
        self,
        payments: PaymentStore,
        enrollments: EnrollmentStore,
        events: EventPublisher,
        stream: PaymentChangeSource | None = None,
        *,
        clock: Callable[[], str] = utc_now,
        stale_attempts: int = 3,
    ) -> None:
        self._payments = payments
        self._enrollments = enrollments
        self._events = events
        self._stream = stream
        self._clock = clock
        self._stale_attempts = stale_attempts

    def on_payment_changed(
        self, before: Payment | None, after: Payment | None
    ) -> EnrollmentOutcome:
        """Act on one payment change from the stream; raises when it must be tried again."""
        if after is None:
            # A removed payment: nothing to grant, and a revocation follows refunds only.
            return EnrollmentOutcome(before.payment_id if before else None, ignored=True)
        previous_flags = before.flags if before is not None else frozenset()
        change = _Change(before, after, after.flags - previous_flags)
        if not change.relevant:
            logger.debug("payment change ignored", payment_id=after.payment_id)
            return EnrollmentOutcome(after.payment_id, ignored=True)
        events = _payment_events(change)
        enrolment: str | None = None
        if change.entered_entitling:
            grant, enrolment_events = self._grant(after)
            enrolment = str(grant)
            events.extend(enrolment_events)
        elif change.entered_revoking:
            revoke, enrolment_events = self._revoke(after)
            enrolment = str(revoke)
            events.extend(enrolment_events)
        self._publish(after.payment_id, events)
        return EnrollmentOutcome(after.payment_id, enrolment, tuple(e.detail_type for e in events))

    def reconcile(self, payment_id: str) -> EnrollmentOutcome:
        """Bring a payment's enrolment in line with its stored status (both ways idempotent).

        For the retry queue's "enrolment" messages and an admin's reprocess: it reads the
        payment as it is now, so it cannot act on an out-of-date picture of it.
        """
        payment = self._payments.get(payment_id, consistent=True)
        if payment is None:
            logger.error("enrolment blocked", payment_id=payment_id, reason="PaymentNotFound")
            count("EnrollmentBlocked")
            raise PaymentNotFound(payment_id)
        events: list[DomainEvent] = []
        enrolment: str | None = None
        if payment.status in ENTITLING_STATUSES:
            grant, events = self._grant(payment)
            enrolment = str(grant)
        elif payment.status in REVOKING_STATUSES:
            revoke, events = self._revoke(payment)
            enrolment = str(revoke)
        self._publish(payment_id, events)
        logger.info(
            "enrolment reconciled",
            payment_id=payment_id,
            status=str(payment.status),
            enrolment=enrolment,
        )
        return EnrollmentOutcome(payment_id, enrolment, tuple(e.detail_type for e in events))

    def replay_failed_batch(self, batch: FailedStreamBatch) -> list[EnrollmentOutcome]:
        """Re-run the records Lambda gave up on, read back from the stream.

        Why replay the records rather than only reconcile each payment's current status: the
        records must be read back anyway (the invocation record names no payment), and a
        record carries what the status alone cannot tell (that the payment failed, which flags
        it gained), events that must not be lost either. One code path, too: a replay is the
        same `on_payment_changed` the stream runs. It is safe for enrolments because grant and
        revoke are conditioned on the stored payment: a record gone stale (PAID, refunded
        since) is answered NOT_ENTITLED and enrols nobody.
        """
        if self._stream is None:
            raise RuntimeError("this enrolment service has no stream reader")
        logger.info(
            "replaying failed stream records",
            shard_id=batch.shard_id,
            first_sequence=batch.start_sequence_number,
            last_sequence=batch.end_sequence_number,
            batch_size=batch.batch_size,
            condition=batch.condition,
        )
        try:
            changes = self._stream.read_changes(
                batch.stream_arn,
                batch.shard_id,
                batch.start_sequence_number,
                batch.end_sequence_number,
            )
        except StorageError as exc:
            if not isinstance(exc, TransientStorageError):
                # Past the stream's retention: an "enrolment" message per payment (or an
                # admin's reprocess) is what is left; the DLQ alarm brings an operator.
                logger.error(
                    "failed stream records unreadable",
                    shard_id=batch.shard_id,
                    first_sequence=batch.start_sequence_number,
                    last_sequence=batch.end_sequence_number,
                    error=str(exc),
                )
                count("EnrollmentStreamRecordsUnreadable")
            raise
        count("EnrollmentStreamRecordsReplayed", len(changes))
        return [self.on_payment_changed(before, after) for before, after in changes]

    def retry(self, message: Mapping[str, Any]) -> list[EnrollmentOutcome]:
        """Handle one enrolment message from the retry queue (see `is_enrolment_retry`)."""
        if STREAM_BATCH_KEY in message:
            return self.replay_failed_batch(FailedStreamBatch.from_invocation_record(message))
        if message.get("kind") == ENROLMENT_MESSAGE_KIND and message.get("payment_id"):
            return [self.reconcile(str(message["payment_id"]))]
        raise ValueError("not an enrolment retry message")

    # --- steps ----------------------------------------------------------------------------

    def _grant(self, payment: Payment) -> tuple[GrantOutcome, list[DomainEvent]]:
        now = self._clock()
        try:
            result = GrantOutcome(self._enrollments.grant(payment, now))
        except (CourseNotFound, CourseInactive, PaymentNotFound) as exc:
            _blocked(payment, exc)
            raise
        if result is GrantOutcome.GRANTED:
            count("EnrollmentGranted")
            logger.info(
                "enrolment granted", payment_id=payment.payment_id, course_id=payment.course_id
            )
            return result, [enrollment_created(payment, now)]
        if result is GrantOutcome.ALREADY_GRANTED:
            # A replay, or a retry after the bus failed: publish again, from the stored enrolment.
            count("EnrollmentReplayed")
            held = self._enrollments.get(payment.student_id, payment.course_id)
            if held is None or held.payment_id != payment.payment_id:
                return result, []
            if held.status is not EnrollmentStatus.ACTIVE:
                return result, []
            return result, [enrollment_created(payment, held.enrolled_at)]
        if result is GrantOutcome.DUPLICATE_PAYMENT:
            self._flag_duplicate(payment)
            return result, []
        logger.info(
            "enrolment not granted: payment no longer entitles", payment_id=payment.payment_id
        )
        count("EnrollmentSkippedStale")
        return result, []

    def _revoke(self, payment: Payment) -> tuple[RevokeOutcome, list[DomainEvent]]:
        now = self._clock()
        try:
            result = RevokeOutcome(self._enrollments.revoke(payment, now))
        except PaymentNotFound as exc:
            _blocked(payment, exc)
            raise
        if result is RevokeOutcome.REVOKED:
            count("EnrollmentRevoked")
            logger.info(
                "enrolment revoked", payment_id=payment.payment_id, course_id=payment.course_id
            )
            return result, [enrollment_revoked(payment, now)]
        if result is RevokeOutcome.ALREADY_REVOKED:
            count("EnrollmentReplayed")
            held = self._enrollments.get(payment.student_id, payment.course_id)
            if (
                held is None
                or held.payment_id != payment.payment_id
                or held.status is not EnrollmentStatus.REVOKED
                or held.revoked_at is None
            ):
                return result, []
            return result, [enrollment_revoked(payment, held.revoked_at)]
        # NOT_GRANTED: this payment never enrolled anyone (a refunded duplicate keeps the
        # student's course); STILL_ENTITLED: the record is older than the stored payment.
        logger.info("enrolment not revoked", payment_id=payment.payment_id, result=str(result))
        return result, []

    def _flag_duplicate(self, payment: Payment) -> None:
        """Flag DUPLICATE_PAYMENT through the state machine, with an audit entry; alert once."""
        holder = self._enrollments.get(payment.student_id, payment.course_id)
        enrolled_by = holder.payment_id if holder is not None else None
        fact = TransactionFact(
            source=FactSource.ENROLMENT,
            kind=FactKind.DUPLICATE_PAYMENT,
            paymob_order_id=payment.paymob_order_id,
            reason="the student already holds this course",
        )
        current = payment
        for _ in range(self._stale_attempts):
            now = self._clock()
            decision = decide(current, fact, now)
            if not decision.changed:
                return  # flagged already, or no longer paid
            audit = PaymentEvent(
                partition=payment.payment_id,
                # One per payment: a replay finds it and knows the flag is set.
                event_key=DUPLICATE_EVENT_KEY,
                kind=EventKind.AUDIT,
                received_at=now,
                source=FactSource.ENROLMENT,
                paymob_order_id=payment.paymob_order_id,
                fact_kind=str(fact.kind),
                decision=str(decision.reason),
                status_before=str(decision.before.status),
                status_after=str(decision.after.status),
                reason=fact.reason,
                payload={"enrolled_by_payment_id": enrolled_by},
            )
            try:
                self._payments.save(decision, audit)
            except DuplicateEvent:
                return
            except StalePayment as stale:
                fresh = stale.current or self._payments.get(payment.payment_id, consistent=True)
                if fresh is None:
                    _blocked(payment, PaymentNotFound(payment.payment_id))
                    raise PaymentNotFound(payment.payment_id) from None
                current = fresh
                continue
            logger.error(
                "payment flagged",
                payment_id=payment.payment_id,
                flags=[str(PaymentFlag.DUPLICATE_PAYMENT)],
                enrolled_by_payment_id=enrolled_by,
                status=str(decision.after.status),
            )
            count("PaymentFlagged")
            count("EnrollmentDuplicatePayment")
            return
        raise TransientStorageError("the payment kept changing while flagging a duplicate")

    def _publish(self, payment_id: str, events: list[DomainEvent]) -> None:
        if not events:
            return
        try:
            self._events.publish(events)
        except Exception:
            logger.exception(
                "domain events not published",
                payment_id=payment_id,
                detail_types=[e.detail_type for e in events],
            )
            count("DomainEventsNotPublished")
            raise
        count("DomainEventsPublished", len(events))


def enrollments_of(reader: EnrollmentReader, student_id: str) -> list[Enrollment]:
    """A student's own enrolments, active and revoked, most recent first."""
    return reader.list_for_student(student_id)


# --- domain events --------------------------------------------------------------------------


def _payment_events(change: _Change) -> list[DomainEvent]:
    """The events a status change itself announces, whatever happens to the enrolment."""
    events: list[DomainEvent] = []
    if change.entered_entitling:
        events.append(payment_succeeded(change.after))
    if change.entered_failed:
        events.append(payment_failed(change.after))
    if change.flags_added:
        events.append(payment_flagged(change.after, change.flags_added))
    return events


def payment_succeeded(payment: Payment) -> DomainEvent:
    return _payment_event(
        DetailType.PAYMENT_SUCCEEDED,
        payment,
        status=str(payment.status),
        completed_at=payment.completed_at,
        paymob_transaction_id=payment.paymob_transaction_id,
    )


def payment_failed(payment: Payment) -> DomainEvent:
    return _payment_event(
        DetailType.PAYMENT_FAILED,
        payment,
        failure_reason=payment.failure_reason,
        completed_at=payment.completed_at,
    )


def payment_flagged(payment: Payment, flags_added: frozenset[PaymentFlag]) -> DomainEvent:
    return _payment_event(
        DetailType.PAYMENT_FLAGGED,
        payment,
        status=str(payment.status),
        flags_added=sorted(str(f) for f in flags_added),
        flags=sorted(str(f) for f in payment.flags),
    )


def enrollment_created(payment: Payment, enrolled_at: str) -> DomainEvent:
    return _enrollment_event(
        DetailType.ENROLLMENT_CREATED, payment, enrolled_at, enrolled_at=enrolled_at
    )


def enrollment_revoked(payment: Payment, revoked_at: str) -> DomainEvent:
    return _enrollment_event(
        DetailType.ENROLLMENT_REVOKED,
        payment,
        revoked_at,
        revoked_at=revoked_at,
        payment_status=str(payment.status),
        refunded_amount_cents=payment.refunded_amount_cents,
    )


def _payment_event(detail_type: DetailType, payment: Payment, **specific: Any) -> DomainEvent:
    # Keyed by the payment's version: the same change replayed is the same event.
    event_id = _event_id(detail_type, payment.payment_id, str(payment.version))
    return DomainEvent(
        str(detail_type),
        {**_common(event_id, payment.updated_at, payment), **specific},
    )


def _enrollment_event(
    detail_type: DetailType, payment: Payment, at: str, **specific: Any
) -> DomainEvent:
    # Keyed by the enrolment's own time, which storage writes once: every path that
    # re-publishes it (a replay, the retry queue, a reprocess) yields the same id.
    event_id = _event_id(detail_type, payment.student_id, payment.course_id, payment.payment_id, at)
    return DomainEvent(str(detail_type), {**_common(event_id, at, payment), **specific})


def _common(event_id: str, occurred_at: str, payment: Payment) -> dict[str, Any]:
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": event_id,
        "occurred_at": occurred_at,
        "payment_id": payment.payment_id,
        "student_id": payment.student_id,
        "course_id": payment.course_id,
        "amount_cents": payment.amount_cents,
        "currency": payment.currency,
    }


def _event_id(*parts: str) -> str:
    return str(uuid.uuid5(_EVENT_IDS, "|".join(parts)))


def _blocked(payment: Payment, exc: Exception) -> None:
    logger.error(
        "enrolment blocked",
        payment_id=payment.payment_id,
        course_id=payment.course_id,
        status=str(payment.status),
        reason=type(exc).__name__,
    )
    count("EnrollmentBlocked")
