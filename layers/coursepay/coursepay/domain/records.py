"""Records kept beside payments: the event history (callbacks, audits), courses and enrolments."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class EventKind(StrEnum):
    CALLBACK = "CALLBACK"  # a verified transaction callback applied to (or recorded on) a payment
    REDIRECT = "REDIRECT"  # a verified browser redirect
    ORPHAN = "ORPHAN"  # a verified callback for an order we do not know (yet)
    TOKEN = "TOKEN"  # noqa: S105 - a saved-card token callback: stored, never acted on
    OTHER = "OTHER"  # DELIVERY_STATUS and unknown types: stored, never acted on
    AUDIT = "AUDIT"  # an admin override or a reconciliation decision
    REJECTED = "REJECTED"  # a verified callback refused (its transaction settles another payment)


class PaymentEvent(BaseModel):
    """One entry of a payment's history, keyed under the payment (or ORPHAN#<order>)."""

    model_config = ConfigDict(frozen=True)

    partition: str  # payment_id, "ORPHAN#<paymob order id>", or "UNLINKED#<type>"
    event_key: str  # deterministic for callbacks (dedupe); unique for audits
    kind: EventKind
    received_at: str
    source: str  # CALLBACK, REDIRECT, INQUIRY, RECONCILER, ADMIN
    paymob_transaction_id: str | None = None
    paymob_order_id: str | None = None
    fact_kind: str | None = None
    decision: str | None = None  # DecisionReason
    status_before: str | None = None
    status_after: str | None = None
    actor: str | None = None
    reason: str | None = None
    # A sanitized copy of what was received: the signed fields and PayMob's message, never
    # billing data or full card numbers.
    payload: dict[str, Any] = Field(default_factory=dict)


class Course(BaseModel):
    model_config = ConfigDict(frozen=True)

    course_id: str
    title: str
    price_cents: int = Field(gt=0)
    currency: str
    active: bool = True
    enrollment_count: int = 0


class EnrollmentStatus(StrEnum):
    ACTIVE = "ACTIVE"
    REVOKED = "REVOKED"


class Enrollment(BaseModel):
    model_config = ConfigDict(frozen=True)

    student_id: str
    course_id: str
    payment_id: str
    status: EnrollmentStatus
    enrolled_at: str
    revoked_at: str | None = None
