"""The callback service against in-memory ports: every answer, and what it writes (or not)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from coursepay.domain.payment import PaymentFlag, PaymentStatus
from coursepay.domain.records import EventKind
from coursepay.domain.signature import HmacSecrets, sign_token_obj
from coursepay.services.abuse import BadSignatureLimiter
from coursepay.services.callbacks import CallbackResult, CallbackService
from coursepay.storage.errors import TransientStorageError
from tests.support.builders import a_payment
from tests.support.callbacks import (
    EVENTS,
    PREVIOUS_HMAC_SECRET,
    TEST_HMAC_SECRET,
    declined_callback,
    encode,
    sign,
    transaction_callback,
)
from tests.support.fakes import InMemoryPaymentStore, RecordingQueue

ORDER = 217503754
AMOUNT = 100000


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def store() -> InMemoryPaymentStore:
    return InMemoryPaymentStore(
        a_payment(payment_id="pay-1", paymob_order_id=str(ORDER), amount_cents=AMOUNT),
        a_payment(payment_id="pay-2", paymob_order_id="999", amount_cents=AMOUNT),
    )


@pytest.fixture
def queue() -> RecordingQueue:
    return RecordingQueue()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def service(store: InMemoryPaymentStore, queue: RecordingQueue, clock: Clock) -> CallbackService:
    secrets = HmacSecrets(TEST_HMAC_SECRET, PREVIOUS_HMAC_SECRET)
    return CallbackService(
        store,
        queue,
        lambda: secrets,
        BadSignatureLimiter(limit=3, window_seconds=60),
        monotonic=clock,
    )


def deliver(
    service: CallbackService, body: dict[str, Any], hmac: str | None = "", ip: str = "1.2.3.4"
):
    signature = sign(body) if hmac == "" else hmac
    return service.receive(encode(body), signature, ip)


def test_success_callback_pays_the_payment_found_by_its_signed_order(service, store):
    outcome = deliver(service, transaction_callback(merchant_order_id="pay-1"))

    assert (outcome.result, outcome.http_status, outcome.payment_id) == (
        CallbackResult.ACCEPTED,
        200,
        "pay-1",
    )
    paid = store.payments["pay-1"]
    assert paid.status is PaymentStatus.PAID
    assert paid.paymob_transaction_id == "192036465"
    assert paid.card is not None and paid.card.last4 == "2346"
    assert store.claims == {"192036465": "pay-1"}
    [event] = store.events_under("pay-1")
    assert (event.kind, event.status_before, event.status_after) == (
        EventKind.CALLBACK,
        "PENDING",
        "PAID",
    )
    assert "billing_data" not in json.dumps(event.payload)


def test_the_same_callback_twice_changes_nothing_the_second_time(service, store):
    body = transaction_callback()
    deliver(service, body)
    version = store.payments["pay-1"].version

    again = deliver(service, body)

    assert again.result is CallbackResult.DUPLICATE and again.http_status == 200
    assert store.payments["pay-1"].version == version


def test_secret_from_before_a_rotation_is_still_accepted(service, store):
    body = transaction_callback()

    outcome = deliver(service, body, hmac=sign(body, PREVIOUS_HMAC_SECRET))

    assert outcome.result is CallbackResult.ACCEPTED


@pytest.mark.parametrize(
    ("hmac", "why"),
    [(None, "missing"), ("", "malformed"), ("ab" * 64, "mismatch"), ("zz" * 64, "malformed")],
)
def test_bad_signatures_get_401_and_write_nothing(service, store, hmac, why):
    outcome = service.receive(encode(transaction_callback()), hmac, "1.2.3.4")

    assert outcome.http_status == 401 and why in outcome.message
    assert store.writes == 0


def test_a_tampered_signed_field_is_refused(service, store):
    body = transaction_callback()
    signature = sign(body)
    body["obj"]["amount_cents"] = 1

    outcome = deliver(service, body, hmac=signature)

    assert outcome.http_status == 401 and store.writes == 0


def test_a_source_flooding_bad_signatures_gets_429_until_its_window_ends(service, store, clock):
    body = transaction_callback()
    for _ in range(3):
        assert deliver(service, body, hmac="ab" * 64).http_status == 401

    assert deliver(service, body).http_status == 429  # even a good one, from that source
    assert deliver(service, body, ip="5.6.7.8").http_status == 200  # others are unaffected
    clock.now += 61
    assert deliver(service, body).result is CallbackResult.DUPLICATE


@pytest.mark.parametrize(
    ("raw", "status", "fragment"),
    [
        (b"\xff\xfe not utf-8", 400, "UTF-8"),
        (b"{not json", 400, "JSON"),
        (b"[1, 2]", 400, "object"),
        (b'{"obj": {}}', 400, "type"),
        (b'{"type": "TRANSACTION"}', 400, "obj"),
        (b"{" + b" " * (64 * 1024) + b"}", 413, "64"),
    ],
)
def test_malformed_bodies_are_refused_before_anything_is_written(
    service, store, raw, status, fragment
):
    outcome = service.receive(raw, "ab" * 64, "1.2.3.4")

    assert outcome.http_status == status and fragment in outcome.message
    assert store.writes == 0


@pytest.mark.parametrize("field", ["amount_cents", "success", "order", "source_data", "id"])
def test_a_callback_missing_a_field_paymob_always_sends_names_it(service, store, field):
    body = transaction_callback()
    del body["obj"][field]

    outcome = deliver(service, body)

    assert outcome.http_status == 400 and f"obj.{field}" in outcome.message
    assert store.writes == 0


def test_unknown_extra_fields_are_allowed(service, store):
    outcome = deliver(service, transaction_callback(brand_new_paymob_field={"x": 1}))

    assert outcome.result is CallbackResult.ACCEPTED


def test_a_callback_for_an_unknown_order_is_kept_as_an_orphan(service, store):
    outcome = deliver(service, transaction_callback(order_id=123456))

    assert outcome.result is CallbackResult.ORPHAN and outcome.http_status == 200
    [orphan] = store.events_under("ORPHAN#123456")
    assert orphan.kind is EventKind.ORPHAN
    assert all(p.status is PaymentStatus.PENDING for p in store.payments.values())


def test_merchant_order_id_is_never_a_lookup_key(service, store):
    # A genuine callback for pay-1, replayed with pay-2's reference in the unsigned field.
    body = transaction_callback(merchant_order_id="pay-1")
    deliver(service, body)
    body["obj"]["order"]["merchant_order_id"] = "pay-2"

    outcome = deliver(service, body)

    assert outcome.result is CallbackResult.DUPLICATE
    assert store.payments["pay-2"].status is PaymentStatus.PENDING


def test_a_disagreeing_merchant_reference_is_flagged(service, store):
    outcome = deliver(service, transaction_callback(merchant_order_id="pay-2"))

    assert outcome.result is CallbackResult.ACCEPTED
    assert PaymentFlag.MERCHANT_REFERENCE_MISMATCH in store.payments["pay-1"].flags


def test_a_transaction_settles_at_most_one_payment(service, store):
    deliver(service, transaction_callback())
    # The same PayMob transaction presented as settling another order (pay-2's).
    outcome = deliver(service, transaction_callback(order_id=999))

    assert outcome.result is CallbackResult.REJECTED and outcome.http_status == 200
    assert store.payments["pay-2"].status is PaymentStatus.PENDING
    assert store.events_under("pay-2")[0].kind is EventKind.REJECTED


def test_a_signed_amount_that_differs_from_the_payment_goes_under_review(service, store):
    outcome = deliver(service, transaction_callback(amount_cents=AMOUNT - 1))

    assert outcome.result is CallbackResult.ACCEPTED
    payment = store.payments["pay-1"]
    assert payment.status is PaymentStatus.UNDER_REVIEW
    assert PaymentFlag.AMOUNT_MISMATCH in payment.flags


def test_decline_then_success_ends_paid_and_flagged_late(service, store):
    deliver(service, declined_callback())
    deliver(service, transaction_callback())

    payment = store.payments["pay-1"]
    assert payment.status is PaymentStatus.PAID
    assert PaymentFlag.LATE_SUCCESS in payment.flags


def test_success_then_decline_stays_paid(service, store):
    deliver(service, transaction_callback())
    outcome = deliver(service, declined_callback())

    assert outcome.result is CallbackResult.RECORDED
    assert store.payments["pay-1"].status is PaymentStatus.PAID
    assert len(store.events_under("pay-1")) == 2  # the decline is recorded, and ignored


def test_a_concurrent_update_is_retried_against_the_fresh_payment(service, store):
    from coursepay.storage.errors import StalePayment

    store.fail_next_writes(StalePayment("pay-1", 1, None))

    outcome = deliver(service, transaction_callback())

    assert outcome.result is CallbackResult.ACCEPTED
    assert store.payments["pay-1"].status is PaymentStatus.PAID


def test_a_transient_failure_queues_the_verified_callback_and_answers_200(service, store, queue):
    store.fail_next_writes(TransientStorageError("throttled"))
    body = transaction_callback()

    outcome = deliver(service, body)

    assert outcome.result is CallbackResult.QUEUED and outcome.http_status == 200
    [message] = queue.messages
    queued = json.loads(message["body"])
    assert queued["obj"]["id"] == body["obj"]["id"] and message["hmac"] == sign(body)
    assert sign(queued) == sign(body)  # the signed fields travel unchanged
    assert store.payments["pay-1"].status is PaymentStatus.PENDING

    applied = service.reprocess(message)

    assert applied.result is CallbackResult.ACCEPTED
    after_retry = store.payments["pay-1"]
    assert after_retry.status is PaymentStatus.PAID


def test_when_even_the_queue_fails_paymob_gets_a_5xx(store, clock):
    broken = CallbackService(
        store,
        RecordingQueue(broken=True),
        lambda: HmacSecrets(TEST_HMAC_SECRET),
        BadSignatureLimiter(3, 60),
        monotonic=clock,
    )
    store.fail_next_writes(TransientStorageError("throttled"))

    outcome = deliver(broken, transaction_callback())

    assert outcome.http_status == 503


def test_a_queued_message_whose_signature_no_longer_verifies_is_refused(service, store):
    body = transaction_callback()
    message = {"kind": "paymob-callback", "body": json.dumps(body), "hmac": "ab" * 64}

    outcome = service.reprocess(message)

    assert outcome.http_status == 401 and store.writes == 0


def test_token_callbacks_are_verified_and_stored_without_the_token(service, store):
    body = json.loads((EVENTS / "token_callback.json").read_text())
    signature = sign_token_obj(body["obj"], TEST_HMAC_SECRET)

    outcome = service.receive(encode(body), signature, "1.2.3.4")

    assert outcome.result is CallbackResult.RECORDED
    [event] = store.events_under("UNLINKED#TOKEN")
    assert body["obj"]["token"] not in json.dumps(event.model_dump())
    assert all(p.status is PaymentStatus.PENDING for p in store.payments.values())


def test_a_forged_token_callback_is_refused(service, store):
    body = json.loads((EVENTS / "token_callback.json").read_text())

    outcome = service.receive(encode(body), "ab" * 64, "1.2.3.4")

    assert outcome.http_status == 401 and store.writes == 0


def test_other_callback_types_are_acknowledged_and_never_act_on_payments(service, store):
    body = {"type": "DELIVERY_STATUS", "obj": {"order_id": ORDER, "status": "delivered"}}

    first = service.receive(encode(body), None, "1.2.3.4")
    second = service.receive(encode(body), None, "1.2.3.4")

    assert (first.result, second.result) == (CallbackResult.RECORDED, CallbackResult.DUPLICATE)
    [event] = store.events_under("UNLINKED#DELIVERY_STATUS")
    assert event.payload["verified"] is False and "delivered" not in json.dumps(event.payload)
    assert all(p.status is PaymentStatus.PENDING for p in store.payments.values())


def test_a_signed_value_in_a_non_canonical_form_is_refused(service, store):
    # Signed over "0302852": parsed as 302852, the digits could be shifted between fields.
    body = transaction_callback(owner="0302852")

    outcome = deliver(service, body)

    assert outcome.http_status == 400
    assert "canonical" in outcome.message
    assert store.writes == 0


def test_when_the_secret_cannot_be_read_the_callback_gets_503_and_nothing_is_written(store, clock):
    def unavailable():
        raise ConnectionError("secrets manager unreachable")

    service = CallbackService(
        store, RecordingQueue(), unavailable, BadSignatureLimiter(3, 60), monotonic=clock
    )

    outcome = deliver(service, transaction_callback())

    assert outcome.http_status == 503
    assert store.writes == 0


def test_a_token_callback_that_cannot_be_stored_gets_503(service, store, monkeypatch):
    body = json.loads((EVENTS / "token_callback.json").read_text())

    def broken(event):
        raise TransientStorageError("throttled")

    monkeypatch.setattr(store, "record_event", broken)

    outcome = service.receive(
        encode(body), sign_token_obj(body["obj"], TEST_HMAC_SECRET), "1.2.3.4"
    )

    assert outcome.http_status == 503


def test_a_queued_callback_keeps_no_billing_data_and_still_verifies(service, store, queue):
    store.fail_next_writes(TransientStorageError("throttled"))
    body = transaction_callback()
    body["obj"]["billing_data"] = {"email": "student@example.com", "phone_number": "+201000000000"}

    deliver(service, body)

    [message] = queue.messages
    assert "student@example.com" not in message["body"]
    assert "payment_key_claims" not in message["body"]
    assert service.reprocess(message).result is CallbackResult.ACCEPTED
