"""Builders of payments, facts and PayMob transaction flags, with realistic defaults.

Every builder takes keyword overrides for any field, so a test states only what matters to
it. The defaults describe one consistent story: a 1500.00 EGP course bought through card
integration 4097558, PayMob order 217503754, paid by transaction 192036465 (the ids of
PayMob's sample callback in tests/events/).
"""

from __future__ import annotations

from typing import Any

from coursepay.domain.facts import (
    FactKind,
    FactSource,
    TransactionFact,
    TransactionFlags,
)
from coursepay.domain.payment import CardSummary, Payment, PaymentFlag, PaymentStatus

CREATED_AT = "2024-06-13T11:30:00+00:00"
PAID_AT = "2024-06-13T11:33:44.592345"
NOW = "2024-06-13T12:00:00+00:00"

PAYMENT_ID = "pay_01J0AXR8Y0QK4Z6V1M2N3P4Q5R"
STUDENT_ID = "student-7f3c"
COURSE_ID = "course-python-101"
AMOUNT_CENTS = 150_000
CURRENCY = "EGP"
INTEGRATION_ID = 4_097_558
PAYMOB_ORDER_ID = "217503754"

# The transaction that pays the default payment, and other transactions of the same order.
TRANSACTION_ID = "192036465"
OTHER_TRANSACTION_ID = "192036470"  # a second charge on the same order
DECLINED_TRANSACTION_ID = "192036401"
REFUND_TRANSACTION_ID = "192037001"  # a refund child of TRANSACTION_ID
VOID_TRANSACTION_ID = "192037101"  # a void child of TRANSACTION_ID

CARD = CardSummary(last4="2346", type="card", sub_type="MasterCard")

ADMIN = "admin-1"
OVERRIDE_REASON = "refunded by bank transfer, ticket SUP-1234"


def a_payment(**overrides: Any) -> Payment:
    """A fresh PENDING payment of the default course; any field can be overridden."""
    fields: dict[str, Any] = {
        "payment_id": PAYMENT_ID,
        "student_id": STUDENT_ID,
        "course_id": COURSE_ID,
        "amount_cents": AMOUNT_CENTS,
        "currency": CURRENCY,
        "status": PaymentStatus.PENDING,
        "created_at": CREATED_AT,
        "updated_at": CREATED_AT,
        "version": 1,
        "integration_ids": (INTEGRATION_ID,),
        "paymob_order_id": PAYMOB_ORDER_ID,
        "paymob_intention_id": "pi_test_d04d1a84962b47929b2dc164a04268bc",
    }
    fields.update(overrides)
    return Payment(**fields)


