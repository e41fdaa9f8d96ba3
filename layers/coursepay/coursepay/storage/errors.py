"""Typed storage errors that services catch, free of any AWS SDK type."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from coursepay.domain.payment import Payment
    from coursepay.domain.records import PaymentEvent


class StorageError(Exception):
    """A storage request failed for a reason retrying will not fix."""


class TransientStorageError(StorageError):
    """Throttling, a transaction conflict, a timeout or a service fault: retry later."""


class InvalidCursor(StorageError, ValueError):
    """A pagination cursor that this listing did not issue (or issued for other filters)."""


class PaymentAlreadyExists(StorageError):
    def __init__(self, payment_id: str) -> None:
        super().__init__(f"payment {payment_id} already exists")
        self.payment_id = payment_id


class PaymentNotFound(StorageError):
    def __init__(self, payment_id: str) -> None:
        super().__init__(f"payment {payment_id} does not exist")
        self.payment_id = payment_id


class AmbiguousPaymobOrder(StorageError):
    """Two payments carry one PayMob order id: refuse to guess which one a callback settles."""

    def __init__(self, paymob_order_id: str) -> None:
        super().__init__(f"more than one payment has PayMob order {paymob_order_id}")
        self.paymob_order_id = paymob_order_id


class DuplicateEvent(StorageError):
    """The event was already recorded: the callback (or audit) has been handled before."""

    def __init__(self, partition: str, event_key: str, existing: PaymentEvent | None) -> None:
        super().__init__(f"event {event_key} of {partition} is already recorded")
        self.partition = partition
        self.event_key = event_key
        self.existing = existing


class StalePayment(StorageError):
    """The payment moved past the version the decision was made from: re-read and decide again.

    `current` is the stored payment at the time of the failure (None if it does not exist),
    so the caller can decide again without another read.
    """

    def __init__(self, payment_id: str, expected_version: int, current: Payment | None) -> None:
        found = "missing" if current is None else f"at version {current.version}"
        super().__init__(f"payment {payment_id} expected at version {expected_version}, {found}")
        self.payment_id = payment_id
        self.expected_version = expected_version
        self.current = current


class TransactionClaimedElsewhere(StorageError):
    """The PayMob transaction already settles another payment; it can settle only one."""

    def __init__(self, transaction_id: str, payment_id: str, claimed_by: str | None) -> None:
        super().__init__(
            f"PayMob transaction {transaction_id} settles payment {claimed_by}, not {payment_id}"
        )
        self.transaction_id = transaction_id
        self.payment_id = payment_id
        self.claimed_by = claimed_by


class CourseNotFound(StorageError):
    def __init__(self, course_id: str) -> None:
        super().__init__(f"course {course_id} does not exist")
        self.course_id = course_id


class CourseInactive(StorageError):
    def __init__(self, course_id: str) -> None:
        super().__init__(f"course {course_id} is not open for enrolment")
        self.course_id = course_id
