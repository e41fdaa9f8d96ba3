"""Asking PayMob about a payment: one rate-limited check, applied like any verified callback.

The status backup, the result page, the reconciler and checkout (for a callback that raced
it) all ask the same way: claim the check on the payment with a conditional write, ask the
inquiry API by our merchant order id, and hand the answer to CallbackService.apply_transaction.
"""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from coursepay.domain.facts import FactSource
from coursepay.domain.payment import Payment
from coursepay.domain.signature import UnsignableValueError, transaction_message_from_obj
from coursepay.domain.state_machine import Decision, DecisionReason
from coursepay.observability import count, logger
from coursepay.paymob.client import PaymobRejected, PaymobUnavailable
from coursepay.paymob.transactions import InvalidTransaction, Transaction, parse_transaction
from coursepay.services.callbacks import CallbackOutcome
from coursepay.services.ports import PaymentWriter
from coursepay.storage.errors import StalePayment


class InquiryGateway(Protocol):
    def inquire_by_merchant_order(self, merchant_order_id: str) -> dict[str, Any] | None: ...


class TransactionApplier(Protocol):
    """CallbackService.apply_transaction: the one way a verified transaction changes a payment."""

    def apply_transaction(
        self, txn: Transaction, signed_message: str, source: FactSource
    ) -> CallbackOutcome: ...


class InquiryResult(StrEnum):
    APPLIED = "applied"  # PayMob named a transaction; it went through the state machine
    NO_TRANSACTION = "no_transaction"  # PayMob knows no transaction for this payment
    UNLINKED = "unlinked"  # PayMob's transaction belongs to an order this payment does not hold
    INVALID_ANSWER = "invalid_answer"  # PayMob answered with something that is not a transaction
    UNAVAILABLE = "unavailable"  # PayMob unreachable, failing or throttling: nothing changed
    REFUSED = "refused"  # PayMob refused our request (credentials?): nothing changed


@dataclass(frozen=True, slots=True)
class InquiryAnswer:
    result: InquiryResult
    outcome: CallbackOutcome | None = None
    transaction_id: str | None = None

    @property
    def reached_paymob(self) -> bool:
        return self.result not in (InquiryResult.UNAVAILABLE, InquiryResult.REFUSED)


class PaymentInquiry:
    def __init__(self, gateway: InquiryGateway, callbacks: TransactionApplier) -> None:
        self._gateway = gateway
        self._callbacks = callbacks

    def ask(self, payment: Payment, source: str) -> InquiryAnswer:
        """Ask PayMob for the payment's latest transaction and apply it.

        Found by merchant_order_id (our payment id, sent as special_reference), then accepted
        only if it belongs to the PayMob order the payment holds. Inquiry answers carry no
        HMAC: they are trusted because we fetched them with our own key. `source` names the
        asker in logs and metrics. Storage errors while applying propagate.
        """
        try:
            obj = self._gateway.inquire_by_merchant_order(payment.payment_id)
        except PaymobUnavailable:
            count(f"InquiryUnavailable.{source}")
            return InquiryAnswer(InquiryResult.UNAVAILABLE)
        except PaymobRejected as refused:
            count(f"InquiryRefused.{source}")
            logger.error(
                "paymob refused an inquiry", payment_id=payment.payment_id, status=refused.status
            )
            return InquiryAnswer(InquiryResult.REFUSED)
        count(f"Inquiry.{source}")
        if obj is None:
            return InquiryAnswer(InquiryResult.NO_TRANSACTION)
        try:
            txn = parse_transaction(obj)
            message = transaction_message_from_obj(obj)
        except (InvalidTransaction, UnsignableValueError):
            count("InquiryInvalidAnswer")
            logger.warning("inquiry answer is not a transaction", payment_id=payment.payment_id)
            return InquiryAnswer(InquiryResult.INVALID_ANSWER)
        if payment.paymob_order_id is None or txn.paymob_order_id != payment.paymob_order_id:
            # Our reference on an order we never stored (checkout lost PayMob's answer), or a
            # mix-up at PayMob: an admin links it, nothing here guesses.
            count("InquiryUnlinkedOrder")
            logger.error(
                "inquiry names an order the payment does not hold",
                payment_id=payment.payment_id,
                payment_order_id=payment.paymob_order_id,
                inquiry_order_id=txn.paymob_order_id,
                transaction_id=txn.id,
            )
            return InquiryAnswer(InquiryResult.UNLINKED, transaction_id=str(txn.id))
        outcome = self._callbacks.apply_transaction(txn, message, FactSource.INQUIRY)
        logger.info(
            "inquiry applied",
            payment_id=payment.payment_id,
            transaction_id=txn.id,
            result=str(outcome.result),
            detail=outcome.message,
        )
        return InquiryAnswer(InquiryResult.APPLIED, outcome, str(txn.id))


# --- bookkeeping writes -------------------------------------------------------------------


def bookkeeping(payment: Payment, **fields: Any) -> Decision:
    """A write of what we did (PayMob's references, when we last asked), never of what the
    payment is: status, money and flags stay the state machine's. It rides on save() for its
    version condition; `updated_at` stays the time of the last real change, which is what
    listings by status sort and filter on. The reason is not stored.

    `paymob_order_id` is written once: it is the key signed callbacks and redirects find the
    payment by, so rewriting it would hand the payment to another order's signed callbacks.
    Setting it on a payment that holds one (to anything but the same value) is refused.
    """
    forbidden = set(fields) - _BOOKKEEPING_FIELDS
    if forbidden:
        raise ValueError(f"not bookkeeping: {sorted(forbidden)}")
    if (
        "paymob_order_id" in fields
        and payment.paymob_order_id is not None
        and fields["paymob_order_id"] != payment.paymob_order_id
    ):
        raise ValueError(
            f"payment {payment.payment_id} already holds PayMob order {payment.paymob_order_id}:"
            " it is never rewritten"
        )
    after = payment.model_copy(update={**fields, "version": payment.version + 1})
    return Decision(before=payment, after=after, reason=DecisionReason.SAME_STATUS)


_BOOKKEEPING_FIELDS = frozenset(
    {"paymob_intention_id", "paymob_order_id", "checkout_url", "last_checked_at"}
)


def claim_check(payments: PaymentWriter, payment: Payment, now: str) -> Payment | None:
    """Stamp `last_checked_at`, conditioned on the version read: of concurrent askers, one wins.

    Returns the payment as claimed, or None when it changed meanwhile (another asker, or a
    callback: either way, asking PayMob now would be redundant).
    """
    decision = bookkeeping(payment, last_checked_at=now)
    try:
        payments.save(decision, None)
    except StalePayment:
        count("InquiryClaimLost")
        return None
    return decision.after


def release_check(payments: PaymentWriter, claimed: Payment, previous: str | None) -> None:
    """Give a check back after PayMob could not answer, so the next run asks again."""
    # StalePayment: something newer happened to the payment; its own check time stands.
    with suppress(StalePayment):
        payments.save(bookkeeping(claimed, last_checked_at=previous), None)


# --- time, as stored: ISO 8601 UTC with microseconds (services.clock's format) ----------------


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def parse_time(value: str) -> datetime:
    """A stored timestamp; one without an offset (PayMob's) is read as UTC."""
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)
