"""PayMob's callback over HTTP, through the local gateway, into the real webhook handler."""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path
from typing import Any

import requests

from coursepay.domain.signature import sign_transaction_obj
from devstack.stack import LocalStack

SAMPLE: dict[str, Any] = json.loads(
    (Path(__file__).resolve().parents[1] / "events/transaction_processed_callback.json").read_text()
)


def a_callback_for_an_unknown_order() -> dict[str, Any]:
    callback: dict[str, Any] = copy.deepcopy(SAMPLE)
    callback["obj"]["order"]["id"] = random.randint(700_000_000, 799_999_999)
    callback["obj"]["id"] = random.randint(800_000_000, 899_999_999)
    return callback


def post(stack: LocalStack, callback: dict[str, Any], hmac: str | None) -> requests.Response:
    query = f"?hmac={hmac}" if hmac is not None else ""
    return requests.post(
        f"{stack.api_url}/api/payments/webhook{query}",
        data=json.dumps(callback),
        headers={"Content-Type": "application/json"},
        timeout=20,
    )


def test_a_signed_callback_for_an_unknown_order_is_kept_and_acknowledged(
    stack: LocalStack,
) -> None:
    # Given a callback PayMob signed (with this stack's secret) for an order nobody has
    callback = a_callback_for_an_unknown_order()
    hmac = sign_transaction_obj(callback["obj"], stack.settings.hmac_secret)

    # When it arrives at the webhook
    response = post(stack, callback, hmac)

    # Then it is acknowledged as an orphan (stored, alerted), not an error PayMob retries
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "orphan"
    assert response.headers["content-type"].startswith("application/json")


def test_a_tampered_callback_is_refused(stack: LocalStack) -> None:
    # Given a genuine signature over a callback whose signed amount was then changed
    callback = a_callback_for_an_unknown_order()
    hmac = sign_transaction_obj(callback["obj"], stack.settings.hmac_secret)
    callback["obj"]["amount_cents"] = 1

    response = post(stack, callback, hmac)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"


def test_a_callback_without_a_signature_is_refused(stack: LocalStack) -> None:
    response = post(stack, a_callback_for_an_unknown_order(), None)

    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_signature"