def a_payment_in(status: PaymentStatus, **overrides: Any) -> Payment:
    """A payment that reached `status` the usual way, with the fields that journey leaves.

    PARTIALLY_REFUNDED carries one refund of a third of the amount, REFUNDED one refund of
    all of it (both reported by the child and by the parent callback); UNDER_REVIEW was
    paid with the wrong amount.
    """
    amount = int(overrides.get("amount_cents", AMOUNT_CENTS))
    settled: dict[str, Any] = {
        "paymob_transaction_id": TRANSACTION_ID,
        "completed_at": PAID_AT,
        "card": CARD,
    }
    by_status: dict[PaymentStatus, dict[str, Any]] = {
        PaymentStatus.PENDING: {},
        PaymentStatus.FAILED: {"failure_reason": "Do not honour", "completed_at": PAID_AT},
        PaymentStatus.EXPIRED: {"failure_reason": "no transaction before the checkout expired"},
        PaymentStatus.PAID: settled,
        PaymentStatus.UNDER_REVIEW: {**settled, "flags": frozenset({PaymentFlag.AMOUNT_MISMATCH})},
        PaymentStatus.PARTIALLY_REFUNDED: {**settled, **_refunded(amount // 3)},
        PaymentStatus.REFUNDED: {**settled, **_refunded(amount)},
        PaymentStatus.VOIDED: settled,
    }
    version = 1 if status is PaymentStatus.PENDING else 3
    fields: dict[str, Any] = {"status": status, "version": version, "updated_at": PAID_AT}
    fields.update(by_status[status])
    fields.update(overrides)
    return a_payment(**fields)


def _refunded(cents: int) -> dict[str, Any]:
    return {
        "refund_transactions": {"192036999": cents},
        "refund_reported_cents": cents,
        "refunded_amount_cents": cents,
    }


def a_fact(kind: FactKind, **overrides: Any) -> TransactionFact:
    """A fact of `kind` about the default payment, as a verified PayMob callback carries it.

    An override comes from an admin, an expiry from the reconciler and a duplicate payment
    from the enrolment step; every other kind defaults to the signed server-to-server callback.
    """
    fields: dict[str, Any] = {
        "source": _default_source(kind),
        "kind": kind,
        **_default_fields(kind),
    }
    fields.update(overrides)
    return TransactionFact(**fields)


def _default_source(kind: FactKind) -> FactSource:
    if kind is FactKind.OVERRIDE:
        return FactSource.ADMIN
    if kind is FactKind.EXPIRED:
        return FactSource.RECONCILER
    if kind is FactKind.DUPLICATE_PAYMENT:
        return FactSource.ENROLMENT
    return FactSource.CALLBACK


def _default_fields(kind: FactKind) -> dict[str, Any]:
    transaction: dict[str, Any] = {
        "paymob_transaction_id": TRANSACTION_ID,
        "paymob_order_id": PAYMOB_ORDER_ID,
        "amount_cents": AMOUNT_CENTS,
        "currency": CURRENCY,
        "integration_id": INTEGRATION_ID,
        "occurred_at": PAID_AT,
        "merchant_order_id": PAYMENT_ID,
    }
    match kind:
        case FactKind.SUCCESS | FactKind.STILL_PENDING | FactKind.VOIDED:
            return {**transaction, "card": CARD}
        case FactKind.DECLINED:
            return {
                **transaction,
                "paymob_transaction_id": DECLINED_TRANSACTION_ID,
                "failure_reason": "Do not honour",
                "card": CARD,
            }
        case FactKind.REFUND | FactKind.REVERSAL_FAILED:
            return {
                **transaction,
                "paymob_transaction_id": REFUND_TRANSACTION_ID,
                "parent_transaction_id": TRANSACTION_ID,
            }
        case FactKind.VOID:
            return {
                **transaction,
                "paymob_transaction_id": VOID_TRANSACTION_ID,
                "parent_transaction_id": TRANSACTION_ID,
            }
        case FactKind.REFUNDED:
            return {**transaction, "card": CARD, "refunded_amount_cents": AMOUNT_CENTS}
        case FactKind.EXPIRED | FactKind.DUPLICATE_PAYMENT:
            return {"paymob_order_id": PAYMOB_ORDER_ID}
        case FactKind.OVERRIDE:
            return {"reason": OVERRIDE_REASON, "actor": ADMIN}


def success_fact(**overrides: Any) -> TransactionFact:
    """The transaction that pays the default payment."""
    return a_fact(FactKind.SUCCESS, **overrides)


def declined_fact(**overrides: Any) -> TransactionFact:
    return a_fact(FactKind.DECLINED, **overrides)


def still_pending_fact(**overrides: Any) -> TransactionFact:
    return a_fact(FactKind.STILL_PENDING, **overrides)


def refund_fact(amount_cents: int, **overrides: Any) -> TransactionFact:
    """A successful refund child of `amount_cents`, of TRANSACTION_ID unless overridden."""
    return a_fact(FactKind.REFUND, amount_cents=amount_cents, **overrides)


def refunded_fact(refunded_amount_cents: int | None, **overrides: Any) -> TransactionFact:
    """The parent callback of a refund: the paying transaction, cumulative refunded amount."""
    return a_fact(FactKind.REFUNDED, refunded_amount_cents=refunded_amount_cents, **overrides)


def void_fact(**overrides: Any) -> TransactionFact:
    """A successful void child of TRANSACTION_ID."""
    return a_fact(FactKind.VOID, **overrides)


def voided_fact(**overrides: Any) -> TransactionFact:
    """The parent callback of a void: the paying transaction, now voided."""
    return a_fact(FactKind.VOIDED, **overrides)


def reversal_failed_fact(**overrides: Any) -> TransactionFact:
    return a_fact(FactKind.REVERSAL_FAILED, **overrides)


def expired_fact(**overrides: Any) -> TransactionFact:
    return a_fact(FactKind.EXPIRED, **overrides)


def duplicate_payment_fact(**overrides: Any) -> TransactionFact:
    """The enrolment step found the student already owns the course."""
    return a_fact(FactKind.DUPLICATE_PAYMENT, **overrides)


def override_fact(status: PaymentStatus | None, **overrides: Any) -> TransactionFact:
    """An admin override to `status`, with a reason and an actor unless overridden."""
    return a_fact(FactKind.OVERRIDE, override_status=status, **overrides)


def transaction_flags(**overrides: bool) -> TransactionFlags:
    """PayMob's booleans of a plain successful payment; override any of them."""
    fields: dict[str, bool] = {
        "success": True,
        "pending": False,
        "error_occured": False,
        "is_voided": False,
        "is_refunded": False,
        "has_parent_transaction": False,
        "is_void": False,
        "is_refund": False,
    }
    fields.update(overrides)
    return TransactionFlags(**fields)


# --- Payments table stream records ----------------------------------------------------

STREAM_ARN = (
    "arn:aws:dynamodb:eu-west-1:123456789012:table/course-payments-dev-payments"
    "/stream/2024-06-13T11:00:00.000"
)
SHARD_ID = "shardId-00000001718276400000-8f2a1c3d"
SEQUENCE_NUMBER = "4100000000011111111111"


def a_stream_record(
    before: Payment | None, after: Payment | None, *, sequence_number: str = SEQUENCE_NUMBER
) -> dict[str, Any]:
    """A Payments stream record as Lambda delivers it: the payments' stored items as images."""
    # Imported here: only tests that build stream records need the storage serializer.
    from coursepay.storage.serialization import payment_to_item

    changed = after if after is not None else before
    assert changed is not None, "a stream record has at least one image"
    event_name = "INSERT" if before is None else "REMOVE" if after is None else "MODIFY"
    change: dict[str, Any] = {
        "ApproximateCreationDateTime": 1718278424.0,
        "Keys": {"payment_id": {"S": changed.payment_id}},
        "SequenceNumber": sequence_number,
        "SizeBytes": 812,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if after is not None:
        change["NewImage"] = payment_to_item(after)
    if before is not None:
        change["OldImage"] = payment_to_item(before)
    return {
        "eventID": f"c81e728d9d4c2f636f067f89cc14862c{sequence_number[-4:]}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": change,
        "eventSourceARN": STREAM_ARN,
    }


def a_stream_event(*records: dict[str, Any]) -> dict[str, Any]:
    """The event Lambda passes the enroll function: a batch of stream records."""
    return {"Records": list(records)}
