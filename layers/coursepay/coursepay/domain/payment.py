"""The Payment aggregate: its statuses, flags and the fields the state machine reads and writes."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    PAID = "PAID"
    FAILED = "FAILED"
    EXPIRED = "EXPIRED"
    UNDER_REVIEW = "UNDER_REVIEW"
    PARTIALLY_REFUNDED = "PARTIALLY_REFUNDED"
    REFUNDED = "REFUNDED"
    VOIDED = "VOIDED"


# Statuses in which the student holds the course: entering one enrols, leaving to a
# revoking status revokes.
ENTITLING_STATUSES = frozenset({PaymentStatus.PAID, PaymentStatus.PARTIALLY_REFUNDED})
REVOKING_STATUSES = frozenset({PaymentStatus.REFUNDED, PaymentStatus.VOIDED})
FINAL_STATUSES = frozenset(PaymentStatus) - {PaymentStatus.PENDING}


class PaymentFlag(StrEnum):
    """Marks for an admin's attention; a flag never changes what the student is owed by itself."""

    LATE_SUCCESS = "LATE_SUCCESS"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    INTEGRATION_MISMATCH = "INTEGRATION_MISMATCH"
    MERCHANT_REFERENCE_MISMATCH = "MERCHANT_REFERENCE_MISMATCH"
    DOUBLE_CHARGE = "DOUBLE_CHARGE"
    FOREIGN_REVERSAL = "FOREIGN_REVERSAL"
    REFUND_AMOUNT_UNKNOWN = "REFUND_AMOUNT_UNKNOWN"
    DUPLICATE_PAYMENT = "DUPLICATE_PAYMENT"
    ADMIN_OVERRIDE = "ADMIN_OVERRIDE"


# Flags that page an operator when they first appear on a payment.
ALERTING_FLAGS = frozenset(
    {
        PaymentFlag.LATE_SUCCESS,
        PaymentFlag.AMOUNT_MISMATCH,
        PaymentFlag.CURRENCY_MISMATCH,
        PaymentFlag.INTEGRATION_MISMATCH,
        PaymentFlag.MERCHANT_REFERENCE_MISMATCH,
        PaymentFlag.DOUBLE_CHARGE,
        PaymentFlag.FOREIGN_REVERSAL,
        PaymentFlag.DUPLICATE_PAYMENT,
        PaymentFlag.REFUND_AMOUNT_UNKNOWN,
    }
)


class CardSummary(BaseModel):
    """What may be kept of a card: PayMob's masked last four digits, type and sub-type."""

    model_config = ConfigDict(frozen=True)

    last4: str | None = None
    type: str | None = None
    sub_type: str | None = None


class Payment(BaseModel):
    """One attempt by one student to buy one course, with everything PayMob told us about it."""

    model_config = ConfigDict(frozen=True)

    payment_id: str
    student_id: str
    course_id: str
    amount_cents: int = Field(gt=0)
    currency: str
    status: PaymentStatus = PaymentStatus.PENDING
    created_at: str
    updated_at: str
    version: int = 0
    # Integration ids the checkout allowed; a success through any other is not ours to accept.
    integration_ids: tuple[int, ...] = ()
    paymob_order_id: str | None = None
    paymob_intention_id: str | None = None
    paymob_transaction_id: str | None = None
    expires_at: str | None = None
    completed_at: str | None = None
    failure_reason: str | None = None
    refunded_amount_cents: int = 0
    # Refund child transactions applied (id -> amount) and the largest cumulative refund a
    # parent callback reported: the refunded amount is the larger of the two, so child and
    # parent callbacks converge in any order and any number of repeats.
    refund_transactions: dict[str, int] = Field(default_factory=dict)
    refund_reported_cents: int = 0
    flags: frozenset[PaymentFlag] = frozenset()
    card: CardSummary | None = None
    enrolled_at: str | None = None
    last_checked_at: str | None = None
    checkout_url: str | None = None

    @property
    def entitles(self) -> bool:
        return self.status in ENTITLING_STATUSES
