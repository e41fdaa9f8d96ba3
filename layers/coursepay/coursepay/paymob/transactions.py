"""PayMob transactions (callback `obj`, redirect query, inquiry answer): models and facts."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from coursepay.domain.facts import (
    FactSource,
    TransactionFact,
    TransactionFlags,
    classify,
)
from coursepay.domain.payment import CardSummary
from coursepay.domain.signature import TRANSACTION_QUERY_KEYS, transaction_message_from_obj


class InvalidTransaction(ValueError):
    """A transaction object lacking what PayMob always sends; `field` names the first problem."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field
        self.problem = problem


class _Lenient(BaseModel):
    # PayMob adds fields over time: unknown ones are kept, never an error.
    model_config = ConfigDict(extra="allow", frozen=True)


class TransactionOrder(_Lenient):
    id: int
    merchant_order_id: str | int | None = None


class SourceData(_Lenient):
    pan: str | None = None
    type: str | None = None
    sub_type: str | None = None


class TransactionData(_Lenient):
    message: str | None = None
    txn_response_code: str | int | None = None


class Transaction(_Lenient):
    """A PayMob transaction: the 20 signed fields are required, everything else optional."""

    id: int
    amount_cents: int
    created_at: str
    currency: str
    error_occured: bool
    has_parent_transaction: bool
    integration_id: int
    is_3d_secure: bool
    is_auth: bool
    is_capture: bool
    is_refunded: bool
    is_standalone_payment: bool
    is_voided: bool
    order: TransactionOrder
    owner: int
    pending: bool
    source_data: SourceData
    success: bool
    # Unsigned details, absent from older payloads.
    is_void: bool | None = None
    is_refund: bool | None = None
    refunded_amount_cents: int | None = None
    parent_transaction: int | None = None
    data: TransactionData | None = None

    @property
    def paymob_order_id(self) -> str:
        return str(self.order.id)

    @property
    def merchant_order_id(self) -> str | None:
        ref = self.order.merchant_order_id
        return None if ref is None else str(ref)

    def failure_reason(self) -> str | None:
        if self.data is None:
            return None
        if self.data.message:
            return self.data.message
        code = self.data.txn_response_code
        return None if code is None else str(code)

    def card_summary(self) -> CardSummary:
        pan = self.source_data.pan or ""
        last4 = pan[-4:] if len(pan) >= 4 and pan[-4:].isascii() and pan[-4:].isdigit() else None
        source = self.source_data
        return CardSummary(last4=last4, type=source.type, sub_type=source.sub_type)

    def to_fact(self, source: FactSource) -> TransactionFact:
        flags = TransactionFlags(
            success=self.success,
            pending=self.pending,
            error_occured=self.error_occured,
            is_voided=self.is_voided,
            is_refunded=self.is_refunded,
            has_parent_transaction=self.has_parent_transaction,
            is_void=bool(self.is_void),
            is_refund=bool(self.is_refund),
        )
        parent = self.parent_transaction
        return TransactionFact(
            source=source,
            kind=classify(flags),
            paymob_transaction_id=str(self.id),
            paymob_order_id=self.paymob_order_id,
            amount_cents=self.amount_cents,
            currency=self.currency,
            integration_id=self.integration_id,
            occurred_at=self.created_at,
            failure_reason=None if self.success else self.failure_reason(),
            card=self.card_summary(),
            merchant_order_id=self.merchant_order_id,
            parent_transaction_id=None if parent is None else str(parent),
            refunded_amount_cents=self.refunded_amount_cents,
        )

    def signed_message(self) -> str:
        """The HMAC message of the parsed values, rendered as PayMob renders them.

        A verified message that differs from this one was signed over other digits than the
        ones parsed (say "02852", read as 2852, or digits moved across two neighbouring
        fields, which the separator-less concatenation allows): the caller refuses it.
        """
        source = self.source_data
        return transaction_message_from_obj(
            {
                "amount_cents": self.amount_cents,
                "created_at": self.created_at,
                "currency": self.currency,
                "error_occured": self.error_occured,
                "has_parent_transaction": self.has_parent_transaction,
                "id": self.id,
                "integration_id": self.integration_id,
                "is_3d_secure": self.is_3d_secure,
                "is_auth": self.is_auth,
                "is_capture": self.is_capture,
                "is_refunded": self.is_refunded,
                "is_standalone_payment": self.is_standalone_payment,
                "is_voided": self.is_voided,
                "order": {"id": self.order.id},
                "owner": self.owner,
                "pending": self.pending,
                "source_data": {
                    "pan": source.pan,
                    "sub_type": source.sub_type,
                    "type": source.type,
                },
                "success": self.success,
            }
        )

    def signed_summary(self) -> dict[str, Any]:
        """What we keep of a transaction in the event history: no billing data, no card number."""
        return {
            "id": self.id,
            "order_id": self.order.id,
            "merchant_order_id": self.merchant_order_id,
            "amount_cents": self.amount_cents,
            "currency": self.currency,
            "integration_id": self.integration_id,
            "created_at": self.created_at,
            "success": self.success,
            "pending": self.pending,
            "error_occured": self.error_occured,
            "is_refunded": self.is_refunded,
            "is_voided": self.is_voided,
            "has_parent_transaction": self.has_parent_transaction,
            "is_refund": self.is_refund,
            "is_void": self.is_void,
            "parent_transaction": self.parent_transaction,
            "refunded_amount_cents": self.refunded_amount_cents,
            "message": self.failure_reason(),
            "card": self.card_summary().model_dump(exclude_none=True),
        }


def parse_transaction(obj: Any) -> Transaction:
    """Validate a transaction object, naming the first missing or invalid field."""
    try:
        return Transaction.model_validate(obj)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "obj"
        raise InvalidTransaction(field, first["msg"]) from None


def parse_redirect(params: dict[str, str]) -> Transaction:
    """Validate the flattened query of PayMob's browser redirect as a transaction.

    Only the signed keys (the order id under `order`) and display detail (merchant order
    id, message, response code) are read. Any other key, `order.id` among them, is ignored,
    and so are unsigned flags (`is_void`, `is_refund`): the student holds this query and can
    edit what PayMob did not sign.
    """
    nested: dict[str, Any] = {"order": {}, "source_data": {}, "data": {}}
    for key in TRANSACTION_QUERY_KEYS:
        if key not in params:
            continue
        value = params[key]
        if key == "order":
            nested["order"]["id"] = value
        elif "." in key:
            head, _, tail = key.partition(".")
            nested[head][tail] = value
        else:
            nested[key] = value
    if "merchant_order_id" in params:
        nested["order"]["merchant_order_id"] = params["merchant_order_id"] or None
    if "data.message" in params:
        nested["data"]["message"] = params["data.message"]
    if "txn_response_code" in params:
        nested["data"]["txn_response_code"] = params["txn_response_code"]
    return parse_transaction(nested)


class CallbackEnvelope(_Lenient):
    """The body of PayMob's server-to-server callback."""

    type: str
    obj: dict[str, Any]
