"""Intentions: PayMob's validation of a create request, and the simulator's intention record."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeGuard
from urllib.parse import urlsplit

# PayMob's currencies and their minor-unit exponents (OMR has three decimals). This is
# PayMob's list, kept apart from the platform's own so the simulator emulates PayMob.
CURRENCY_EXPONENTS: dict[str, int] = {"EGP": 2, "SAR": 2, "AED": 2, "OMR": 3, "USD": 2}
REQUIRED_BILLING_FIELDS: tuple[str, ...] = ("first_name", "last_name", "email", "phone_number")
MAX_ITEM_NAME_LENGTH = 50

type Json = dict[str, Any]


class ApiError(Exception):
    """An API answer other than success: the HTTP status and PayMob-style JSON body."""

    def __init__(self, status: int, body: Json) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class IntentionRequest:
    """A create-intention body that passed validation."""

    amount: int
    currency: str
    payment_methods: tuple[int, ...]
    items: tuple[Json, ...]
    billing_data: Json
    customer: Json | None
    extras: Json
    special_reference: str | None
    notification_url: str | None
    redirection_url: str | None
    expiration: int | None


@dataclass
class Intention:
    """One intention and its PayMob order; mutated only under the account's lock."""

    id: str
    client_secret: str
    order_id: int
    request: IntentionRequest
    created_at: datetime
    created: str  # rendered once, so every view of the intention and its order agrees
    expires_at: datetime
    payment_keys: list[Json]
    transaction_ids: list[int] = field(default_factory=list)
    paid_transaction_id: int | None = None

    def status(self, now: datetime) -> str:
        if self.paid_transaction_id is not None:
            return "paid"
        if now >= self.expires_at:
            return "expired"
        return "intended"


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _valid_url(value: object) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.netloc)


def _optional_object(payload: Json, name: str, errors: dict[str, list[str]]) -> Json | None:
    value = payload.get(name)
    if value is None:
        return None
    if not isinstance(value, dict):
        errors[name] = ["Must be a JSON object."]
        return None
    return value


def parse_intention_request(
    payload: object, *, known_integrations: Collection[int]
) -> IntentionRequest:
    """Validate like PayMob: 400 with every field's messages, 404 for an unknown integration."""
    if not isinstance(payload, dict):
        raise ApiError(400, {"non_field_errors": ["Invalid data. Expected a JSON object."]})
    errors: dict[str, list[str]] = {}

    amount = payload.get("amount")
    if amount is None:
        errors["amount"] = ["This field is required."]
    elif not _is_int(amount) or amount <= 0:
        errors["amount"] = ["A positive integer in minor units (cents) is required."]

    currency = payload.get("currency")
    if currency is None:
        errors["currency"] = ["This field is required."]
    elif currency not in CURRENCY_EXPONENTS:
        errors["currency"] = [f"Unsupported currency; use one of {', '.join(CURRENCY_EXPONENTS)}."]

    methods = payload.get("payment_methods")
    if methods is None:
        errors["payment_methods"] = ["This field is required."]
    elif not isinstance(methods, list) or not methods:
        errors["payment_methods"] = ["A non-empty list of integration ids is required."]
    elif not all(_is_int(m) for m in methods):
        errors["payment_methods"] = ["Integration ids must be integers."]

    items = payload.get("items", [])
    if not isinstance(items, list):
        errors["items"] = ["Must be a list."]
        items = []
    for index, item in enumerate(items):
        _check_item(index, item, errors)
    if items and "amount" not in errors and not any(k.startswith("items") for k in errors):
        total = sum(item["amount"] * item.get("quantity", 1) for item in items)
        if total != amount:
            errors["items"] = [
                f"The items amounts ({total}) must add up to the intention amount ({amount})."
            ]

    billing = payload.get("billing_data")
    if billing is None:
        errors["billing_data"] = ["This field is required."]
    elif not isinstance(billing, dict):
        errors["billing_data"] = ["Must be a JSON object."]
    else:
        for name in REQUIRED_BILLING_FIELDS:
            value = billing.get(name)
            if not isinstance(value, str) or not value.strip():
                errors[f"billing_data.{name}"] = ["This field is required."]
        email = billing.get("email")
        if isinstance(email, str) and email.strip() and "@" not in email:
            errors["billing_data.email"] = ["Enter a valid email address."]

    customer = _optional_object(payload, "customer", errors)
    extras = _optional_object(payload, "extras", errors) or {}

    reference = payload.get("special_reference")
    if reference is not None and (not isinstance(reference, str) or not reference.strip()):
        errors["special_reference"] = ["Must be a non-empty string."]

    for name in ("notification_url", "redirection_url"):
        value = payload.get(name)
        if value is not None and not _valid_url(value):
            errors[name] = ["Enter a valid http(s) URL."]

    expiration = payload.get("expiration")
    if expiration is not None and (not _is_int(expiration) or expiration <= 0):
        errors["expiration"] = ["A positive number of seconds is required."]

    if errors:
        raise ApiError(400, errors)
    # Narrowing for the type checker: the checks above have already guaranteed these.
    assert isinstance(amount, int)
    assert isinstance(currency, str)
    assert isinstance(methods, list)
    assert isinstance(billing, dict)

    unknown = [m for m in methods if m not in known_integrations]
    if unknown:
        raise ApiError(404, {"detail": f"Integration ID {unknown[0]} not found."})

    return IntentionRequest(
        amount=amount,
        currency=currency,
        payment_methods=tuple(methods),
        items=tuple(items),
        billing_data=billing,
        customer=customer,
        extras=extras,
        special_reference=reference,
        notification_url=payload.get("notification_url"),
        redirection_url=payload.get("redirection_url"),
        expiration=expiration,
    )


def _check_item(index: int, item: object, errors: dict[str, list[str]]) -> None:
    prefix = f"items.{index}"
    if not isinstance(item, dict):
        errors[prefix] = ["Must be a JSON object."]
        return
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        errors[f"{prefix}.name"] = ["This field is required."]
    elif len(name) > MAX_ITEM_NAME_LENGTH:
        errors[f"{prefix}.name"] = [
            f"Ensure this field has no more than {MAX_ITEM_NAME_LENGTH} characters."
        ]
    amount = item.get("amount")
    if not _is_int(amount) or amount < 0:
        errors[f"{prefix}.amount"] = ["A non-negative integer in minor units is required."]
    quantity = item.get("quantity", 1)
    if not _is_int(quantity) or quantity < 1:
        errors[f"{prefix}.quantity"] = ["A positive integer is required."]
    description = item.get("description")
    if description is not None and not isinstance(description, str):
        errors[f"{prefix}.description"] = ["Must be a string."]
