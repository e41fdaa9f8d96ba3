"""PayMob callbacks for tests: the real sample, reshaped for a payment and signed like PayMob."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from coursepay.domain.signature import sign_transaction_obj

EVENTS = Path(__file__).resolve().parent.parent / "events"
TEST_HMAC_SECRET = "04DC1A9490B8CC2094C011FC055ADCDB"  # PayMob's documented example secret
PREVIOUS_HMAC_SECRET = "0LDSECRET0ROTATED0AWAY000000000A"


@cache
def _sample() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(
        (EVENTS / "transaction_processed_callback.json").read_text()
    )
    return loaded


def transaction_callback(
    *,
    transaction_id: int = 192036465,
    order_id: int = 217503754,
    merchant_order_id: str | None = None,
    amount_cents: int = 100000,
    currency: str = "EGP",
    integration_id: int = 4097558,
    success: bool = True,
    pending: bool = False,
    is_refunded: bool = False,
    is_voided: bool = False,
    has_parent_transaction: bool = False,
    parent_transaction: int | None = None,
    is_refund: bool | None = False,
    is_void: bool | None = False,
    refunded_amount_cents: int | None = None,
    message: str = "Approved",
    **obj_overrides: Any,
) -> dict[str, Any]:
    """The sample body of PayMob's transaction processed callback, with these values."""
    body = copy.deepcopy(_sample())
    obj = body["obj"]
    obj.update(
        id=transaction_id,
        amount_cents=amount_cents,
        currency=currency,
        integration_id=integration_id,
        success=success,
        pending=pending,
        is_refunded=is_refunded,
        is_voided=is_voided,
        has_parent_transaction=has_parent_transaction,
        parent_transaction=parent_transaction,
        is_refund=is_refund,
        is_void=is_void,
        refunded_amount_cents=refunded_amount_cents,
    )
    obj["order"].update(id=order_id, merchant_order_id=merchant_order_id, amount_cents=amount_cents)
    obj["data"].update(message=message, txn_response_code="APPROVED" if success else "DECLINED")
    obj.update(obj_overrides)
    return body


def declined_callback(**overrides: Any) -> dict[str, Any]:
    overrides.setdefault("transaction_id", 192036401)
    return transaction_callback(success=False, message="Do not honour", **overrides)


def sign(body: dict[str, Any], secret: str = TEST_HMAC_SECRET) -> str:
    return sign_transaction_obj(body["obj"], secret)


def encode(body: dict[str, Any]) -> bytes:
    return json.dumps(body).encode("utf-8")
