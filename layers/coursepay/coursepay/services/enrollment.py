"""Enrolment from payment changes: grant once, revoke once, flag duplicates, publish domain events.

Every payment change reaches here from the Payments table's stream (the one place all of them
pass, whichever path made them), as the payment before and after the change:

- entering PAID or PARTIALLY_REFUNDED from a status that did not entitle (INSERTs, late
  successes and admin overrides included) grants the enrolment; leaving those two for any
  status that does not entitle (a full refund, a void, an admin override to FAILED,
  UNDER_REVIEW, PENDING, EXPIRED...) revokes it. Storage does each in one transaction
  conditioned on the *stored* payment, so a replayed or out-of-date record cannot grant or
  revoke twice, nor grant a payment refunded since (GrantOutcome.NOT_ENTITLED,
  RevokeOutcome.STILL_ENTITLED);
- the student keeps a course while any payment of theirs for it entitles: revoking the
  payment that holds the enrolment moves it to another PAID or PARTIALLY_REFUNDED payment
  of the student and course, if there is one (one transaction, the count unchanged,
  EnrollmentTransferred), instead of revoking it; and a grant that finds the enrolment held
  by a payment that no longer entitles takes it over the same way;
- a student who already holds the course by another entitling payment is not enrolled
  twice: the payment is flagged DUPLICATE_PAYMENT through the state machine, for an admin;
- a course deactivated after checkout still takes the paid enrolment (the student paid while
  it was offered); it is logged and counted (EnrollmentIntoInactiveCourse);
- events go on the bus only after the transaction committed. A publish that fails raises, the
  record is delivered again, the grant answers ALREADY_GRANTED and the events are published
  again: delivery is at least once, and a repeat carries the same `detail.event_id`.

Failures (course missing, payment gone, throttling, bus down) raise, so the record
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
from coursepay.services.ports import PaymentStore, RetryQueue
from coursepay.storage.errors import (
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
    ENROLLMENT_TRANSFERRED = "EnrollmentTransferred"


class GrantOutcome(StrEnum):
    """What storage's grant transaction answered (the same values as storage's GrantResult)."""

    GRANTED = "GRANTED"
    GRANTED_INACTIVE_COURSE = "GRANTED_INACTIVE_COURSE"
    ALREADY_GRANTED = "ALREADY_GRANTED"
    DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"
    NOT_ENTITLED = "NOT_ENTITLED"


class RevokeOutcome(StrEnum):
    """What storage's revoke transaction answered (the same values as storage's RevokeResult)."""

    REVOKED = "REVOKED"
    ALREADY_REVOKED = "ALREADY_REVOKED"
    NOT_GRANTED = "NOT_GRANTED"
    STILL_ENTITLED = "STILL_ENTITLED"


class TransferOutcome(StrEnum):
    """What storage's transfer transaction answered (the same values as its TransferResult)."""

    TRANSFERRED = "TRANSFERRED"
    ALREADY_TRANSFERRED = "ALREADY_TRANSFERRED"
    NOT_HELD = "NOT_HELD"
    STILL_ENTITLED = "STILL_ENTITLED"
    NOT_ENTITLED = "NOT_ENTITLED"


# --- ports ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DomainEvent:
    """One event for the bus: DetailType and detail (ids, minor units, no personal data)."""

    detail_type: str
    detail: dict[str, Any]


class Handover(Protocol):
    """How an enrolment came to the payment it names, when it was moved from another."""

    @property
    def from_payment_id(self) -> str: ...

    @property
    def to_payment_id(self) -> str: ...

    @property
    def at(self) -> str: ...


class EnrollmentStore(Protocol):
    def get(
        self, student_id: str, course_id: str, consistent: bool = True
    ) -> Enrollment | None: ...

    def handover(self, student_id: str, course_id: str) -> Handover | None: ...

    def other_entitling_payment(
        self, student_id: str, course_id: str, excluding: str
    ) -> Payment | None: ...

    def grant(self, payment: Payment, now: str) -> str: ...

    def revoke(self, payment: Payment, now: str) -> str: ...

    def transfer(self, old: Payment, new: Payment, now: str) -> str: ...


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


def enrolment_retry_message(
    payment_id: str, change: tuple[Payment | None, Payment | None] | None = None
) -> dict[str, Any]:
    """A retry-queue message for one payment's enrolment.

    With a `change` (the record's before and after), the retry runs that change again, its
    domain events included; without one (an operator's message), it reconciles the
    enrolment with the payment's current status.
    """
    message: dict[str, Any] = {"kind": ENROLMENT_MESSAGE_KIND, "payment_id": payment_id}
    if change is not None:
        message["change"] = [None if p is None else p.model_dump(mode="json") for p in change]
    return message


