"""Checkout: the course catalogue, and a PENDING payment with a PayMob intention to pay it."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol
from urllib.parse import quote

from coursepay.domain.facts import FactKind, FactSource, TransactionFact
from coursepay.domain.payment import Payment, PaymentStatus
from coursepay.domain.records import Course, Enrollment, EnrollmentStatus, EventKind, PaymentEvent
from coursepay.domain.state_machine import decide
from coursepay.errors import ApiError, BadGateway, BadRequest, Conflict, NotFound
from coursepay.observability import count, logger
from coursepay.paymob.client import (
    Intention,
    PaymobError,
    PaymobRejected,
    redact_personal_data,
)
from coursepay.services.inquiry import PaymentInquiry, bookkeeping, iso, parse_time
from coursepay.services.ports import PaymentStore
from coursepay.storage.errors import PaymentAlreadyExists, StorageError
from coursepay.storage.pagination import Page

ITEM_NAME_MAX = 50  # PayMob refuses longer item names
ITEM_DESCRIPTION_MAX = 255
NOT_PROVIDED = "NA"  # what PayMob accepts for billing fields a token does not carry
IDEMPOTENCY_KEY_MAX = 255
# A PENDING payment is offered again only if the student has time left to pay it.
REUSE_MIN_REMAINING = timedelta(minutes=5)
_PENDING_PAGES = 5
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


# --- errors (their HTTP status and code come from coursepay.errors) -------------------


class CourseUnavailable(NotFound):
    code = "course_not_found"


class AlreadyEnrolled(Conflict):
    code = "already_enrolled"


class AlreadyPaid(Conflict):
    """Paid, but not enrolled yet (enrolment follows in moments) or held for an admin."""

    code = "already_paid"


# A payment in one of these already covers the course: a second checkout would charge twice.
_COVERING_STATUSES = (
    PaymentStatus.PAID,
    PaymentStatus.PARTIALLY_REFUNDED,
    PaymentStatus.UNDER_REVIEW,
)


class CheckoutInProgress(Conflict):
    """The first request with this Idempotency-Key has not finished yet."""

    code = "checkout_in_progress"


class InvalidIdempotencyKey(BadRequest):
    code = "invalid_idempotency_key"


class IdempotencyKeyReused(ApiError):
    """The key was first used for another course: a client bug, not a replay."""

    status, code = 422, "idempotency_key_reused"


class CheckoutFailed(BadGateway):
    """PayMob refused or failed to open the checkout; the payment was marked FAILED.

    With an Idempotency-Key this is the key's answer for good (a replay gets it again: the
    key names this FAILED payment), so the message says a new attempt needs a new key.
    """

    def __init__(self, payment_id: str, reason: str, *, keyed: bool = False) -> None:
        again = "try again with a new Idempotency-Key" if keyed else "try again"
        super().__init__(f"{reason}; payment {payment_id} was not opened, {again}")
        self.payment_id = payment_id


# --- ports --------------------------------------------------------------------------------


class CheckoutPayments(PaymentStore, Protocol):
    def create(self, payment: Payment) -> None: ...

    def bind_idempotency_key(self, keyed_id: str, payment_id: str) -> str: ...

    def idempotency_binding(self, keyed_id: str) -> str | None: ...

    def claim_open_checkout(
        self,
        student_id: str,
        course_id: str,
        payment_id: str,
        open_until: str,
        now: str,
        *,
        replacing: str | None = None,
    ) -> str | None: ...

    def list_by_student(
        self,
        student_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        newest_first: bool = True,
        status: PaymentStatus | None = None,
    ) -> Page[Payment]: ...

    def orphans_for_order(self, order_id: str) -> list[PaymentEvent]: ...


class Catalogue(Protocol):
    def get(self, course_id: str, consistent: bool = False) -> Course | None: ...

    def list_active(self) -> list[Course]: ...


class EnrollmentLookup(Protocol):
    def get(
        self, student_id: str, course_id: str, consistent: bool = True
    ) -> Enrollment | None: ...


class IntentionGateway(Protocol):
    def create_intention(self, body: dict[str, Any]) -> Intention: ...

    def checkout_url(self, client_secret: str) -> str: ...


# --- the use case -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Student:
    """Who pays, from the token's claims: PayMob's billing data needs a name and contact."""

    student_id: str
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None
    phone_number: str | None = None


@dataclass(frozen=True, slots=True)
class CheckoutRequest:
    student: Student
    course_id: str
    public_base_url: str  # where PayMob sends the callback and the browser
    idempotency_key: str | None = None


@dataclass(frozen=True, slots=True)
class CheckoutResult:
    payment: Payment
    created: bool  # False: an existing payment is answered (reused or replayed)
    replayed: bool = False

    def to_json(self) -> dict[str, Any]:
        p = self.payment
        return {
            "payment_id": p.payment_id,
            "status": str(p.status),
            "checkout_url": p.checkout_url,
            "expires_at": p.expires_at,
        }


@dataclass(frozen=True, slots=True)
class CheckoutSettings:
    integration_ids: tuple[int, ...]
    expiration_seconds: int


class CheckoutService:
    def __init__(
        self,
        payments: CheckoutPayments,
        courses: Catalogue,
        enrollments: EnrollmentLookup,
        paymob: IntentionGateway,
        inquiry: PaymentInquiry,
        settings: CheckoutSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        if not settings.integration_ids:
            raise ValueError("checkout needs at least one PayMob integration id")
        self._payments = payments
        self._courses = courses
        self._enrollments = enrollments
        self._paymob = paymob
        self._inquiry = inquiry
        self._settings = settings
        self._clock = clock
        self._random_bytes = random_bytes

    def active_courses(self) -> list[Course]:
        return self._courses.list_active()

    def checkout(self, request: CheckoutRequest) -> CheckoutResult:
        """Open (or reuse) the student's payment for a course.

        With an Idempotency-Key the payment id is derived from the student and the key, so
        the conditional create of the payment is the idempotency record: a replay finds the
        same payment, in whatever state it has reached since.
        """
        student = request.student
        keyed_id = None
        if request.idempotency_key is not None:
            keyed_id = keyed_payment_id(student.student_id, request.idempotency_key)
            replay = self._replay(keyed_id, student.student_id, request.course_id)
            if replay is not None:
                return replay
            bound = self._payments.idempotency_binding(keyed_id)
            if bound is not None:
                replay = self._replay(bound, student.student_id, request.course_id)
                if replay is not None:
                    return replay
        course = self._courses.get(request.course_id)
        if course is None or not course.active:
            raise CourseUnavailable(f"no course {request.course_id!r} is open for enrolment")
        enrollment = self._enrollments.get(student.student_id, course.course_id)
        if enrollment is not None and enrollment.status is EnrollmentStatus.ACTIVE:
            raise AlreadyEnrolled("you are already enrolled in this course")
        covering = self._covering_payment(student.student_id, course.course_id)
        if covering is not None:
            count("CheckoutRefusedAlreadyPaid")
            logger.info("checkout refused: already paid", payment_id=covering.payment_id)
            raise AlreadyPaid(
                f"payment {covering.payment_id} already covers this course "
                f"({covering.status}); no second payment is taken"
            )
        now = self._clock()
        live = self._live_pending(student.student_id, course, now)
        if live is not None:
            return self._reuse(live, keyed_id)
        payment = self._new_payment(keyed_id, student, course, now)
        held = self._claim_open_checkout(payment, course, now)
        if held is not None:
            return self._reuse(held.payment, keyed_id)
        try:
            self._payments.create(payment)
        except PaymentAlreadyExists:
            # The same Idempotency-Key, concurrently: the other request owns the checkout.
            replay = self._replay(payment.payment_id, student.student_id, course.course_id)
            if replay is None:
                raise
            return replay
        logger.info("payment created", payment_id=payment.payment_id, course_id=course.course_id)
        body = self._intention_body(payment, course, student, request.public_base_url)
        try:
            intention = self._paymob.create_intention(body)
        except Exception as error:
            if not isinstance(error, PaymobError):
                # Say, the PayMob secret could not be read: no PENDING is left behind either.
                logger.exception(
                    "checkout failed before PayMob answered", payment_id=payment.payment_id
                )
            self._fail(payment, error, body)
            raise CheckoutFailed(
                payment.payment_id, _failure_reason(error), keyed=keyed_id is not None
            ) from None
        opened = self._open(payment, intention)
        self._apply_raced_callbacks(opened)
        count("CheckoutCreated")
        return CheckoutResult(opened, created=True)

    # --- steps ----------------------------------------------------------------------

    def _replay(self, payment_id: str, student_id: str, course_id: str) -> CheckoutResult | None:
        payment = self._payments.get(payment_id, consistent=True)
        if payment is None:
            return None
        if payment.student_id != student_id or payment.course_id != course_id:
            raise IdempotencyKeyReused("this Idempotency-Key was used for another checkout")
        count("CheckoutReplayed")
        if payment.checkout_url is None:
            if payment.status is PaymentStatus.PENDING:
                raise CheckoutInProgress("the first request with this key is still running")
            # The first answer was a failure to open the checkout: answer it again. The key
            # stays bound to this FAILED payment; a new attempt needs a new key.
            raise CheckoutFailed(
                payment.payment_id, payment.failure_reason or "checkout failed", keyed=True
            )
        return CheckoutResult(payment, created=False, replayed=True)

    def _reuse(self, live: Payment, keyed_id: str | None) -> CheckoutResult:
        """Answer with the student's open payment; a keyed request binds its key to it, so a
        retry with that key answers the same payment whatever it has become since."""
        if keyed_id is not None:
            bound = self._payments.bind_idempotency_key(keyed_id, live.payment_id)
            if bound != live.payment_id:
                replay = self._replay(bound, live.student_id, live.course_id)
                if replay is not None:
                    return replay
        count("CheckoutReused")
        logger.info("checkout reused", payment_id=live.payment_id)
        return CheckoutResult(live, created=False)

    def _claim_open_checkout(
        self, payment: Payment, course: Course, now: datetime
    ) -> CheckoutResult | None:
        """One open PayMob page per student and course, however many requests race.

        The index that finds a live payment to reuse lags a moment behind a new one, so two
        simultaneous checkouts (a double click, two tabs) would both open a page; a claim,
        one conditional write, lets one through. The other answers the winner's payment, or
        409 while it is still opening. A winner that has since failed, expired or been
        repriced is replaced.
        """
        assert payment.expires_at is not None
        holder = self._payments.claim_open_checkout(
            payment.student_id, payment.course_id, payment.payment_id, payment.expires_at, iso(now)
        )
        if holder is None or holder == payment.payment_id:
            return None
        existing = self._payments.get(holder, consistent=True)
        if existing is not None and existing.status in _COVERING_STATUSES:
            raise AlreadyPaid(f"payment {existing.payment_id} already covers this course")
        if existing is not None and existing.status is PaymentStatus.PENDING:
            if existing.checkout_url is None:
                raise CheckoutInProgress("another checkout of this course is opening")
            if self._reusable(existing, course, now):
                return CheckoutResult(existing, created=False)
        replaced = self._payments.claim_open_checkout(
            payment.student_id,
            payment.course_id,
            payment.payment_id,
            payment.expires_at,
            iso(now),
            replacing=holder,
        )
        if replaced is not None and replaced != payment.payment_id:
            raise CheckoutInProgress("another checkout of this course is opening")
        return None

    def _reusable(self, payment: Payment, course: Course, now: datetime) -> bool:
        return (
            payment.amount_cents == course.price_cents
            and payment.currency == course.currency
            and payment.checkout_url is not None
            and payment.expires_at is not None
            and parse_time(payment.expires_at) - now >= REUSE_MIN_REMAINING
        )

    def _covering_payment(self, student_id: str, course_id: str) -> Payment | None:
        """A payment of the student's that already pays for the course, read by its key.

        The by-student index may lag a moment behind a status change, so what it lists is
        read again consistently before it refuses a checkout.
        """
        for status in _COVERING_STATUSES:
            cursor: str | None = None
            for _ in range(_PENDING_PAGES):
                page = self._payments.list_by_student(
                    student_id, limit=20, cursor=cursor, status=status
                )
                for listed in page.items:
                    if listed.course_id != course_id:
                        continue
                    payment = self._payments.get(listed.payment_id, consistent=True)
                    if payment is not None and payment.status in _COVERING_STATUSES:
                        return payment
                cursor = page.cursor
                if cursor is None:
                    break
        return None

    def _live_pending(self, student_id: str, course: Course, now: datetime) -> Payment | None:
        """The student's newest PENDING payment for the course that can still be paid, at
        the course's current price (a price change opens a new payment)."""
        oldest_live = now - timedelta(seconds=self._settings.expiration_seconds)
        cursor: str | None = None
        for _ in range(_PENDING_PAGES):
            page = self._payments.list_by_student(
                student_id, limit=20, cursor=cursor, status=PaymentStatus.PENDING
            )
            for payment in page.items:
                if parse_time(payment.created_at) < oldest_live:
                    return None  # newest first: nothing older can still be open
                if payment.course_id == course.course_id and self._reusable(payment, course, now):
                    return payment
            cursor = page.cursor
            if cursor is None:
                return None
        return None

    def _new_payment(
        self, keyed_id: str | None, student: Student, course: Course, now: datetime
    ) -> Payment:
        created_at = iso(now)
        return Payment(
            payment_id=keyed_id or new_payment_id(now, self._random_bytes(10)),
            student_id=student.student_id,
            course_id=course.course_id,
            amount_cents=course.price_cents,
            currency=course.currency,
            status=PaymentStatus.PENDING,
            created_at=created_at,
            updated_at=created_at,
            version=1,
            integration_ids=self._settings.integration_ids,
            expires_at=iso(now + timedelta(seconds=self._settings.expiration_seconds)),
        )

    def _intention_body(
        self, payment: Payment, course: Course, student: Student, public_base_url: str
    ) -> dict[str, Any]:
        base = public_base_url.rstrip("/")
        title = course.title.strip() or course.course_id
        first_name = _given(student.first_name)
        last_name = _given(student.last_name)
        email = _given(student.email)
        return {
            "amount": payment.amount_cents,
            "currency": payment.currency,
            "payment_methods": list(self._settings.integration_ids),
            "items": [
                {
                    "name": title[:ITEM_NAME_MAX],
                    "amount": payment.amount_cents,
                    "description": title[:ITEM_DESCRIPTION_MAX],
                    "quantity": 1,
                }
            ],
            "billing_data": {
                "first_name": first_name,
                "last_name": last_name,
                "email": email,
                "phone_number": _given(student.phone_number),
                "apartment": NOT_PROVIDED,
                "floor": NOT_PROVIDED,
                "street": NOT_PROVIDED,
                "building": NOT_PROVIDED,
                "city": NOT_PROVIDED,
                "country": NOT_PROVIDED,
            },
            "customer": {"first_name": first_name, "last_name": last_name, "email": email},
            "special_reference": payment.payment_id,
            "expiration": self._settings.expiration_seconds,
            "notification_url": f"{base}/api/payments/webhook",
            "redirection_url": f"{base}/courses/{quote(course.course_id, safe='')}/payment/result",
            "extras": {"payment_id": payment.payment_id, "course_id": course.course_id},
        }

    def _open(self, payment: Payment, intention: Intention) -> Payment:
        decision = bookkeeping(
            payment,
            paymob_intention_id=intention.intention_id,
            paymob_order_id=intention.order_id,
            checkout_url=self._paymob.checkout_url(intention.client_secret),
        )
        self._payments.save(decision, None)
        logger.info(
            "checkout opened",
            payment_id=payment.payment_id,
            paymob_order_id=intention.order_id,
            paymob_intention_id=intention.intention_id,
        )
        return decision.after

    def _fail(self, payment: Payment, error: Exception, body: dict[str, Any]) -> None:
        """Close the payment that never reached PayMob, so no PENDING is left behind.

        A checkout PayMob would not open is a declined attempt without a transaction: the
        state machine's decline rule (PENDING to FAILED, with the reason) is exactly it, and
        a success that somehow arrived later would still be accepted and flagged.

        The audit entry and the log keep PayMob's status and its per-field messages, never
        the student's data PayMob may echo from `body` (names, email, phone): the client
        redacts its errors already, and this does again whatever gateway refused.
        """
        reason = _failure_reason(error)
        now = iso(self._clock())
        fact = TransactionFact(
            source=FactSource.CHECKOUT, kind=FactKind.DECLINED, failure_reason=reason
        )
        decision = decide(payment, fact, now)
        details: dict[str, Any] = {"error": type(error).__name__}
        if isinstance(error, PaymobRejected):
            details.update(status=error.status, details=redact_personal_data(error.details, body))
        event = PaymentEvent(
            partition=payment.payment_id,
            event_key=f"AUDIT#{now}#CHECKOUT",
            kind=EventKind.AUDIT,
            received_at=now,
            source=FactSource.CHECKOUT,
            fact_kind=str(fact.kind),
            decision=str(decision.reason),
            status_before=str(decision.before.status),
            status_after=str(decision.after.status),
            actor="checkout",
            reason=reason,
            payload=details,
        )
        count("CheckoutFailed")
        logger.warning("checkout failed", payment_id=payment.payment_id, reason=reason, **details)
        try:
            self._payments.save(decision, event)
        except StorageError:
            # Left PENDING without a PayMob order: the reconciler expires it at expires_at.
            count("CheckoutFailureNotRecorded")
            logger.exception("checkout failure not recorded", payment_id=payment.payment_id)

    def _apply_raced_callbacks(self, payment: Payment) -> None:
        """A callback that reached us before the order was stored was kept as an orphan.

        The orphan record holds a summary, not everything PayMob signed, so it cannot be
        replayed as a callback; PayMob's inquiry gives the order's current transaction, and
        that goes through the same path as any verified transaction.
        """
        if payment.paymob_order_id is None:
            return
        try:
            orphans = self._payments.orphans_for_order(payment.paymob_order_id)
            if not orphans:
                return
            count("CheckoutRacedByCallback")
            logger.warning(
                "callbacks arrived before the checkout stored its order",
                payment_id=payment.payment_id,
                orphans=len(orphans),
            )
            self._inquiry.ask(payment, "Checkout")
        except StorageError:
            # The status backup and the reconciler ask PayMob about this payment later.
            logger.exception("raced callbacks not applied", payment_id=payment.payment_id)


