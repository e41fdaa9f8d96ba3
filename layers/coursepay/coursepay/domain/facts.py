"""Normalized facts about a payment: from a callback, a signed redirect, an inquiry, an admin."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from coursepay.domain.payment import CardSummary, PaymentStatus


class FactSource(StrEnum):
    CALLBACK = "CALLBACK"  # PayMob's signed server-to-server callback
    REDIRECT = "REDIRECT"  # the browser's signed redirect to the result page
    INQUIRY = "INQUIRY"  # an answer PayMob gave to our own authenticated request
    RECONCILER = "RECONCILER"  # our scheduled check of stuck payments
    ADMIN = "ADMIN"
    ENROLMENT = "ENROLMENT"  # the enrolment step found the student already owns the course
    CHECKOUT = "CHECKOUT"  # PayMob refused or failed to open the checkout: no transaction


class FactKind(StrEnum):
    SUCCESS = "SUCCESS"  # a paid transaction (PayMob's paid predicate holds)
    DECLINED = "DECLINED"  # a finished transaction that did not pay
    STILL_PENDING = "STILL_PENDING"  # a transaction PayMob has not finished
    REFUND = "REFUND"  # a successful refund child transaction
    VOID = "VOID"  # a successful void child transaction
    REVERSAL_FAILED = "REVERSAL_FAILED"  # a refund or void child that did not succeed
    REFUNDED = "REFUNDED"  # the parent transaction, now refunded (cumulative amount)
    VOIDED = "VOIDED"  # the parent transaction, now voided
    EXPIRED = "EXPIRED"  # no transaction arrived before the intention expired
    OVERRIDE = "OVERRIDE"  # an admin sets the status, with a reason
    DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"  # paid for a course the student already owns


@dataclass(frozen=True, slots=True)
class TransactionFlags:
    """PayMob's transaction booleans. The first six are signed; is_void / is_refund are not."""

    success: bool
    pending: bool
    error_occured: bool
    is_voided: bool
    is_refunded: bool
    has_parent_transaction: bool
    is_void: bool = False
    is_refund: bool = False


def classify(flags: TransactionFlags) -> FactKind:
    """What a PayMob transaction means for its payment.

    A child is recognised by the signed `has_parent_transaction`; the unsigned `is_void`
    only tells a void from a refund, and older payloads without it count as refunds. A
    child's `success` is the success of the reversal, never a payment.
    """
    if flags.has_parent_transaction:
        if not flags.success or flags.pending or flags.error_occured:
            return FactKind.REVERSAL_FAILED
        return FactKind.VOID if flags.is_void else FactKind.REFUND
    if flags.is_voided:
        return FactKind.VOIDED
    if flags.is_refunded:
        return FactKind.REFUNDED
    if flags.pending:
        return FactKind.STILL_PENDING
    if flags.success and not flags.error_occured and not flags.is_void and not flags.is_refund:
        return FactKind.SUCCESS
    return FactKind.DECLINED


@dataclass(frozen=True, slots=True)
class TransactionFact:
    """One thing we learned about a payment, in the state machine's terms."""

    source: FactSource
    kind: FactKind
    paymob_transaction_id: str | None = None
    paymob_order_id: str | None = None
    amount_cents: int | None = None
    currency: str | None = None
    integration_id: int | None = None
    occurred_at: str | None = None
    failure_reason: str | None = None
    card: CardSummary | None = None
    # Unsigned details: they ride on a verified callback and are cross-checked, never trusted.
    merchant_order_id: str | None = None
    parent_transaction_id: str | None = None
    refunded_amount_cents: int | None = None
    # Admin override only.
    override_status: PaymentStatus | None = None
    reason: str | None = None
    actor: str | None = None
