"""A payment's status for its owner and for the browser back from PayMob, with PayMob as backup.

Both answers show what is stored. When a payment has been PENDING for longer than a
callback normally takes, PayMob's inquiry is asked first (at most once per interval per
payment, whoever is polling), and its answer goes through the state machine like a callback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from coursepay.domain.facts import FactSource
from coursepay.domain.payment import Payment, PaymentStatus
from coursepay.domain.records import Course, EnrollmentStatus
from coursepay.domain.signature import (
    SignatureCheck,
    check_redirect_query,
    transaction_message_from_query,
)
from coursepay.errors import NotFound
from coursepay.observability import count, logger, security_event
from coursepay.paymob.transactions import InvalidTransaction, parse_redirect
from coursepay.services.checkout import EnrollmentLookup
from coursepay.services.inquiry import (
    InquiryResult,
    PaymentInquiry,
    TransactionApplier,
    claim_check,
    iso,
    parse_time,
)
from coursepay.services.ports import PaymentStore, SecretsSource
from coursepay.storage.errors import StorageError


class PaymentNotVisible(NotFound):
    """No such payment, or not the caller's: the two look the same from outside."""

    code = "payment_not_found"


class CourseLookup(Protocol):
    def get(self, course_id: str, consistent: bool = False) -> Course | None: ...


@dataclass(frozen=True, slots=True)
class Viewer:
    subject: str
    is_admin: bool


@dataclass(frozen=True, slots=True)
class PaymentStatusView:
    payment: Payment
    enrolled: bool

    def to_json(self) -> dict[str, Any]:
        p = self.payment
        return {
            "payment_id": p.payment_id,
            "course_id": p.course_id,
            "status": str(p.status),
            "amount_cents": p.amount_cents,
            "currency": p.currency,
            "updated_at": p.updated_at,
            "completed_at": p.completed_at,
            "failure_reason": p.failure_reason,
            "enrolled": self.enrolled,
        }


@dataclass(frozen=True, slots=True)
class RedirectResult:
    """What the result page shows: a payment (stored status) and its course, or nothing."""

    payment: Payment | None
    course: Course | None = None


@dataclass(frozen=True, slots=True)
class StatusSettings:
    # PENDING longer than this: a callback is overdue, so PayMob is asked.
    inquiry_after_seconds: int = 120
    # At most one inquiry per payment per this many seconds, however many pollers.
    inquiry_interval_seconds: int = 30


class PaymentStatusService:
    def __init__(
        self,
        payments: PaymentStore,
        enrollments: EnrollmentLookup,
        courses: CourseLookup,
        inquiry: PaymentInquiry,
        callbacks: TransactionApplier,
        secrets: SecretsSource,
        settings: StatusSettings,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._payments = payments
        self._enrollments = enrollments
        self._courses = courses
        self._inquiry = inquiry
        self._callbacks = callbacks
        self._secrets = secrets
        self._settings = settings
        self._clock = clock

    # --- GET /api/payments/{paymentId}/status -------------------------------------------

    def status_for(self, viewer: Viewer, payment_id: str) -> PaymentStatusView:
        payment = self._payments.get(payment_id, consistent=True)
        if payment is None or (payment.student_id != viewer.subject and not viewer.is_admin):
            raise PaymentNotVisible("no such payment")
        payment = self._refresh_if_stuck(payment)
        return PaymentStatusView(payment, enrolled=self._enrolled(payment))

    def _enrolled(self, payment: Payment) -> bool:
        if not payment.entitles:
            return False
        enrollment = self._enrollments.get(payment.student_id, payment.course_id)
        return enrollment is not None and enrollment.status is EnrollmentStatus.ACTIVE

    # --- GET /courses/{courseId}/payment/result -----------------------------------------

    def result_for_redirect(self, course_id: str, raw_query: str) -> RedirectResult:
        """Verify PayMob's signed redirect, apply it, and return the stored payment.

        Nothing unsigned is trusted, not even to pick the payment: without a valid
        signature the page is the neutral one. With one, the payment is the one holding the
        signed order id (never the unsigned merchant_order_id), and it must be for the
        course in the path.
        """
        checked, params = check_redirect_query(raw_query, self._secrets())
        if not checked.is_valid:
            security_event("unsigned_redirect", check=str(checked), course_id=course_id)
            return RedirectResult(None)
        if checked is SignatureCheck.VALID_PREVIOUS_SECRET:
            count("RedirectPreviousSecretUsed")
        try:
            txn = parse_redirect(params)
        except InvalidTransaction as invalid:
            count("RedirectInvalid")
            logger.warning("signed redirect is not a transaction", field=invalid.field)
            return RedirectResult(None)
        try:
            payment = self._payments.find_by_paymob_order(txn.paymob_order_id)
        except StorageError:
            # Two payments on one order included: never guess which one a browser sees.
            count("RedirectLookupFailed")
            logger.exception("signed redirect lookup failed", paymob_order_id=txn.paymob_order_id)
            return RedirectResult(None)
        if payment is None or payment.course_id != course_id:
            count("RedirectPaymentNotFound")
            logger.warning(
                "signed redirect names no payment of this course",
                paymob_order_id=txn.paymob_order_id,
                course_id=course_id,
            )
            return RedirectResult(None)
        try:
            self._callbacks.apply_transaction(
                txn, transaction_message_from_query(params), FactSource.REDIRECT
            )
        except StorageError:
            # The webhook and the reconciler carry the same transaction; show what is stored.
            count("RedirectNotApplied")
            logger.exception("signed redirect not applied", payment_id=payment.payment_id)
        stored = self._payments.get(payment.payment_id, consistent=True) or payment
        stored = self._refresh_if_stuck(stored)
        return RedirectResult(stored, self._courses.get(stored.course_id))

    # --- the backup: ask PayMob about a payment stuck in PENDING ---------------------------

    def _refresh_if_stuck(self, payment: Payment) -> Payment:
        if payment.status is not PaymentStatus.PENDING:
            return payment
        now = self._clock()
        settings = self._settings
        if now - parse_time(payment.created_at) < timedelta(seconds=settings.inquiry_after_seconds):
            return payment
        if payment.last_checked_at is not None and now - parse_time(
            payment.last_checked_at
        ) < timedelta(seconds=settings.inquiry_interval_seconds):
            return payment
        try:
            claimed = claim_check(self._payments, payment, iso(now))
            if claimed is None:
                # Another poller (or a callback) got there first: its result is stored.
                return self._payments.get(payment.payment_id, consistent=True) or payment
            answer = self._inquiry.ask(claimed, "Status")
            if answer.result is not InquiryResult.APPLIED:
                return claimed
            return self._payments.get(payment.payment_id, consistent=True) or claimed
        except StorageError:
            # The stored status is still an answer; the reconciler asks again later.
            count("StatusBackupFailed")
            logger.exception("status backup failed", payment_id=payment.payment_id)
            return payment
