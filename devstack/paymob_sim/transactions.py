"""Transactions as PayMob shapes them: sandbox outcomes, callback objects, signed redirects."""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from coursepay.domain.signature import sign_transaction_query
from devstack.paymob_sim.intentions import CURRENCY_EXPONENTS, ApiError, Intention, Json

# PayMob's sandbox cards (any name), which pay with this expiry and CVV.
SANDBOX_CARDS: dict[str, str] = {
    "5123456789012346": "MasterCard",
    "5123450000000008": "MasterCard",
    "4111111111111111": "Visa",
}
SANDBOX_EXPIRY = "01/39"
SANDBOX_CVV = "123"
# PayMob documents no decline card; this one is the simulator's, borrowed from common use.
DECLINE_CARD = "4000000000000002"
TEST_WALLET = "01010101010"
TEST_WALLET_PIN = "123456"

_DIGITS = re.compile(r"^[0-9]+$")
_EXPIRY = re.compile(r"^(0[1-9]|1[0-2])/([0-9]{2})$")

# The transaction response redirect's keys, in the order PayMob sends them (see the
# sample redirect); `order` is the order id, the codes and message come from `data`.
REDIRECT_KEYS: tuple[str, ...] = (
    "id",
    "pending",
    "amount_cents",
    "success",
    "is_auth",
    "is_capture",
    "is_standalone_payment",
    "is_voided",
    "is_refunded",
    "is_3d_secure",
    "integration_id",
    "profile_id",
    "has_parent_transaction",
    "order",
    "created_at",
    "currency",
    "merchant_commission",
    "discount_details",
    "is_void",
    "is_refund",
    "error_occured",
    "refunded_amount_cents",
    "captured_amount",
    "updated_at",
    "is_settled",
    "bill_balanced",
    "is_bill",
    "owner",
    "merchant_order_id",
    "data.message",
    "source_data.type",
    "source_data.pan",
    "source_data.sub_type",
    "acq_response_code",
    "txn_response_code",
)
# Nulls PayMob's redirect renders as 0 (the sample redirect of a callback holding null).
_ZERO_WHEN_NULL = frozenset({"merchant_commission", "refunded_amount_cents", "captured_amount"})


@dataclass(frozen=True)
class CardPayment:
    number: str
    name: str
    expiry: str
    cvv: str


@dataclass(frozen=True)
class WalletPayment:
    number: str
    pin: str


@dataclass(frozen=True)
class Outcome:
    """What the simulated issuer answers."""

    approved: bool
    message: str
    txn_response_code: str
    acq_response_code: str


def parse_card(number: str, name: str, expiry: str, cvv: str) -> CardPayment:
    """A well-formed card entry, or ApiError(400) naming each bad field (no transaction made)."""
    digits = re.sub(r"[\s-]", "", number)
    errors: dict[str, list[str]] = {}
    if not _DIGITS.match(digits) or not 12 <= len(digits) <= 19:
        errors["card_number"] = ["Enter the card number: 12 to 19 digits."]
    if not name.strip():
        errors["card_name"] = ["Enter the name on the card."]
    if not _EXPIRY.match(expiry.strip()):
        errors["card_expiry"] = ["Enter the expiry date as MM/YY."]
    if not _DIGITS.match(cvv.strip()) or len(cvv.strip()) not in (3, 4):
        errors["card_cvv"] = ["Enter the 3 or 4 digit security code."]
    if errors:
        raise ApiError(400, errors)
    return CardPayment(digits, name.strip(), expiry.strip(), cvv.strip())


def parse_wallet(number: str, pin: str) -> WalletPayment:
    errors: dict[str, list[str]] = {}
    digits = re.sub(r"[\s-]", "", number)
    if not _DIGITS.match(digits) or len(digits) != 11:
        errors["wallet_number"] = ["Enter the 11-digit wallet mobile number."]
    if not _DIGITS.match(pin.strip()) or len(pin.strip()) != 6:
        errors["wallet_pin"] = ["Enter the 6-digit wallet PIN."]
    if errors:
        raise ApiError(400, errors)
    return WalletPayment(digits, pin.strip())


def card_brand(number: str) -> str:
    if number in SANDBOX_CARDS:
        return SANDBOX_CARDS[number]
    if number.startswith("4"):
        return "Visa"
    if number[:1] in ("2", "5"):
        return "MasterCard"
    return "Unknown"