# --- helpers ------------------------------------------------------------------------------


def validate_idempotency_key(value: str | None) -> str | None:
    """An Idempotency-Key header: absent, or 1-255 printable ASCII characters."""
    if value is None:
        return None
    if not 0 < len(value) <= IDEMPOTENCY_KEY_MAX or not all(" " < c <= "~" for c in value):
        raise InvalidIdempotencyKey(
            "Idempotency-Key must be 1 to 255 printable ASCII characters without spaces"
        )
    return value


def new_payment_id(now: datetime, randomness: bytes) -> str:
    """`pay_` and a ULID: 48 bits of milliseconds then 80 random bits, in Crockford base32.

    Ids sort by creation time, which keeps them readable in logs and admin listings.
    """
    if len(randomness) != 10:
        raise ValueError("a payment id needs 80 random bits")
    millis = int(now.timestamp() * 1000)
    return "pay_" + _base32(millis.to_bytes(6, "big") + randomness)


def keyed_payment_id(student_id: str, idempotency_key: str) -> str:
    """The payment id of a student's Idempotency-Key: the same key, the same payment."""
    digest = hashlib.sha256(
        b"coursepay-checkout-idempotency-v1\x00"
        + student_id.encode()
        + b"\x00"
        + idempotency_key.encode()
    ).digest()
    return "pay_" + _base32(digest[:16])


def _base32(raw: bytes) -> str:
    number = int.from_bytes(raw, "big")
    return "".join(_CROCKFORD[(number >> shift) & 31] for shift in range(125, -1, -5))


def _failure_reason(error: Exception) -> str:
    if isinstance(error, PaymobRejected):
        return f"the payment provider refused the checkout (HTTP {error.status})"
    if isinstance(error, PaymobError):
        return "the payment provider is unavailable"
    return "the checkout could not be opened"


def _given(value: str | None) -> str:
    text = (value or "").strip()
    return text or NOT_PROVIDED
