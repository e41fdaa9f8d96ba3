"""The PayMob simulator over HTTP: intentions, checkout, callbacks, switches, inquiry, refunds."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from coursepay.domain.signature import (
    HmacSecrets,
    SignatureCheck,
    check_redirect_query,
    sign_transaction_obj,
    sign_transaction_query,
)
from devstack.paymob_sim import ConfigError, PaymobSimulator, SimulatorConfig

REPO = Path(__file__).resolve().parents[2]
SAMPLE_CALLBACK = json.loads(
    (REPO / "tests/events/transaction_processed_callback.json").read_text()
)
CONFIG = SimulatorConfig()
SECRETS = HmacSecrets(CONFIG.hmac_secret)
MASTERCARD, VISA, DECLINE_CARD = "5123456789012346", "4111111111111111", "4000000000000002"


@dataclass(frozen=True)
class ReceivedCallback:
    hmac: str
    body: dict[str, Any]
    answered: int

    @property
    def obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = self.body["obj"]
        return obj


class CallbackReceiver:
    """A webhook stand-in on loopback: records every POST and answers scripted statuses."""

    def __init__(self) -> None:
        self.received: list[ReceivedCallback] = []
        self.next_statuses: list[int] = []  # answered in turn, then 200
        self._changed = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                query = dict(parse_qsl(urlsplit(self.path).query))
                with receiver._changed:
                    status = receiver.next_statuses.pop(0) if receiver.next_statuses else 200
                    receiver.received.append(ReceivedCallback(query["hmac"], body, status))
                    receiver._changed.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/payments/webhook"

    def accepted(self) -> list[ReceivedCallback]:
        with self._changed:
            return [c for c in self.received if c.answered == 200]

    def wait_for(self, count: int, timeout: float = 3.0) -> list[ReceivedCallback]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.received) >= count, timeout)
            assert len(self.received) >= count, f"{len(self.received)} of {count} callbacks"
            return list(self.received)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2025, 3, 1, 9, 30, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def receiver():
    receiver = CallbackReceiver()
    yield receiver
    receiver.stop()


def running(config: SimulatorConfig, **kwargs: Any) -> PaymobSimulator:
    simulator = PaymobSimulator(config, **kwargs)
    simulator.start()
    return simulator


# Short waits keep the suite fast; the defaults are for people watching a browser.
FAST = SimulatorConfig(retry_backoff_seconds=0.05, delay_seconds=0.3, callback_timeout_seconds=2.0)


@pytest.fixture
def sim():
    simulator = running(FAST)
    yield simulator
    simulator.stop()


def intention_body(receiver: CallbackReceiver, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "amount": 100000,
        "currency": "EGP",
        "payment_methods": [CONFIG.card_integration_id, CONFIG.wallet_integration_id],
        "items": [{"name": "Data engineering course", "amount": 100000, "quantity": 1}],
        "billing_data": {
            "first_name": "Mona",
            "last_name": "Adel",
            "email": "mona@example.com",
            "phone_number": "+201000000000",
            "street": "NA",
        },
        "extras": {"payment_id": "pay_123", "course_id": "course_9"},
        "special_reference": f"pay_{time.monotonic_ns()}",
        "notification_url": receiver.url,
        "redirection_url": "http://127.0.0.1:9/courses/course_9/payment/result?lang=en",
        "expiration": 900,
    }
    body.update(overrides)
    return body


def post_intention(sim: PaymobSimulator, body: Any, key: str = CONFIG.secret_key):
    return requests.post(
        f"{sim.url}/v1/intention/", json=body, headers={"Authorization": f"Token {key}"}, timeout=5
    )


def create_intention(sim: PaymobSimulator, receiver: CallbackReceiver, **overrides: Any):
    response = post_intention(sim, intention_body(receiver, **overrides))
    assert response.status_code == 201, response.text
    return response.json()


def pay(sim: PaymobSimulator, client_secret: str, expect: int = 200, **fields: str):
    if "wallet_number" not in fields:
        fields.setdefault("card_number", MASTERCARD)
    response = requests.post(
        f"{sim.url}/_sim/pay", json={"client_secret": client_secret, **fields}, timeout=10
    )
    assert response.status_code == expect, response.text
    return response.json()


def set_switches(sim: PaymobSimulator, **switches: Any) -> requests.Response:
    return requests.post(f"{sim.url}/_sim/config", json=switches, timeout=5)


def bearer(sim: PaymobSimulator) -> dict[str, str]:
    response = requests.post(
        f"{sim.url}/api/auth/tokens", json={"api_key": CONFIG.api_key}, timeout=5
    )
    assert response.status_code == 201
    return {"Authorization": f"Bearer {response.json()['token']}"}


def assert_signed(callback: ReceivedCallback) -> None:
    assert callback.hmac == sign_transaction_obj(callback.obj, CONFIG.hmac_secret)


def key_shape(value: Any) -> Any:
    """The nested key structure of a JSON value, ignoring values."""
    if isinstance(value, dict):
        return {key: key_shape(item) for key, item in value.items()}
    return None


# Intention API


def test_creating_an_intention_requires_the_secret_key(sim, receiver):
    body = intention_body(receiver)

    missing = requests.post(f"{sim.url}/v1/intention/", json=body, timeout=5)
    wrong = post_intention(sim, body, key="sim_sk_test_wrong")
    bearer_scheme = requests.post(
        f"{sim.url}/v1/intention/",
        json=body,
        headers={"Authorization": f"Bearer {CONFIG.secret_key}"},
        timeout=5,
    )

    assert [r.status_code for r in (missing, wrong, bearer_scheme)] == [401, 401, 401]
    assert "detail" in wrong.json()
    assert sim.intentions == []


def test_an_invalid_intention_gets_a_message_for_each_field_and_creates_nothing(sim, receiver):
    body = intention_body(
        receiver,
        amount=-5,
        currency="XYZ",
        payment_methods=["card"],
        items=[{"name": "x" * 51, "amount": 10}],
        billing_data={"first_name": "Mona", "email": "not-an-email"},
        notification_url="ftp://example.com/hook",
        expiration=0,
    )

    response = post_intention(sim, body)

    assert response.status_code == 400
    errors = response.json()
    assert set(errors) == {
        "amount",
        "currency",
        "payment_methods",
        "items.0.name",
        "billing_data.last_name",
        "billing_data.email",
        "billing_data.phone_number",
        "notification_url",
        "expiration",
    }
    assert all(isinstance(messages, list) and messages for messages in errors.values())
    assert sim.intentions == []


def test_item_amounts_must_add_up_to_the_intention_amount(sim, receiver):
    items = [{"name": "Course", "amount": 60000}, {"name": "Workbook", "amount": 30000}]

    response = post_intention(sim, intention_body(receiver, items=items))

    assert response.status_code == 400
    assert "90000" in response.json()["items"][0]


def test_an_unknown_integration_id_is_not_found(sim, receiver):
    response = post_intention(sim, intention_body(receiver, payment_methods=[1234567]))

    assert response.status_code == 404
    assert "1234567" in response.json()["detail"]


def test_a_special_reference_cannot_be_reused(sim, receiver):
    create_intention(sim, receiver, special_reference="pay_once")

    again = post_intention(sim, intention_body(receiver, special_reference="pay_once"))

    assert again.status_code == 400
    assert "special_reference" in again.json()


def test_a_created_intention_looks_like_paymobs_and_can_be_retrieved(sim, receiver):
    first = create_intention(sim, receiver)
    second = create_intention(sim, receiver)

    assert first["id"].startswith("pi_test_")
    assert "_csk_" in first["client_secret"]
    assert first["intention_order_id"] == CONFIG.first_order_id
    assert second["intention_order_id"] == first["intention_order_id"] + 1
    assert first["status"] == "intended"
    assert first["intention_detail"]["amount"] == 100000
    assert first["intention_detail"]["currency"] == "EGP"
    assert first["extras"]["creation_extras"] == {"payment_id": "pay_123", "course_id": "course_9"}
    assert [key["integration"] for key in first["payment_keys"]] == list(CONFIG.integration_ids)
    assert first["created"]

    element = f"{sim.url}/v1/intention/element/{CONFIG.public_key}/{first['client_secret']}/"
    retrieved = requests.get(element, timeout=5)
    wrong_key = requests.get(element.replace(CONFIG.public_key, "sim_pk_test_other"), timeout=5)

    assert retrieved.status_code == 200
    assert {k: retrieved.json()[k] for k in ("id", "intention_order_id", "status")} == {
        "id": first["id"],
        "intention_order_id": first["intention_order_id"],
        "status": "intended",
    }
    assert (retrieved.json()["amount"], retrieved.json()["currency"]) == (100000, "EGP")
    assert wrong_key.status_code == 404


# Paying


@pytest.mark.parametrize(
    ("card", "sub_type"),
    [(MASTERCARD, "MasterCard"), ("5123450000000008", "MasterCard"), (VISA, "Visa")],
)
def test_a_sandbox_card_pays_with_a_signed_callback_and_a_signed_redirect(
    sim, receiver, card, sub_type
):
    intention = create_intention(sim, receiver)

    paid = pay(sim, intention["client_secret"], card_number=card)

    [callback] = receiver.wait_for(1)
    assert_signed(callback)
    shape = key_shape(callback.body)
    shape["obj"]["payment_key_claims"]["extra"] = {}  # our extras; the sample had none
    assert shape == key_shape(SAMPLE_CALLBACK)
    obj = callback.obj
    assert obj == paid["transaction"]
    assert obj["success"] is True
    assert obj["amount_cents"] == 100000
    assert obj["order"]["id"] == intention["intention_order_id"]
    assert obj["order"]["merchant_order_id"] == intention["special_reference"]
    assert obj["source_data"] == {
        "pan": card[-4:],
        "type": "card",
        "tenure": None,
        "sub_type": sub_type,
    }
    assert obj["integration_id"] == CONFIG.card_integration_id
    assert obj["payment_key_claims"]["extra"] == {"payment_id": "pay_123", "course_id": "course_9"}
    assert obj["data"]["txn_response_code"] == "APPROVED"

    redirect = urlsplit(paid["redirect_url"])
    assert redirect.path == "/courses/course_9/payment/result"
    verdict, params = check_redirect_query(redirect.query, SECRETS)
    assert verdict is SignatureCheck.VALID
    assert params["order"] == str(intention["intention_order_id"])
    assert params["id"] == str(obj["id"])
    assert params["success"] == "true"
    assert params["merchant_order_id"] == intention["special_reference"]
    assert params["data.message"] == "Approved"
    assert params["lang"] == "en"  # the merchant's own parameter survives
    assert sign_transaction_query(params, CONFIG.hmac_secret) == callback.hmac

    status = requests.get(
        f"{sim.url}/v1/intention/element/{CONFIG.public_key}/{intention['client_secret']}/",
        timeout=5,
    )
    assert status.json()["status"] == "paid"


def test_a_paid_intention_cannot_be_paid_again(sim, receiver):
    intention = create_intention(sim, receiver)
    pay(sim, intention["client_secret"])

    again = pay(sim, intention["client_secret"], expect=409)
    page = requests.get(sim.checkout_url(intention["client_secret"]), timeout=5)

    assert "already" in again["detail"]
    assert page.status_code == 409
    assert len(receiver.wait_for(1)) == 1
    assert len(sim.transactions) == 1


def test_the_decline_card_is_declined_and_the_intention_can_still_be_paid(sim, receiver):
    intention = create_intention(sim, receiver)

    declined = pay(sim, intention["client_secret"], card_number=DECLINE_CARD)
    retried = pay(sim, intention["client_secret"], card_number=MASTERCARD)

    first, second = receiver.wait_for(2)
    assert_signed(first)
    assert_signed(second)
    assert first.obj["success"] is False
    assert first.obj["pending"] is False
    assert first.obj["data"]["txn_response_code"] == "DECLINED"
    assert first.obj["data"]["message"] == "Do not honour"
    verdict, params = check_redirect_query(urlsplit(declined["redirect_url"]).query, SECRETS)
    assert verdict is SignatureCheck.VALID
    assert params["success"] == "false"
    assert params["txn_response_code"] == "DECLINED"
    assert second.obj["success"] is True
    assert second.obj["id"] > first.obj["id"]
    assert second.obj["order"]["id"] == first.obj["order"]["id"]
    assert retried["transaction"]["id"] == second.obj["id"]


@pytest.mark.parametrize(
    ("card", "expiry", "cvv", "reason"),
    [
        ("5555555555554444", "01/39", "123", "sandbox card"),
        (MASTERCARD, "02/30", "123", "expiry"),
        (MASTERCARD, "01/39", "999", "CVV"),
    ],
)
def test_other_cards_and_wrong_card_details_are_declined_with_a_reason(
    sim, receiver, card, expiry, cvv, reason
):
    intention = create_intention(sim, receiver)

    paid = pay(sim, intention["client_secret"], card_number=card, card_expiry=expiry, card_cvv=cvv)

    assert paid["transaction"]["success"] is False
    assert reason in paid["transaction"]["data"]["message"]
    assert receiver.wait_for(1)[0].obj["success"] is False


def test_malformed_card_details_are_refused_without_a_transaction(sim, receiver):
    intention = create_intention(sim, receiver)

    refused = pay(
        sim, intention["client_secret"], expect=400, card_number="abcd", card_expiry="1/2039"
    )

    assert set(refused) == {"card_number", "card_expiry"}
    assert sim.transactions == []
    assert sim.callbacks == []


def test_the_test_wallet_pays_and_a_wrong_pin_is_declined(sim, receiver):
    intention = create_intention(sim, receiver)

    wrong_pin = pay(
        sim, intention["client_secret"], wallet_number="01010101010", wallet_pin="000000"
    )
    paid = pay(sim, intention["client_secret"], wallet_number="01010101010", wallet_pin="123456")

    assert wrong_pin["transaction"]["success"] is False
    obj = paid["transaction"]
    assert obj["success"] is True
    assert obj["integration_id"] == CONFIG.wallet_integration_id
    assert obj["source_data"]["type"] == "wallet"
    assert obj["source_data"]["sub_type"] == "wallet"
    for callback in receiver.wait_for(2):
        assert_signed(callback)


def test_a_method_not_on_the_intention_cannot_be_used(sim, receiver):
    intention = create_intention(sim, receiver, payment_methods=[CONFIG.card_integration_id])

    refused = pay(sim, intention["client_secret"], expect=400, wallet_number="01010101010")

    assert "not enabled" in refused["detail"]


# The hosted checkout page


def test_the_checkout_page_shows_the_amount_and_the_form_ids(sim, receiver):
    intention = create_intention(sim, receiver)

    page = requests.get(sim.checkout_url(intention["client_secret"]), timeout=5)

    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")
    for element_id in (
        "card-number",
        "card-name",
        "card-expiry",
        "card-cvv",
        "pay-button",
        "wallet-number",
        "wallet-pin",
        "wallet-pay-button",
    ):
        assert f'id="{element_id}"' in page.text
    assert "PayMob simulator" in page.text
    assert "1,000.00 EGP" in page.text
    assert '<label for="card-number">' in page.text


def test_the_checkout_page_offers_only_the_intentions_methods(sim, receiver):
    intention = create_intention(sim, receiver, payment_methods=[CONFIG.card_integration_id])

    page = requests.get(sim.checkout_url(intention["client_secret"]), timeout=5)

    assert 'id="card-number"' in page.text
    assert 'id="wallet-number"' not in page.text


def test_submitting_the_checkout_form_pays_and_redirects_the_browser(sim, receiver):
    intention = create_intention(sim, receiver)
    form = {
        "client_secret": intention["client_secret"],
        "public_key": CONFIG.public_key,
        "method": "card",
        "card_name": "Test Account",
        "card_number": "5123 4567 8901 2346",
        "card_expiry": "01/39",
        "card_cvv": "123",
    }

    response = requests.post(
        f"{sim.url}/unifiedcheckout/pay", data=form, allow_redirects=False, timeout=5
    )

    assert response.status_code == 302
    verdict, params = check_redirect_query(urlsplit(response.headers["Location"]).query, SECRETS)
    assert verdict is SignatureCheck.VALID
    assert params["success"] == "true"
    [callback] = receiver.wait_for(1)
    assert callback.obj["id"] == int(params["id"])


def test_the_checkout_form_shows_input_errors_and_keeps_the_card_number(sim, receiver):
    intention = create_intention(sim, receiver)
    form = {
        "client_secret": intention["client_secret"],
        "public_key": CONFIG.public_key,
        "method": "card",
        "card_name": "Test Account",
        "card_number": "5123456789012346",
        "card_expiry": "13/39",
        "card_cvv": "123",
    }

    response = requests.post(f"{sim.url}/unifiedcheckout/pay", data=form, timeout=5)

    assert response.status_code == 400
    assert 'role="alert"' in response.text
    assert "MM/YY" in response.text
    assert 'value="5123456789012346"' in response.text
    assert sim.transactions == []


def test_without_a_redirection_url_the_simulator_shows_the_result(sim, receiver):
    body = intention_body(receiver)
    del body["redirection_url"]
    intention = post_intention(sim, body).json()
    form = {
        "client_secret": intention["client_secret"],
        "public_key": CONFIG.public_key,
        "method": "card",
        "card_name": "Test Account",
        "card_number": DECLINE_CARD,
        "card_expiry": "01/39",
        "card_cvv": "123",
    }

    response = requests.post(f"{sim.url}/unifiedcheckout/pay", data=form, timeout=5)

    assert response.status_code == 200
    assert "Payment declined" in response.text
    assert "Do not honour" in response.text


def test_an_expired_intention_shows_an_error_page_and_cannot_be_paid(receiver):
    clock = FakeClock()
    simulator = running(FAST, clock=clock)
    try:
        intention = create_intention(simulator, receiver, expiration=60)
        clock.now += timedelta(seconds=61)

        page = requests.get(simulator.checkout_url(intention["client_secret"]), timeout=5)
        refused = pay(simulator, intention["client_secret"], expect=410)
        element = requests.get(
            f"{simulator.url}/v1/intention/element/{CONFIG.public_key}/"
            f"{intention['client_secret']}/",
            timeout=5,
        )
    finally:
        simulator.stop()

    assert page.status_code == 410
    assert "expired" in page.text
    assert 'id="card-number"' not in page.text
    assert "expired" in refused["detail"]
    assert element.json()["status"] == "expired"


def test_an_unknown_checkout_link_is_not_found(sim):
    page = requests.get(sim.checkout_url("sim_csk_test_unknown"), timeout=5)

    assert page.status_code == 404
    assert "PayMob simulator" in page.text


# Callback switches and delivery


def test_duplicate_mode_delivers_each_callback_twice(sim, receiver):
    assert set_switches(sim, callback_mode="duplicate").status_code == 200
    intention = create_intention(sim, receiver)

    pay(sim, intention["client_secret"])

    first, second = receiver.wait_for(2)
    assert first.body == second.body
    assert first.hmac == second.hmac
    assert [entry["copy"] for entry in sim.callbacks] == [1, 2]


def test_delay_mode_delivers_after_the_delay(sim, receiver):
    set_switches(sim, callback_mode="delay", delay_seconds=0.3)
    intention = create_intention(sim, receiver)

    started = time.monotonic()
    pay(sim, intention["client_secret"])
    immediately = list(receiver.received)
    [callback] = receiver.wait_for(1)
    waited = time.monotonic() - started

    assert immediately == []
    assert waited >= 0.3
    assert_signed(callback)


def test_reorder_mode_delivers_a_callback_after_the_next_one(sim, receiver):
    set_switches(sim, callback_mode="reorder", delay_seconds=2.0)
    intention = create_intention(sim, receiver)

    pay(sim, intention["client_secret"], card_number=DECLINE_CARD)
    held = list(receiver.received)
    pay(sim, intention["client_secret"], card_number=MASTERCARD)

    first, second = receiver.wait_for(2)
    assert held == []
    assert first.obj["success"] is True
    assert second.obj["success"] is False
    assert first.obj["id"] > second.obj["id"]


def test_reorder_mode_releases_a_lone_callback_after_the_delay(sim, receiver):
    set_switches(sim, callback_mode="reorder", delay_seconds=0.2)
    intention = create_intention(sim, receiver)

    pay(sim, intention["client_secret"])

    [callback] = receiver.wait_for(1)
    assert callback.obj["success"] is True


def test_drop_mode_never_delivers_and_logs_the_callback_as_dropped(sim, receiver):
    set_switches(sim, callback_mode="drop")
    intention = create_intention(sim, receiver)

    paid = pay(sim, intention["client_secret"])

    [entry] = sim.wait_for_callbacks(1)
    assert entry["status"] == "dropped"
    assert entry["transaction_id"] == paid["transaction"]["id"]
    assert entry["attempts"] == []
    time.sleep(0.1)
    assert receiver.received == []


def test_a_failing_webhook_is_retried_until_it_accepts(sim, receiver):
    receiver.next_statuses = [500, 503]
    intention = create_intention(sim, receiver)

    pay(sim, intention["client_secret"])

    [entry] = sim.wait_for_callbacks(1)
    assert entry["status"] == "delivered"
    assert [attempt["status_code"] for attempt in entry["attempts"]] == [500, 503, 200]
    assert len(receiver.accepted()) == 1
    assert len({c.hmac for c in receiver.received}) == 1


def test_a_rejected_callback_is_not_retried(sim, receiver):
    receiver.next_statuses = [401]
    intention = create_intention(sim, receiver)

    pay(sim, intention["client_secret"])

    [entry] = sim.wait_for_callbacks(1)
    assert entry["status"] == "rejected"
    assert len(entry["attempts"]) == 1


def test_an_unreachable_webhook_is_logged_as_failed_and_the_simulator_keeps_serving(sim, receiver):
    with socket.socket() as probe:  # a port nothing listens on once the probe closes
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    dead_url = f"http://127.0.0.1:{closed_port}/webhook"
    intention = create_intention(sim, receiver, notification_url=dead_url)

    pay(sim, intention["client_secret"])

    [entry] = sim.wait_for_callbacks(1)
    assert entry["status"] == "failed"
    assert len(entry["attempts"]) == 1 + CONFIG.callback_retries
    assert all("error" in attempt for attempt in entry["attempts"])
    log = requests.get(f"{sim.url}/_sim/callbacks", timeout=5).json()["callbacks"]
    assert log[0]["status"] == "failed"
    assert requests.get(f"{sim.url}/_sim/config", timeout=5).status_code == 200


# Inquiry


def test_inquiry_needs_a_token_obtained_with_the_api_key(sim, receiver):
    wrong = requests.post(f"{sim.url}/api/auth/tokens", json={"api_key": "nope"}, timeout=5)
    anonymous = requests.get(f"{sim.url}/api/acceptance/transactions/1", timeout=5)
    forged = requests.get(
        f"{sim.url}/api/acceptance/transactions/1",
        headers={"Authorization": "Bearer not-a-token"},
        timeout=5,
    )

    assert [wrong.status_code, anonymous.status_code, forged.status_code] == [401, 401, 401]


def test_inquiry_finds_the_latest_payment_by_order_id_and_merchant_order_id(sim, receiver):
    intention = create_intention(sim, receiver)
    pay(sim, intention["client_secret"], card_number=DECLINE_CARD)
    paid = pay(sim, intention["client_secret"])["transaction"]
    auth = bearer(sim)
    inquiry = f"{sim.url}/api/ecommerce/orders/transaction_inquiry"

    by_order = requests.post(
        inquiry, json={"order_id": intention["intention_order_id"]}, headers=auth, timeout=5
    )
    by_reference = requests.post(
        inquiry,
        json={"merchant_order_id": intention["special_reference"]},
        headers=auth,
        timeout=5,
    )
    by_id = requests.get(
        f"{sim.url}/api/acceptance/transactions/{paid['id']}", headers=auth, timeout=5
    )
    unknown = requests.post(inquiry, json={"order_id": 1}, headers=auth, timeout=5)
    missing = requests.get(f"{sim.url}/api/acceptance/transactions/1", headers=auth, timeout=5)

    assert by_order.status_code == 200
    assert by_order.json() == paid
    assert by_reference.json() == paid
    assert by_id.json() == paid
    assert unknown.status_code == 404
    assert missing.status_code == 404


def test_inquiry_fail_mode_answers_503(sim, receiver):
    intention = create_intention(sim, receiver)
    paid = pay(sim, intention["client_secret"])["transaction"]
    auth = bearer(sim)

    set_switches(sim, inquiry_mode="fail")
    by_id = requests.get(
        f"{sim.url}/api/acceptance/transactions/{paid['id']}", headers=auth, timeout=5
    )
    by_order = requests.post(
        f"{sim.url}/api/ecommerce/orders/transaction_inquiry",
        json={"order_id": intention["intention_order_id"]},
        headers=auth,
        timeout=5,
    )

    assert [by_id.status_code, by_order.status_code] == [503, 503]


# Refunds and voids


def reverse(sim: PaymobSimulator, kind: str, body: dict[str, Any], key: str = CONFIG.secret_key):
    return requests.post(
        f"{sim.url}/api/acceptance/void_refund/{kind}",
        json=body,
        headers={"Authorization": f"Token {key}"},
        timeout=5,
    )


def test_partial_then_full_refund_sends_child_and_parent_callbacks(sim, receiver):
    intention = create_intention(sim, receiver)
    paid = pay(sim, intention["client_secret"])["transaction"]

    unauthorised = reverse(sim, "refund", {"transaction_id": paid["id"], "amount_cents": 1}, "x")
    partial = reverse(sim, "refund", {"transaction_id": paid["id"], "amount_cents": 30000})
    too_much = reverse(sim, "refund", {"transaction_id": paid["id"], "amount_cents": 70001})
    rest = reverse(sim, "refund", {"transaction_id": paid["id"], "amount_cents": 70000})
    nothing_left = reverse(sim, "refund", {"transaction_id": paid["id"], "amount_cents": 1})

    assert unauthorised.status_code == 401
    assert [too_much.status_code, nothing_left.status_code] == [400, 400]
    assert [partial.status_code, rest.status_code] == [200, 200]
    _, child1, parent1, child2, parent2 = receiver.wait_for(5)
    for callback in (child1, parent1, child2, parent2):
        assert_signed(callback)
    assert child1.obj == partial.json()
    for child, amount in ((child1, 30000), (child2, 70000)):
        assert child.obj["has_parent_transaction"] is True
        assert child.obj["is_refund"] is True
        assert child.obj["success"] is True
        assert child.obj["parent_transaction"] == paid["id"]
        assert child.obj["amount_cents"] == amount
        assert child.obj["order"]["id"] == paid["order"]["id"]
    assert child1.obj["id"] != child2.obj["id"] != paid["id"]
    for parent, cumulative in ((parent1, 30000), (parent2, 100000)):
        assert parent.obj["id"] == paid["id"]
        assert parent.obj["is_refunded"] is True
        assert parent.obj["refunded_amount_cents"] == cumulative
        assert parent.obj["amount_cents"] == 100000
    assert parent1.hmac != receiver.received[0].hmac  # the signed state changed


def test_void_sends_child_and_parent_callbacks_and_only_once(sim, receiver):
    intention = create_intention(sim, receiver)
    paid = pay(sim, intention["client_secret"])["transaction"]

    voided = reverse(sim, "void", {"transaction_id": paid["id"]})
    again = reverse(sim, "void", {"transaction_id": paid["id"]})
    refund_after = reverse(sim, "refund", {"transaction_id": paid["id"], "amount_cents": 100})
    unknown = reverse(sim, "void", {"transaction_id": 1})

    assert voided.status_code == 200
    assert [again.status_code, refund_after.status_code, unknown.status_code] == [400, 400, 404]
    _, child, parent = receiver.wait_for(3)
    assert_signed(child)
    assert_signed(parent)
    assert child.obj["is_void"] is True
    assert child.obj["has_parent_transaction"] is True
    assert child.obj["parent_transaction"] == paid["id"]
    assert child.obj["amount_cents"] == paid["amount_cents"]
    assert parent.obj["id"] == paid["id"]
    assert parent.obj["is_voided"] is True


def test_reorder_mode_can_deliver_the_parent_before_the_refund_child(sim, receiver):
    intention = create_intention(sim, receiver)
    paid = pay(sim, intention["client_secret"])["transaction"]
    set_switches(sim, callback_mode="reorder", delay_seconds=2.0)

    reverse(sim, "refund", {"transaction_id": paid["id"], "amount_cents": 100000})

    _, first, second = receiver.wait_for(3)
    assert first.obj["id"] == paid["id"]
    assert first.obj["is_refunded"] is True
    assert second.obj["parent_transaction"] == paid["id"]


def test_a_decline_cannot_be_refunded(sim, receiver):
    intention = create_intention(sim, receiver)
    declined = pay(sim, intention["client_secret"], card_number=DECLINE_CARD)["transaction"]

    response = reverse(sim, "refund", {"transaction_id": declined["id"], "amount_cents": 100})

    assert response.status_code == 400


# Control API, configuration and the standalone process


def test_switches_are_validated_and_reset_restores_the_configured_state(sim, receiver):
    bad = set_switches(sim, callback_mode="sometimes", delay_seconds=-1, colour="red")
    good = set_switches(sim, callback_mode="drop", inquiry_mode="fail")
    intention = create_intention(sim, receiver)
    pay(sim, intention["client_secret"])

    reset = requests.post(f"{sim.url}/_sim/reset", timeout=5)
    after = requests.get(f"{sim.url}/_sim/config", timeout=5).json()
    next_intention = create_intention(sim, receiver)

    assert bad.status_code == 400
    assert set(bad.json()) == {"callback_mode", "delay_seconds", "colour"}
    assert good.json()["callback_mode"] == "drop"
    assert reset.status_code == 200
    assert (after["callback_mode"], after["inquiry_mode"]) == ("normal", "ok")
    assert requests.get(f"{sim.url}/_sim/callbacks", timeout=5).json() == {"callbacks": []}
    assert [i["id"] for i in sim.intentions] == [next_intention["id"]]
    # Order ids keep growing, so an id never names two orders.
    assert next_intention["intention_order_id"] == intention["intention_order_id"] + 1


def test_an_offset_in_timestamps_is_signed_and_percent_encoded(receiver):
    simulator = running(replace(FAST, timezone_offset="+04:00"))
    try:
        intention = create_intention(simulator, receiver)
        paid = pay(simulator, intention["client_secret"])
    finally:
        simulator.stop()

    [callback] = receiver.wait_for(1)
    assert callback.obj["created_at"].endswith("+04:00")
    assert_signed(callback)
    assert "%2B04%3A00" in paid["redirect_url"]
    verdict, params = check_redirect_query(urlsplit(paid["redirect_url"]).query, SECRETS)
    assert verdict is SignatureCheck.VALID
    assert params["created_at"] == callback.obj["created_at"]


def test_config_comes_from_paymob_sim_environment_variables():
    config = SimulatorConfig.from_env(
        {"PAYMOB_SIM_CALLBACK_MODE": "delay", "PAYMOB_SIM_CARD_INTEGRATION_ID": "111"}
    )

    assert (config.callback_mode, config.card_integration_id) == ("delay", 111)
    with pytest.raises(ConfigError):
        SimulatorConfig.from_env({"PAYMOB_SIM_CALLBACK_MODE": "sometimes"})
    with pytest.raises(ConfigError):
        SimulatorConfig.from_env({"PAYMOB_SIM_DELAY_SECONDS": "soon"})


def test_the_module_runs_standalone_until_sigterm():
    env = {**os.environ, "PAYMOB_SIM_CALLBACK_MODE": "duplicate"}
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack.paymob_sim", "--port", "0", "--quiet"],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        url = banner.split(" on ", 1)[1].split(" ", 1)[0]
        switches = requests.get(f"{url}/_sim/config", timeout=5).json()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=5) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    assert switches["callback_mode"] == "duplicate"