def card_outcome(card: CardPayment) -> Outcome:
    if card.number == DECLINE_CARD:
        return Outcome(False, "Do not honour", "DECLINED", "05")
    if card.number not in SANDBOX_CARDS:
        return Outcome(
            False,
            "Card not accepted by the PayMob simulator: use a sandbox card",
            "DECLINED",
            "14",
        )
    if card.expiry != SANDBOX_EXPIRY:
        return Outcome(False, "Expired card or wrong expiry date", "DECLINED", "54")
    if card.cvv != SANDBOX_CVV:
        return Outcome(False, "Invalid card security code (CVV)", "DECLINED", "N7")
    return Outcome(True, "Approved", "APPROVED", "00")


def wallet_outcome(wallet: WalletPayment) -> Outcome:
    if wallet.number != TEST_WALLET:
        return Outcome(False, "Wallet not found: use the test wallet", "DECLINED", "14")
    if wallet.pin != TEST_WALLET_PIN:
        return Outcome(False, "Wrong wallet PIN", "DECLINED", "55")
    return Outcome(True, "Approved", "APPROVED", "00")


def major_units(amount_cents: int, currency: str) -> int | str:
    """PayMob's `data.*_amount` fields are in major units; exact, never via floats."""
    places = CURRENCY_EXPONENTS.get(currency, 2)
    scale: int = 10**places
    if amount_cents % scale == 0:
        return amount_cents // scale
    return f"{Decimal(amount_cents).scaleb(-places):.{places}f}"


def order_json(intention: Intention, *, paid: bool) -> Json:
    request = intention.request
    return {
        "id": intention.order_id,
        "created_at": intention.created,
        "delivery_needed": False,
        "amount_cents": request.amount,
        "currency": request.currency,
        "merchant_order_id": request.special_reference,
        "paid_amount_cents": request.amount if paid else 0,
        "items": [
            {
                "name": item["name"],
                "description": item.get("description", ""),
                "amount_cents": item["amount"],
                "quantity": item.get("quantity", 1),
            }
            for item in request.items
        ],
        "payment_method": "tbc",
        "api_source": "OTHER",
        "data": {},
    }


def payment_transaction(
    *,
    transaction_id: int,
    intention: Intention,
    payment: CardPayment | WalletPayment,
    outcome: Outcome,
    integration_id: int,
    now: str,
    merchant_id: int,
    profile_id: int,
) -> Json:
    """A payment attempt with the key set and key order of PayMob's sample callback `obj`."""
    request = intention.request
    amount = request.amount if outcome.approved else 0
    if isinstance(payment, CardPayment):
        brand = card_brand(payment.number)
        source_data: Json = {
            "pan": payment.number[-4:],
            "type": "card",
            "tenure": None,
            "sub_type": brand,
        }
        data: Json = {
            "gateway_integration_pk": integration_id,
            "klass": "MigsPayment",
            "amount": request.amount,
            "currency": request.currency,
            "migs_result": "SUCCESS" if outcome.approved else "FAILURE",
            "txn_response_code": outcome.txn_response_code,
            "acq_response_code": outcome.acq_response_code,
            "message": outcome.message,
            "merchant_txn_ref": str(transaction_id),
            "order_info": str(intention.order_id),
            "card_type": brand.upper(),
            "card_num": f"{payment.number[:6]}{'x' * (len(payment.number) - 10)}"
            f"{payment.number[-4:]}",
            "captured_amount": major_units(amount, request.currency),
            "authorised_amount": major_units(amount, request.currency),
            "refunded_amount": None,
        }
    else:
        source_data = {
            "pan": payment.number,
            "type": "wallet",
            "tenure": None,
            "sub_type": "wallet",
        }
        data = {
            "gateway_integration_pk": integration_id,
            "klass": "WalletPayment",
            "amount": request.amount,
            "currency": request.currency,
            "txn_response_code": outcome.txn_response_code,
            "acq_response_code": outcome.acq_response_code,
            "message": outcome.message,
            "merchant_txn_ref": str(transaction_id),
            "order_info": str(intention.order_id),
            "wallet_msisdn": payment.number,
            "captured_amount": major_units(amount, request.currency),
            "authorised_amount": major_units(amount, request.currency),
            "refunded_amount": None,
        }
    return {
        "id": transaction_id,
        "pending": False,
        "amount_cents": request.amount,
        "success": outcome.approved,
        "is_auth": False,
        "is_capture": False,
        "is_standalone_payment": True,
        "is_voided": False,
        "is_refunded": False,
        "is_3d_secure": isinstance(payment, CardPayment),
        "integration_id": integration_id,
        "profile_id": profile_id,
        "has_parent_transaction": False,
        "order": order_json(intention, paid=outcome.approved),
        "created_at": now,
        "transaction_processed_callback_responses": [],
        "currency": request.currency,
        "source_data": source_data,
        "api_source": "IFRAME",
        "terminal_id": None,
        "merchant_commission": None,
        "installment": None,
        "discount_details": [],
        "is_void": False,
        "is_refund": False,
        "data": data,
        "is_hidden": False,
        "payment_key_claims": {
            "extra": copy.deepcopy(request.extras),
            "user_id": merchant_id,
            "currency": request.currency,
            "order_id": intention.order_id,
            "amount_cents": request.amount,
            "integration_id": integration_id,
            "lock_order_when_paid": False,
            "next_payment_intention": intention.id,
            "single_payment_attempt": False,
        },
        "error_occured": False,
        "is_live": False,
        "other_endpoint_reference": None,
        "refunded_amount_cents": None,
        "source_id": -1,
        "is_captured": False,
        "captured_amount": None,
        "updated_at": now,
        "is_settled": False,
        "bill_balanced": False,
        "is_bill": False,
        "owner": merchant_id,
        "parent_transaction": None,
    }


