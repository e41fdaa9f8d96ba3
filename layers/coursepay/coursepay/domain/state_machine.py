"""The payment state machine: the one place that decides how a fact changes a payment.

Every path that changes a payment (callback, signed redirect, inquiry, reconciler, admin)
calls `decide`, then persists `decision.after` with a condition on `decision.before.version`.
`decide` is pure: no clock, no I/O; the caller passes `now`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from coursepay.domain.facts import FactKind, TransactionFact
from coursepay.domain.payment import (
    ALERTING_FLAGS,
    Payment,
    PaymentFlag,
    PaymentStatus,
)

S = PaymentStatus


class DecisionReason(StrEnum):
    # Changes
    PAID = "PAID"
    LATE_SUCCESS = "LATE_SUCCESS"
    MISMATCH_UNDER_REVIEW = "MISMATCH_UNDER_REVIEW"
    DECLINED = "DECLINED"
    REFUND_APPLIED = "REFUND_APPLIED"
    VOID_APPLIED = "VOID_APPLIED"
    EXPIRED = "EXPIRED"
    OVERRIDDEN = "OVERRIDDEN"
    TRANSACTION_LEARNED = "TRANSACTION_LEARNED"
    DOUBLE_CHARGE = "DOUBLE_CHARGE"
    FOREIGN_REVERSAL = "FOREIGN_REVERSAL"
    DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"
    # Recorded no-ops
    DUPLICATE = "DUPLICATE"
    DECLINE_AFTER_PAYMENT = "DECLINE_AFTER_PAYMENT"
    ALREADY_FAILED = "ALREADY_FAILED"
    DECLINE_AFTER_EXPIRY = "DECLINE_AFTER_EXPIRY"
    STILL_PENDING = "STILL_PENDING"
    REVERSAL_FAILED = "REVERSAL_FAILED"
    AWAITING_REVIEW = "AWAITING_REVIEW"
    ALREADY_VOIDED = "ALREADY_VOIDED"
    NOT_PENDING = "NOT_PENDING"
    SAME_STATUS = "SAME_STATUS"


class InvalidFact(ValueError):
    """A fact the state machine cannot act on (an override without a target or a reason)."""


@dataclass(frozen=True, slots=True)
class Decision:
    before: Payment
    after: Payment
    reason: DecisionReason
    flags_added: frozenset[PaymentFlag] = frozenset()

    @property
    def changed(self) -> bool:
        return self.after.version != self.before.version

    @property
    def status_changed(self) -> bool:
        return self.after.status != self.before.status

    @property
    def alerts(self) -> frozenset[PaymentFlag]:
        """Newly raised flags an operator should be paged about."""
        return self.flags_added & ALERTING_FLAGS


def decide(payment: Payment, fact: TransactionFact, now: str) -> Decision:
    """Return what `fact` does to `payment`: a transition, a flag, or a recorded no-op."""
    decision = _RULES[fact.kind](payment, fact, now)
    return _with_reference_check(decision, fact, now)


# --- rules, one per kind of fact ------------------------------------------------------

_SETTLED = frozenset({S.PAID, S.PARTIALLY_REFUNDED, S.REFUNDED, S.VOIDED, S.UNDER_REVIEW})
_NOT_YET_PAID = frozenset({S.PENDING, S.FAILED, S.EXPIRED})


def _on_success(p: Payment, f: TransactionFact, now: str) -> Decision:
    txn = f.paymob_transaction_id
    if p.status in _SETTLED:
        if txn is None or txn == p.paymob_transaction_id:
            return _noop(p, DecisionReason.DUPLICATE)
        if p.paymob_transaction_id is None:
            # A reversal reached us before the success it reverses: learn its id.
            return _change(p, now, DecisionReason.TRANSACTION_LEARNED, paymob_transaction_id=txn)
        # A second successful transaction on one order: money to give back.
        return _change(p, now, DecisionReason.DOUBLE_CHARGE, flags={PaymentFlag.DOUBLE_CHARGE})
    late = {PaymentFlag.LATE_SUCCESS} if p.status in (S.FAILED, S.EXPIRED) else set()
    settled_fields: dict[str, Any] = {
        "paymob_transaction_id": txn,
        "completed_at": f.occurred_at or now,
        "card": f.card or p.card,
        "failure_reason": None,
    }
    mismatches = _mismatches(p, f)
    if mismatches:
        return _change(
            p,
            now,
            DecisionReason.MISMATCH_UNDER_REVIEW,
            flags=mismatches | late,
            status=S.UNDER_REVIEW,
            **settled_fields,
        )
    reason = DecisionReason.LATE_SUCCESS if late else DecisionReason.PAID
    status = S.PARTIALLY_REFUNDED if p.refunded_amount_cents > 0 else S.PAID
    return _change(p, now, reason, flags=late, status=status, **settled_fields)


def _on_declined(p: Payment, f: TransactionFact, now: str) -> Decision:
    if p.status is S.PENDING:
        return _change(
            p,
            now,
            DecisionReason.DECLINED,
            status=S.FAILED,
            failure_reason=f.failure_reason or "declined",
            completed_at=f.occurred_at or now,
        )
    if p.status is S.FAILED:
        return _noop(p, DecisionReason.ALREADY_FAILED)
    if p.status is S.EXPIRED:
        return _noop(p, DecisionReason.DECLINE_AFTER_EXPIRY)
    if p.status is S.UNDER_REVIEW:
        return _noop(p, DecisionReason.AWAITING_REVIEW)
    return _noop(p, DecisionReason.DECLINE_AFTER_PAYMENT)


def _on_still_pending(p: Payment, f: TransactionFact, now: str) -> Decision:
    return _noop(p, DecisionReason.STILL_PENDING)


def _on_reversal_failed(p: Payment, f: TransactionFact, now: str) -> Decision:
    return _noop(p, DecisionReason.REVERSAL_FAILED)


def _on_refund_child(p: Payment, f: TransactionFact, now: str) -> Decision:
    child = f.paymob_transaction_id
    if child is None or child in p.refund_transactions:
        return _noop(p, DecisionReason.DUPLICATE)
    if _is_foreign(p, f.parent_transaction_id):
        return _change(
            p, now, DecisionReason.FOREIGN_REVERSAL, flags={PaymentFlag.FOREIGN_REVERSAL}
        )
    refunds = {**p.refund_transactions, child: f.amount_cents or 0}
    return _apply_refund(p, f, now, refunds, p.refund_reported_cents, f.parent_transaction_id)


def _on_refunded_parent(p: Payment, f: TransactionFact, now: str) -> Decision:
    if p.status is S.VOIDED:
        return _noop(p, DecisionReason.ALREADY_VOIDED)
    if _is_foreign(p, f.paymob_transaction_id):
        return _change(
            p, now, DecisionReason.FOREIGN_REVERSAL, flags={PaymentFlag.FOREIGN_REVERSAL}
        )
    reported = max(p.refund_reported_cents, f.refunded_amount_cents or 0)
    if p.status in _NOT_YET_PAID:
        # The first we hear of this payment is that it was paid and then refunded: the
        # parent carries the original (signed) amount, so it is checked like a success.
        mismatches = _mismatches(p, f)
        if mismatches:
            return _change(
                p,
                now,
                DecisionReason.MISMATCH_UNDER_REVIEW,
                flags=mismatches,
                status=S.UNDER_REVIEW,
                paymob_transaction_id=f.paymob_transaction_id,
                refund_reported_cents=reported,
                refunded_amount_cents=max(sum(p.refund_transactions.values()), reported),
            )
    return _apply_refund(p, f, now, p.refund_transactions, reported, f.paymob_transaction_id)


def _apply_refund(
    p: Payment,
    f: TransactionFact,
    now: str,
    refunds: dict[str, int],
    reported: int,
    parent_id: str | None,
) -> Decision:
    refunded = max(sum(refunds.values()), reported)
    flags: set[PaymentFlag] = set()
    amount_unknown = (
        f.kind is FactKind.REFUNDED and f.refunded_amount_cents is None and refunded == 0
    )
    if amount_unknown:
        flags.add(PaymentFlag.REFUND_AMOUNT_UNKNOWN)
    status: PaymentStatus
    if p.status in (S.UNDER_REVIEW, S.VOIDED):
        status = p.status  # an admin settles a payment under review; a void stays a void
    elif amount_unknown and p.status in _NOT_YET_PAID:
        # Paid and refunded by an amount nobody told us: whether the student keeps the
        # course is an admin's call, not a guess.
        status = S.UNDER_REVIEW
    elif refunded >= p.amount_cents:
        status = S.REFUNDED
    elif p.status in _NOT_YET_PAID and f.kind is FactKind.REFUND:
        # A partial refund's child carries only the refunded amount: the course is granted
        # when the success (or the parent), whose signed amount is checked, arrives.
        status = p.status
    else:
        status = S.PARTIALLY_REFUNDED
    settled_now: dict[str, Any] = {}
    if p.status in _NOT_YET_PAID and status not in _NOT_YET_PAID:
        # The refund is the first proof the payment completed.
        settled_now = {"completed_at": f.occurred_at or now, "failure_reason": None}
        if p.status in (S.FAILED, S.EXPIRED):
            flags.add(PaymentFlag.LATE_SUCCESS)
    return _change(
        p,
        now,
        DecisionReason.REFUND_APPLIED,
        flags=flags,
        status=status,
        refund_transactions=refunds,
        refund_reported_cents=reported,
        refunded_amount_cents=refunded,
        paymob_transaction_id=p.paymob_transaction_id or parent_id,
        **settled_now,
    )


def _on_void(p: Payment, f: TransactionFact, now: str) -> Decision:
    parent_id = f.parent_transaction_id if f.kind is FactKind.VOID else f.paymob_transaction_id
    if p.status is S.VOIDED:
        return _noop(p, DecisionReason.ALREADY_VOIDED)
    if p.status is S.UNDER_REVIEW:
        return _noop(p, DecisionReason.AWAITING_REVIEW)
    if _is_foreign(p, parent_id):
        return _change(
            p, now, DecisionReason.FOREIGN_REVERSAL, flags={PaymentFlag.FOREIGN_REVERSAL}
        )
    # A void dominates a refund: older payloads may have shown its child as a refund.
    late = {PaymentFlag.LATE_SUCCESS} if p.status in (S.FAILED, S.EXPIRED) else set()
    return _change(
        p,
        now,
        DecisionReason.VOID_APPLIED,
        flags=late,
        status=S.VOIDED,
        paymob_transaction_id=p.paymob_transaction_id or parent_id,
    )


def _on_expired(p: Payment, f: TransactionFact, now: str) -> Decision:
    if p.status is not S.PENDING:
        return _noop(p, DecisionReason.NOT_PENDING)
    return _change(
        p,
        now,
        DecisionReason.EXPIRED,
        status=S.EXPIRED,
        failure_reason=f.failure_reason or "no transaction before the checkout expired",
    )


def _on_override(p: Payment, f: TransactionFact, now: str) -> Decision:
    if f.override_status is None:
        raise InvalidFact("an override needs a target status")
    if not (f.reason or "").strip():
        raise InvalidFact("an override needs a reason")
    if not (f.actor or "").strip():
        raise InvalidFact("an override needs the admin who made it")
    if f.override_status is p.status:
        return _noop(p, DecisionReason.SAME_STATUS)
    updates: dict[str, Any] = {"status": f.override_status}
    if f.override_status is S.PAID and p.completed_at is None:
        updates["completed_at"] = now
    return _change(p, now, DecisionReason.OVERRIDDEN, flags={PaymentFlag.ADMIN_OVERRIDE}, **updates)


def _on_duplicate_payment(p: Payment, f: TransactionFact, now: str) -> Decision:
    # The enrolment is not doubled; the money goes back by an admin's refund.
    if p.status not in (S.PAID, S.PARTIALLY_REFUNDED):
        return _noop(p, DecisionReason.SAME_STATUS)
    return _change(p, now, DecisionReason.DUPLICATE_PAYMENT, flags={PaymentFlag.DUPLICATE_PAYMENT})


_RULES: dict[FactKind, Callable[[Payment, TransactionFact, str], Decision]] = {
    FactKind.SUCCESS: _on_success,
    FactKind.DECLINED: _on_declined,
    FactKind.STILL_PENDING: _on_still_pending,
    FactKind.REVERSAL_FAILED: _on_reversal_failed,
    FactKind.REFUND: _on_refund_child,
    FactKind.REFUNDED: _on_refunded_parent,
    FactKind.VOID: _on_void,
    FactKind.VOIDED: _on_void,
    FactKind.EXPIRED: _on_expired,
    FactKind.OVERRIDE: _on_override,
    FactKind.DUPLICATE_PAYMENT: _on_duplicate_payment,
}


# --- helpers ------------------------------------------------------------------------


def _mismatches(p: Payment, f: TransactionFact) -> set[PaymentFlag]:
    """What disagrees between a signed transaction and the payment we created at checkout."""
    found: set[PaymentFlag] = set()
    if f.amount_cents != p.amount_cents:
        found.add(PaymentFlag.AMOUNT_MISMATCH)
    if f.currency != p.currency:
        found.add(PaymentFlag.CURRENCY_MISMATCH)
    if p.integration_ids and f.integration_id not in p.integration_ids:
        found.add(PaymentFlag.INTEGRATION_MISMATCH)
    return found


def _is_foreign(p: Payment, parent_id: str | None) -> bool:
    """A reversal of another transaction of the same order (say, of a double charge)."""
    return (
        parent_id is not None
        and p.paymob_transaction_id is not None
        and parent_id != p.paymob_transaction_id
    )


def _with_reference_check(decision: Decision, f: TransactionFact, now: str) -> Decision:
    """Flag a payment whose callback carried someone else's (unsigned) merchant reference."""
    p = decision.after
    if (
        f.merchant_order_id is None
        or f.merchant_order_id == p.payment_id
        or PaymentFlag.MERCHANT_REFERENCE_MISMATCH in p.flags
        or not decision.changed
    ):
        return decision
    flag = PaymentFlag.MERCHANT_REFERENCE_MISMATCH
    return Decision(
        before=decision.before,
        after=p.model_copy(update={"flags": p.flags | {flag}}),
        reason=decision.reason,
        flags_added=decision.flags_added | {flag},
    )


def _noop(p: Payment, reason: DecisionReason) -> Decision:
    return Decision(before=p, after=p, reason=reason)


def _change(
    p: Payment,
    now: str,
    reason: DecisionReason,
    *,
    flags: set[PaymentFlag] | frozenset[PaymentFlag] = frozenset(),
    **updates: Any,
) -> Decision:
    """A new version of the payment, or a no-op when nothing would actually change."""
    new_flags = frozenset(flags) - p.flags
    updates = {k: v for k, v in updates.items() if getattr(p, k) != v}
    if not updates and not new_flags:
        return _noop(p, DecisionReason.DUPLICATE)
    updates.update(flags=p.flags | new_flags, updated_at=now, version=p.version + 1)
    after = p.model_copy(update=updates)
    return Decision(before=p, after=after, reason=reason, flags_added=new_flags)