def _change_of(message: Mapping[str, Any]) -> tuple[Payment | None, Payment | None]:
    before, after = message["change"]
    return (
        None if before is None else Payment.model_validate(before),
        None if after is None else Payment.model_validate(after),
    )


@dataclass(frozen=True, slots=True)
class EnrollmentOutcome:
    payment_id: str | None
    # A GrantOutcome, RevokeOutcome or TransferOutcome (GRANTED also for a course deactivated
    # since checkout); None if no enrolment change was due.
    enrolment: str | None = None
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
    def left_entitling(self) -> bool:
        # Whatever the new status (REFUNDED, VOIDED, or an override to FAILED, UNDER_REVIEW,
        # PENDING, EXPIRED...): a payment holds an enrolment only while it entitles. An INSERT
        # leaves nothing: a payment holds an enrolment only after a grant wrote it.
        return (
            self.before is not None
            and self.before.status in ENTITLING_STATUSES
            and self.after.status not in ENTITLING_STATUSES
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
            or self.left_entitling
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
        retry_queue: RetryQueue | None = None,
        clock: Callable[[], str] = utc_now,
        stale_attempts: int = 3,
    ) -> None:
        self._payments = payments
        self._enrollments = enrollments
        self._events = events
        self._stream = stream
        self._retry_queue = retry_queue
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
        elif change.left_entitling:
            revoke, enrolment_events = self._revoke(after)
            enrolment = str(revoke)
            events.extend(enrolment_events)
        self._publish(after.payment_id, events)
        return EnrollmentOutcome(after.payment_id, enrolment, tuple(e.detail_type for e in events))

    def reconcile(self, payment_id: str) -> EnrollmentOutcome:
        """Bring a payment's enrolment in line with its stored status (both ways idempotent).

        For the retry queue's "enrolment" messages and an admin's reprocess: it reads the
        payment as it is now, so it cannot act on an out-of-date picture of it. An entitling
        payment is granted; one that does not entitle is revoked (or its enrolment moved to
        another entitling payment) if it is REFUNDED or VOIDED or was ever enrolled (its
        `enrolled_at` mark); any other is left alone.
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
        elif payment.status in REVOKING_STATUSES or payment.enrolled_at is not None:
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
        outcomes: list[EnrollmentOutcome] = []
        stuck: list[str] = []
        for before, after in changes:
            # Each record on its own: the range Lambda gave up on mixes unrelated payments,
            # and one that keeps failing must not hold the others back.
            changed = after or before
            payment_id = changed.payment_id if changed is not None else None
            logger.info("replaying a payment change", payment_id=payment_id)
            try:
                outcomes.append(self.on_payment_changed(before, after))
            except Exception:
                logger.exception("replayed payment change failed", payment_id=payment_id)
                if payment_id is None or not self._requeue(payment_id, (before, after)):
                    stuck.append(str(payment_id))
        if stuck:
            raise TransientStorageError(f"replay not done for payments {', '.join(stuck)}")
        return outcomes

    def _requeue(self, payment_id: str, change: tuple[Payment | None, Payment | None]) -> bool:
        """Hand one change on as its own retry message; False when that cannot be done."""
        if self._retry_queue is None:
            return False
        try:
            self._retry_queue.send(enrolment_retry_message(payment_id, change))
        except Exception:
            logger.exception("could not requeue a payment's enrolment", payment_id=payment_id)
            return False
        count("EnrollmentReplayRequeued")
        return True

    def retry(self, message: Mapping[str, Any]) -> list[EnrollmentOutcome]:
        """Handle one enrolment message from the retry queue (see `is_enrolment_retry`)."""
        if STREAM_BATCH_KEY in message:
            return self.replay_failed_batch(FailedStreamBatch.from_invocation_record(message))
        if message.get("kind") == ENROLMENT_MESSAGE_KIND and message.get("change"):
            return [self.on_payment_changed(*_change_of(message))]
        if message.get("kind") == ENROLMENT_MESSAGE_KIND and message.get("payment_id"):
            return [self.reconcile(str(message["payment_id"]))]
        raise ValueError("not an enrolment retry message")

    # --- steps ----------------------------------------------------------------------------

    def _grant(self, payment: Payment) -> tuple[str, list[DomainEvent]]:
        for _ in range(self._stale_attempts):
            now = self._clock()
            try:
                result = GrantOutcome(self._enrollments.grant(payment, now))
            except (CourseNotFound, PaymentNotFound) as exc:
                _blocked(payment, exc)
                raise
            if result in (GrantOutcome.GRANTED, GrantOutcome.GRANTED_INACTIVE_COURSE):
                count("EnrollmentGranted")
                logger.info(
                    "enrolment granted", payment_id=payment.payment_id, course_id=payment.course_id
                )
                if result is GrantOutcome.GRANTED_INACTIVE_COURSE:
                    # The student paid while the course was offered: enrolled all the same.
                    logger.warning(
                        "enrolment into an inactive course",
                        payment_id=payment.payment_id,
                        course_id=payment.course_id,
                    )
                    count("EnrollmentIntoInactiveCourse")
                return GrantOutcome.GRANTED, [enrollment_created(payment, now)]
            if result is GrantOutcome.ALREADY_GRANTED:
                # A replay, or a retry after the bus failed: publish again, from what is stored.
                count("EnrollmentReplayed")
                return result, self._granted_events(payment)
            if result is GrantOutcome.DUPLICATE_PAYMENT:
                taken = self._take_over(payment)
                if taken is None:
                    continue  # the enrolment changed meanwhile: grant again, from the start
                return taken
            logger.info(
                "enrolment not granted: payment no longer entitles", payment_id=payment.payment_id
            )
            count("EnrollmentSkippedStale")
            return result, []
        raise TransientStorageError("the enrolment kept changing while granting")

    def _take_over(self, payment: Payment) -> tuple[str, list[DomainEvent]] | None:
        """The enrolment is held by another payment: flag a duplicate, or take it over.

        The holder keeps it while its stored status entitles (this payment is then a
        DUPLICATE_PAYMENT). A holder that no longer entitles (refunded, voided or overridden,
        its own revocation not yet run or failed) hands the enrolment to this payment in one
        transaction. None when the enrolment changed meanwhile: the caller grants again.
        """
        held = self._enrollments.get(payment.student_id, payment.course_id)
        if held is None or held.status is not EnrollmentStatus.ACTIVE:
            return None
        if held.payment_id == payment.payment_id:
            return None
        holder = self._payments.get(held.payment_id, consistent=True)
        if holder is None or holder.entitles:
            # A holder whose row is gone is left for an admin too, like any duplicate.
            self._flag_duplicate(payment, held.payment_id)
            return GrantOutcome.DUPLICATE_PAYMENT, []
        result, events = self._transfer(holder, payment, held)
        if result in (TransferOutcome.TRANSFERRED, TransferOutcome.ALREADY_TRANSFERRED):
            return result, events
        if (
            result is TransferOutcome.NOT_HELD
            and self._enrollments.get(payment.student_id, payment.course_id) == held
        ):
            # The enrolment still names the holder, whose marks do not let it move (it was
            # written by hand, say): leave it to an admin, like any duplicate.
            result = TransferOutcome.STILL_ENTITLED
        if result is TransferOutcome.STILL_ENTITLED:
            self._flag_duplicate(payment, held.payment_id)
            return GrantOutcome.DUPLICATE_PAYMENT, []
        return None  # NOT_HELD, NOT_ENTITLED: the grant's own answer says what happened

    def _granted_events(self, payment: Payment) -> list[DomainEvent]:
        """The enrolment event of a payment that holds its enrolment, as first published."""
        held = self._enrollments.get(payment.student_id, payment.course_id)
        if held is None or held.payment_id != payment.payment_id:
            return []
        if held.status is not EnrollmentStatus.ACTIVE:
            return []
        handover = self._enrollments.handover(payment.student_id, payment.course_id)
        if handover is not None and handover.to_payment_id == payment.payment_id:
            # It came to this payment from another: that move is what was announced.
            return [
                enrollment_transferred(
                    payment, handover.from_payment_id, held.enrolled_at, handover.at
                )
            ]
        return [enrollment_created(payment, held.enrolled_at)]

    def _revoke(self, payment: Payment) -> tuple[str, list[DomainEvent]]:
        held = self._enrollments.get(payment.student_id, payment.course_id)
        if (
            held is not None
            and held.payment_id == payment.payment_id
            and held.status is EnrollmentStatus.ACTIVE
        ):
            moved = self._hand_on(payment, held)
            if moved is not None:
                return moved
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
            return self._released_events(payment)
        # NOT_GRANTED: this payment never enrolled anyone (a refunded duplicate keeps the
        # student's course); STILL_ENTITLED: the record is older than the stored payment.
        logger.info("enrolment not revoked", payment_id=payment.payment_id, result=str(result))
        return result, []

    def _hand_on(self, payment: Payment, held: Enrollment) -> tuple[str, list[DomainEvent]] | None:
        """Move the enrolment `payment` holds to another entitling payment, if there is one.

        None when there is none (or the enrolment is no longer this payment's): revoke.
        """
        for _ in range(self._stale_attempts):
            successor = self._enrollments.other_entitling_payment(
                payment.student_id, payment.course_id, excluding=payment.payment_id
            )
            if successor is None:
                return None
            result, events = self._transfer(payment, successor, held)
            if result in (TransferOutcome.TRANSFERRED, TransferOutcome.ALREADY_TRANSFERRED):
                return result, events
            if result is TransferOutcome.STILL_ENTITLED:
                logger.info(
                    "enrolment not revoked", payment_id=payment.payment_id, result=str(result)
                )
                return RevokeOutcome.STILL_ENTITLED, []
            if result is TransferOutcome.NOT_HELD:
                return None  # the revocation's own answer says what happened
            # NOT_ENTITLED: that payment stopped entitling since it was found: look again.
        raise TransientStorageError(
            "the student's payments kept changing while moving an enrolment"
        )

    def _transfer(
        self, old: Payment, new: Payment, held: Enrollment
    ) -> tuple[TransferOutcome, list[DomainEvent]]:
        now = self._clock()
        try:
            result = TransferOutcome(self._enrollments.transfer(old, new, now))
        except PaymentNotFound as exc:
            _blocked(old, exc)
            raise
        if result is TransferOutcome.TRANSFERRED:
            count("EnrollmentTransferred")
            logger.info(
                "enrolment transferred",
                payment_id=new.payment_id,
                previous_payment_id=old.payment_id,
                previous_status=str(old.status),
                course_id=new.course_id,
            )
            return result, [enrollment_transferred(new, old.payment_id, held.enrolled_at, now)]
        if result is TransferOutcome.ALREADY_TRANSFERRED:
            count("EnrollmentReplayed")
            handover = self._enrollments.handover(new.student_id, new.course_id)
            if handover is None or handover.to_payment_id != new.payment_id:
                return result, []
            return result, [
                enrollment_transferred(new, old.payment_id, held.enrolled_at, handover.at)
            ]
        return result, []

    def _released_events(self, payment: Payment) -> tuple[str, list[DomainEvent]]:
        """A payment's enrolment ended before: announce again how (revoked, or moved on)."""
        held = self._enrollments.get(payment.student_id, payment.course_id)
        if held is None:
            return RevokeOutcome.ALREADY_REVOKED, []
        if held.payment_id == payment.payment_id:
            if held.status is not EnrollmentStatus.REVOKED or held.revoked_at is None:
                return RevokeOutcome.ALREADY_REVOKED, []
            return RevokeOutcome.ALREADY_REVOKED, [enrollment_revoked(payment, held.revoked_at)]
        handover = self._enrollments.handover(payment.student_id, payment.course_id)
        if handover is None or handover.from_payment_id != payment.payment_id:
            return RevokeOutcome.ALREADY_REVOKED, []
        successor = self._payments.get(handover.to_payment_id, consistent=True)
        if successor is None:
            return TransferOutcome.ALREADY_TRANSFERRED, []
        return TransferOutcome.ALREADY_TRANSFERRED, [
            enrollment_transferred(successor, payment.payment_id, held.enrolled_at, handover.at)
        ]

    def _flag_duplicate(self, payment: Payment, enrolled_by: str) -> None:
        """Flag DUPLICATE_PAYMENT through the state machine, with an audit entry; alert once."""
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


def enrollment_transferred(
    payment: Payment, previous_payment_id: str, enrolled_at: str, transferred_at: str
) -> DomainEvent:
    """The enrolment moved to `payment` from one that no longer entitles; access unchanged."""
    return _enrollment_event(
        DetailType.ENROLLMENT_TRANSFERRED,
        payment,
        transferred_at,
        transferred_at=transferred_at,
        previous_payment_id=previous_payment_id,
        enrolled_at=enrolled_at,
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