def reversal_child(
    parent: Json, *, transaction_id: int, amount_cents: int, kind: str, now: str
) -> Json:
    """The child transaction of a refund or void ("refund" | "void"): succeeded, not a payment."""
    child = copy.deepcopy(parent)
    child.update(
        id=transaction_id,
        pending=False,
        amount_cents=amount_cents,
        success=True,
        is_voided=False,
        is_refunded=False,
        has_parent_transaction=True,
        created_at=now,
        updated_at=now,
        is_void=kind == "void",
        is_refund=kind == "refund",
        refunded_amount_cents=None,
        parent_transaction=parent["id"],
        transaction_processed_callback_responses=[],
    )
    child["data"].update(
        amount=amount_cents,
        txn_response_code="APPROVED",
        acq_response_code="00",
        message="Approved",
        merchant_txn_ref=str(transaction_id),
    )
    return child


def redirect_params(obj: Json) -> dict[str, str]:
    """The transaction response redirect's parameters (without hmac), values as strings."""
    data = obj.get("data") or {}
    source = obj.get("source_data") or {}
    values: dict[str, Any] = {
        **{key: obj.get(key) for key in REDIRECT_KEYS if "." not in key},
        "order": obj["order"]["id"],
        "merchant_order_id": obj["order"].get("merchant_order_id"),
        "data.message": data.get("message"),
        "source_data.type": source.get("type"),
        "source_data.pan": source.get("pan"),
        "source_data.sub_type": source.get("sub_type"),
        "acq_response_code": data.get("acq_response_code"),
        "txn_response_code": data.get("txn_response_code"),
    }
    params: dict[str, str] = {}
    for key in REDIRECT_KEYS:
        value = values[key]
        if value is None and key in _ZERO_WHEN_NULL:
            value = 0
        if value is None:
            continue  # e.g. no special_reference: PayMob sends no merchant_order_id
        if isinstance(value, bool):
            params[key] = "true" if value else "false"
        elif isinstance(value, list | dict):
            params[key] = json.dumps(value, separators=(",", ":"))
        else:
            params[key] = str(value)
    return params


def signed_redirect_url(redirection_url: str, obj: Json, hmac_secret: str) -> str:
    """redirection_url plus the signed, percent-encoded transaction response query."""
    params = redirect_params(obj)
    params["hmac"] = sign_transaction_query(params, hmac_secret)
    parts = urlsplit(redirection_url)
    # Keep the merchant's own query parameters, then PayMob's, each encoded exactly once
    # (`+` in an offset becomes %2B, `:` %3A, like the sample redirect).
    pairs = [*parse_qsl(parts.query, keep_blank_values=True), *params.items()]
    query = urlencode(pairs, quote_via=quote)
    return urlunsplit((parts.scheme, parts.netloc, parts.path or "/", query, parts.fragment))
