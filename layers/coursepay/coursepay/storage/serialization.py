"""Domain records to DynamoDB items and back, and the derived attributes the indexes key on."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from coursepay.domain.payment import CardSummary, Payment, PaymentStatus
from coursepay.domain.records import Course, Enrollment, EventKind, PaymentEvent

Item = dict[str, Any]  # attribute name -> DynamoDB AttributeValue ({"S": ...}, {"N": ...})

# Payments by status are spread over this many index partitions so one busy status (PENDING
# at a sale, PAID all day) never makes a hot partition; listings query all of them.
STATUS_SHARDS = 16

# Written beside a payment by the enrolment transactions only; not part of the domain model.
ENROLLMENT_REVOKED_AT = "enrollment_revoked_at"

# The one partition of the sparse `orphans` index: callbacks for orders we do not know.
ORPHAN_BUCKET = "ORPHAN"

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def status_shard_number(payment_id: str) -> int:
    """A stable shard in 0..15 for a payment (a hash, so shards fill evenly)."""
    return int(hashlib.sha256(payment_id.encode()).hexdigest()[:8], 16) % STATUS_SHARDS


def status_shard(status: PaymentStatus | str, payment_id: str) -> str:
    return f"{status}#{status_shard_number(payment_id)}"


def attribute_value(value: Any) -> dict[str, Any]:
    """One Python value as a DynamoDB AttributeValue (floats become exact decimals)."""
    return _serializer.serialize(_storable(value))  # type: ignore[no-any-return]


def to_item(attributes: Mapping[str, Any]) -> Item:
    return {name: attribute_value(value) for name, value in attributes.items()}


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    """An item as plain Python: numbers as int (float only if one was ever stored)."""
    return {name: _plain(_deserializer.deserialize(value)) for name, value in item.items()}


# --- payments -----------------------------------------------------------------------


def payment_attributes(payment: Payment) -> dict[str, Any]:
    """A payment's stored attributes as Python values; absent values are left out, not null."""
    attributes: dict[str, Any] = {}
    for name, value in payment:
        if value is None:
            continue
        if name == "flags":
            if value:
                attributes[name] = {str(flag) for flag in value}
        elif name in ("integration_ids", "refund_transactions"):
            if value:
                attributes[name] = list(value) if name == "integration_ids" else dict(value)
        elif name == "card":
            attributes[name] = value.model_dump(exclude_none=True)
        elif name == "status":
            attributes[name] = str(value)
        else:
            attributes[name] = value
    attributes["status_shard"] = status_shard(payment.status, payment.payment_id)
    return attributes


def payment_to_item(payment: Payment) -> Item:
    return to_item(payment_attributes(payment))


def payment_from_item(item: Mapping[str, Any]) -> Payment:
    plain = from_item(item)
    fields = {name: plain[name] for name in Payment.model_fields if name in plain}
    if "card" in fields:
        fields["card"] = CardSummary(**fields["card"])
    return Payment(**fields)


# --- payment events -----------------------------------------------------------------

_EVENT_PARTITION = "payment_id"


def event_to_item(event: PaymentEvent) -> Item:
    attributes: dict[str, Any] = {}
    for name, value in event:
        if value is None or (name == "payload" and not value):
            continue
        attributes[_EVENT_PARTITION if name == "partition" else name] = (
            str(value) if name == "kind" else value
        )
    if event.kind is EventKind.ORPHAN:
        attributes["orphan_bucket"] = ORPHAN_BUCKET
    return to_item(attributes)


def event_from_item(item: Mapping[str, Any]) -> PaymentEvent:
    plain = from_item(item)
    plain["partition"] = plain.pop(_EVENT_PARTITION)
    fields = {name: plain[name] for name in PaymentEvent.model_fields if name in plain}
    return PaymentEvent(**fields)


# --- courses and enrolments ---------------------------------------------------------


def course_to_item(course: Course) -> Item:
    return to_item(course.model_dump())


def course_from_item(item: Mapping[str, Any]) -> Course:
    plain = from_item(item)
    return Course(**{name: plain[name] for name in Course.model_fields if name in plain})


def enrollment_to_item(enrollment: Enrollment) -> Item:
    return to_item(enrollment.model_dump(mode="json", exclude_none=True))


def enrollment_from_item(item: Mapping[str, Any]) -> Enrollment:
    plain = from_item(item)
    return Enrollment(**{name: plain[name] for name in Enrollment.model_fields if name in plain})


# --- value conversions --------------------------------------------------------------


def _storable(value: Any) -> Any:
    """Make a value acceptable to DynamoDB: it has no floats, only exact decimals."""
    if isinstance(value, float):
        # A float can only arrive in a received payload; keep its text, exactly.
        return Decimal(repr(value)) if math.isfinite(value) else repr(value)
    if isinstance(value, Mapping):
        return {str(k): _storable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_storable(v) for v in value]
    if isinstance(value, set | frozenset):
        return {_storable(v) for v in value}
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, set):
        return {_plain(v) for v in value}
    return value
