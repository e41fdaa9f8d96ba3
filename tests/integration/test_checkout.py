"""The checkout function against moto and the PayMob simulator: catalogue, checkout, every error."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, cast

import pytest

from coursepay.domain.payment import PaymentStatus
from coursepay.domain.records import EnrollmentStatus, EventKind
from coursepay.domain.state_machine import decide
from coursepay.paymob.client import Intention, PaymobRejected
from coursepay.services.checkout import (
    CheckoutFailed,
    CheckoutRequest,
    CheckoutService,
    CheckoutSettings,
    Student,
    keyed_payment_id,
)
from coursepay.services.inquiry import PaymentInquiry
from coursepay.storage.catalog import CourseRepository, EnrollmentRepository
from coursepay.storage.payments import PaymentRepository
from tests.support.aws import a_course
from tests.support.builders import a_payment, declined_fact
from tests.support.events import http_event, json_body, student_claims
from tests.support.payments_api import (
    PUBLIC_BASE_URL,
    SIMULATOR,
    STUDENT,
    checkout_event,
    function,
    paymob,
    paymob_secret,
)

__all__ = ["function", "paymob", "paymob_secret"]  # fixtures

COURSE = "course-python-101"


@pytest.fixture
def checkout(function):
    return function("CheckoutFunction", PUBLIC_BASE_URL=PUBLIC_BASE_URL)


def checkout_request(course_id: str = COURSE, student: str = STUDENT, key: str | None = None):
    return checkout_event(course_id, student, key)


def stored_payments(payments, student: str = STUDENT):
    return payments.list_by_student(student, limit=50).items


def error_code(response) -> str:
    return str(json_body(response)["error"]["code"])


# --- the catalogue -------------------------------------------------------------------------


def test_signed_in_users_see_the_active_courses_with_their_price(checkout, store):
    store.course(a_course(course_id="c-omr", title="Arabic", price_cents=4_500, currency="OMR"))
    store.course(a_course(course_id="c-old", title="Retired", active=False))
    store.course()

    response = checkout(http_event("GET", "/api/courses", claims=student_claims(STUDENT)))

    assert response["statusCode"] == 200
    assert json_body(response) == {
        "courses": [
            {"course_id": "c-omr", "title": "Arabic", "price_cents": 4_500, "currency": "OMR"},
            {"course_id": COURSE, "title": "Python 101", "price_cents": 150_000, "currency": "EGP"},
        ]
    }


def test_the_catalogue_needs_a_signed_in_user(checkout, store):
    store.course()

    response = checkout(http_event("GET", "/api/courses"))

    assert (response["statusCode"], error_code(response)) == (401, "unauthorized")


# --- the happy path ------------------------------------------------------------------------


def test_checkout_creates_a_pending_payment_and_a_paymob_intention(
    checkout, store, payments, paymob
):
    store.course()

    response = checkout(checkout_request())

    assert response["statusCode"] == 201
    body = json_body(response)
    assert body["status"] == "PENDING"
    (payment,) = stored_payments(payments)
    (intention,) = paymob.intentions
    assert body == {
        "payment_id": payment.payment_id,
        "status": "PENDING",
        "checkout_url": (
            f"{paymob.url}/unifiedcheckout/?publicKey={SIMULATOR.public_key}"
            f"&clientSecret={intention['client_secret']}"
        ),
        "expires_at": payment.expires_at,
    }
    assert payment.status is PaymentStatus.PENDING
    assert (payment.amount_cents, payment.currency) == (150_000, "EGP")
    assert payment.paymob_intention_id == intention["id"]
    assert payment.paymob_order_id == str(intention["intention_order_id"])
    assert payment.checkout_url == body["checkout_url"]
    assert payment.integration_ids == (SIMULATOR.card_integration_id,)


def test_the_intention_carries_the_course_the_student_and_our_public_urls(
    checkout, store, payments, paymob
):
    store.course()

    checkout(checkout_request())

    (payment,) = stored_payments(payments)
    (intention,) = paymob.intentions
    request = paymob.account.intentions()[0].request
    assert (request.amount, request.currency) == (150_000, "EGP")
    assert request.payment_methods == (SIMULATOR.card_integration_id,)
    assert request.items == (
        {"name": "Python 101", "amount": 150_000, "description": "Python 101", "quantity": 1},
    )
    assert {k: request.billing_data[k] for k in ("first_name", "last_name", "email")} == {
        "first_name": "Salma",
        "last_name": "Hassan",
        "email": f"{STUDENT}@students.courses.example",
    }
    assert request.billing_data["phone_number"] == "+201000000001"
    assert request.special_reference == payment.payment_id
    assert request.extras == {"payment_id": payment.payment_id, "course_id": COURSE}
    assert intention["notification_url"] == f"{PUBLIC_BASE_URL}/api/payments/webhook"
    assert intention["redirection_url"] == f"{PUBLIC_BASE_URL}/courses/{COURSE}/payment/result"
    assert request.expiration == 3600


def test_unknown_billing_details_are_sent_as_na(checkout, store, paymob):
    store.course()
    event = checkout_request()
    claims = event["requestContext"]["authorizer"]["jwt"]["claims"]
    for name in ("given_name", "family_name", "phone_number"):
        claims.pop(name)

    assert checkout(event)["statusCode"] == 201

    billing = paymob.account.intentions()[0].request.billing_data
    assert (billing["first_name"], billing["last_name"], billing["phone_number"]) == (
        "NA",
        "NA",
        "NA",
    )


def test_a_long_title_is_cut_to_paymobs_fifty_characters(checkout, store, paymob):
    title = "Data engineering with Python, SQL and the cloud — the complete course"
    store.course(title=title)

    response = checkout(checkout_request())

    assert response["statusCode"] == 201
    (item,) = paymob.account.intentions()[0].request.items
    assert item["name"] == title[:50]


def test_an_omani_course_is_sent_in_baisa_as_priced(checkout, store, paymob, payments):
    store.course(price_cents=4_500, currency="OMR")

    assert checkout(checkout_request())["statusCode"] == 201

    request = paymob.account.intentions()[0].request
    assert (request.amount, request.currency) == (4_500, "OMR")
    assert stored_payments(payments)[0].amount_cents == 4_500


def test_without_a_public_base_url_paymob_is_sent_the_apis_own_url(function, store, paymob):
    checkout = function("CheckoutFunction", PUBLIC_BASE_URL="")
    store.course()
    event = checkout_request()

    assert checkout(event)["statusCode"] == 201

    (intention,) = paymob.intentions
    own = f"https://{event['requestContext']['domainName']}"
    assert intention["notification_url"] == f"{own}/api/payments/webhook"


# --- refusals ------------------------------------------------------------------------------


def test_an_unknown_course_is_not_found_and_nothing_is_created(checkout, payments, paymob):
    response = checkout(checkout_request("no-such-course"))

    assert (response["statusCode"], error_code(response)) == (404, "course_not_found")
    assert stored_payments(payments) == []
    assert paymob.intentions == []


def test_an_inactive_course_is_not_found(checkout, store, payments):
    store.course(active=False)

    response = checkout(checkout_request())

    assert (response["statusCode"], error_code(response)) == (404, "course_not_found")
    assert stored_payments(payments) == []


def test_a_student_already_enrolled_is_refused(checkout, store, payments, paymob):
    store.course()
    store.enrollment(student_id=STUDENT, course_id=COURSE)

    response = checkout(checkout_request())

    assert (response["statusCode"], error_code(response)) == (409, "already_enrolled")
    assert stored_payments(payments) == []
    assert paymob.intentions == []


@pytest.mark.parametrize(
    "status",
    [PaymentStatus.PAID, PaymentStatus.PARTIALLY_REFUNDED, PaymentStatus.UNDER_REVIEW],
)
def test_a_student_who_paid_but_is_not_enrolled_yet_is_not_charged_twice(
    checkout, store, payments, paymob, status
):
    # Given a payment that covers the course while its enrolment is still on its way (or an
    # admin reviews it)
    store.course()
    store.payment(payment_id="pay-covering", student_id=STUDENT, course_id=COURSE, status=status)

    # When the student presses "buy" again
    response = checkout(checkout_request())

    # Then no second payment is opened
    assert (response["statusCode"], error_code(response)) == (409, "already_paid")
    assert [p.payment_id for p in stored_payments(payments)] == ["pay-covering"]
    assert paymob.intentions == []


def test_a_student_whose_enrolment_was_revoked_can_buy_again(checkout, store):
    store.course()
    store.enrollment(student_id=STUDENT, course_id=COURSE, status=EnrollmentStatus.REVOKED)

    assert checkout(checkout_request())["statusCode"] == 201


def test_checkout_needs_a_signed_in_student(checkout, store):
    store.course()
    event = checkout_request()
    del event["requestContext"]["authorizer"]

    response = checkout(event)

    assert (response["statusCode"], error_code(response)) == (401, "unauthorized")


# --- one live payment per student and course -----------------------------------------------


def test_a_second_checkout_reuses_the_live_pending_payment(checkout, store, payments, paymob):
    store.course()
    first = json_body(checkout(checkout_request()))

    response = checkout(checkout_request())

    assert response["statusCode"] == 200
    assert json_body(response) == first
    assert len(stored_payments(payments)) == 1
    assert len(paymob.intentions) == 1


def test_a_pending_payment_about_to_expire_is_not_offered_again(checkout, store, payments):
    store.course()
    now = datetime.now(UTC)
    store.payment(
        a_payment(
            payment_id="pay_old",
            student_id=STUDENT,
            created_at=(now - timedelta(minutes=58)).isoformat(),
            expires_at=(now + timedelta(minutes=2)).isoformat(),
            checkout_url="https://accept.paymob.com/unifiedcheckout/?clientSecret=old",
        )
    )

    response = checkout(checkout_request())

    assert response["statusCode"] == 201
    assert json_body(response)["payment_id"] != "pay_old"


def test_a_checkout_racing_one_still_opening_is_told_so_not_given_a_second_page(
    checkout, store, payments, paymob
):
    # Given another request of the student's holds the course's open checkout, its PayMob
    # page not opened yet (the index that finds live payments has not caught up either)
    store.course()
    now = datetime.now(UTC)
    opening = store.payment(
        a_payment(
            payment_id="pay_opening",
            student_id=STUDENT,
            created_at=now.isoformat(),
            expires_at=(now + timedelta(hours=1)).isoformat(),
            checkout_url=None,
        )
    )
    payments.claim_open_checkout(
        STUDENT, COURSE, opening.payment_id, opening.expires_at, now.isoformat()
    )

    # When a second checkout comes in
    response = checkout(checkout_request())

    # Then it opens no second PayMob page
    assert (response["statusCode"], error_code(response)) == (409, "checkout_in_progress")
    assert paymob.intentions == []


def test_a_checkout_held_by_a_failed_payment_opens_a_new_one(checkout, store, payments):
    store.course()
    now = datetime.now(UTC)
    failed = store.payment(
        a_payment(payment_id="pay_failed", student_id=STUDENT, status=PaymentStatus.FAILED)
    )
    payments.claim_open_checkout(
        STUDENT, COURSE, failed.payment_id, (now + timedelta(hours=1)).isoformat(), now.isoformat()
    )

    response = checkout(checkout_request())

    assert response["statusCode"] == 201
    assert json_body(response)["payment_id"] != "pay_failed"


def test_simultaneous_checkouts_open_one_paymob_page(checkout, store, payments, paymob):
    store.course()

    with ThreadPoolExecutor(max_workers=4) as pool:
        responses = list(pool.map(lambda _: checkout(checkout_request()), range(4)))

    opened = [json_body(r)["payment_id"] for r in responses if r["statusCode"] in (200, 201)]
    assert {r["statusCode"] for r in responses} <= {200, 201, 409}
    assert len(set(opened)) == 1
    assert len(paymob.intentions) == 1


def test_a_pending_payment_for_another_course_is_not_reused(checkout, store, payments):
    store.course()
    store.course(course_id="course-sql", title="SQL")
    other = json_body(checkout(checkout_request("course-sql")))

    response = checkout(checkout_request())

    assert response["statusCode"] == 201
    assert json_body(response)["payment_id"] != other["payment_id"]


# --- Idempotency-Key -----------------------------------------------------------------------


def test_a_replayed_idempotency_key_answers_the_same_payment(checkout, store, payments, paymob):
    store.course()
    first = checkout(checkout_request(key="7c0d5e1a-order-1"))

    replay = checkout(checkout_request(key="7c0d5e1a-order-1"))

    assert first["statusCode"] == 201
    assert replay["statusCode"] == 200
    assert replay["headers"]["idempotent-replayed"] == "true"
    assert json_body(replay) == json_body(first)
    assert json_body(first)["payment_id"] == keyed_payment_id(STUDENT, "7c0d5e1a-order-1")
    assert len(stored_payments(payments)) == 1
    assert len(paymob.intentions) == 1


def test_a_replay_answers_the_payment_as_it_is_now_even_once_enrolled(checkout, store, payments):
    store.course()
    first = json_body(checkout(checkout_request(key="k-1")))
    store.enrollment(student_id=STUDENT, course_id=COURSE, payment_id=first["payment_id"])

    replay = checkout(checkout_request(key="k-1"))

    assert replay["statusCode"] == 200
    assert json_body(replay)["payment_id"] == first["payment_id"]


def test_a_key_answered_with_a_reused_payment_keeps_answering_that_payment(
    checkout, store, payments, paymob
):
    # Given a key first answered with the student's already open payment
    store.course()
    opened = json_body(checkout(checkout_request()))
    reused = checkout(checkout_request(key="k-reuse"))
    assert json_body(reused)["payment_id"] == opened["payment_id"]

    # When that payment is declined, and the client retries with the same key
    pending = payments.get(opened["payment_id"])
    assert pending is not None
    payments.save(decide(pending, declined_fact(), datetime.now(UTC).isoformat()), None)
    retried = checkout(checkout_request(key="k-reuse"))

    # Then the key still answers that one payment: no second page behind the client's back
    assert retried["statusCode"] == 200
    assert retried["headers"]["idempotent-replayed"] == "true"
    assert json_body(retried)["payment_id"] == opened["payment_id"]
    assert len(paymob.intentions) == 1


def test_an_idempotency_key_reused_for_another_course_is_refused(checkout, store, payments):
    store.course()
    store.course(course_id="course-sql", title="SQL")
    checkout(checkout_request(key="k-1"))

    response = checkout(checkout_request("course-sql", key="k-1"))

    assert (response["statusCode"], error_code(response)) == (422, "idempotency_key_reused")
    assert len(stored_payments(payments)) == 1


def test_the_same_key_from_another_student_is_another_checkout(checkout, store, payments):
    store.course()
    mine = json_body(checkout(checkout_request(key="k-1")))

    theirs = checkout(checkout_request(student="student-other", key="k-1"))

    assert theirs["statusCode"] == 201
    assert json_body(theirs)["payment_id"] != mine["payment_id"]


@pytest.mark.parametrize("key", ["", "has space", "é", "x" * 256])
def test_a_malformed_idempotency_key_is_a_bad_request(checkout, store, payments, key):
    store.course()

    response = checkout(checkout_request(key=key))

    assert (response["statusCode"], error_code(response)) == (400, "invalid_idempotency_key")
    assert stored_payments(payments) == []


# --- PayMob refuses or is down: FAILED, a clear 502, no PENDING left ------------------------


def assert_failed_without_pending(payments, response, reason: str) -> None:
    assert (response["statusCode"], error_code(response)) == (502, "payment_provider_error")
    (payment,) = stored_payments(payments)
    assert payment.status is PaymentStatus.FAILED
    assert payment.failure_reason == reason
    assert payment.paymob_order_id is None
    assert payment.payment_id in json_body(response)["error"]["message"]
    (audit,) = [e for e in payments.events_for(payment.payment_id) if e.kind is EventKind.AUDIT]
    assert (audit.source, audit.actor, audit.status_before, audit.status_after) == (
        "CHECKOUT",
        "checkout",
        "PENDING",
        "FAILED",
    )


def test_a_checkout_paymob_refuses_fails_the_payment(function, store, payments):
    checkout = function("CheckoutFunction", PAYMOB_INTEGRATION_IDS="999")  # unknown to PayMob
    store.course()

    response = checkout(checkout_request())

    assert_failed_without_pending(
        payments, response, "the payment provider refused the checkout (HTTP 404)"
    )


def test_a_checkout_while_paymob_is_down_fails_the_payment(function, store, payments, paymob):
    checkout = function("CheckoutFunction", PAYMOB_BASE_URL=paymob.url)
    paymob.stop()
    store.course()

    response = checkout(checkout_request())

    assert_failed_without_pending(payments, response, "the payment provider is unavailable")


def test_a_checkout_that_cannot_read_its_paymob_secret_fails_the_payment(function, store, payments):
    checkout = function("CheckoutFunction", PAYMOB_SECRET_NAME="course-payments/dev/missing")
    store.course()

    response = checkout(checkout_request())

    assert_failed_without_pending(payments, response, "the checkout could not be opened")


def test_a_price_change_opens_a_new_payment_at_the_new_price(checkout, store, payments):
    store.course(price_cents=150_000)
    first = json_body(checkout(checkout_request()))
    store.course(price_cents=120_000)

    response = checkout(checkout_request())

    assert response["statusCode"] == 201
    assert json_body(response)["payment_id"] != first["payment_id"]
    newest = payments.get(json_body(response)["payment_id"])
    assert newest is not None
    assert newest.amount_cents == 120_000


def test_a_replayed_key_of_a_failed_checkout_answers_the_same_failure(function, store, payments):
    checkout = function("CheckoutFunction", PAYMOB_INTEGRATION_IDS="999")
    store.course()
    first = checkout(checkout_request(key="k-1"))

    replay = checkout(checkout_request(key="k-1"))

    assert replay["statusCode"] == first["statusCode"] == 502
    assert json_body(replay) == json_body(first)
    assert len(stored_payments(payments)) == 1
    # The key stays bound to the FAILED payment: the answer says a retry needs a new key
    assert json_body(replay)["error"]["message"].endswith("try again with a new Idempotency-Key")


def test_a_new_key_after_a_failed_checkout_opens_a_new_payment(function, store, payments):
    store.course()
    function("CheckoutFunction", PAYMOB_INTEGRATION_IDS="999")(checkout_request(key="k-1"))

    response = function("CheckoutFunction")(checkout_request(key="k-2"))

    assert response["statusCode"] == 201
    assert sorted(str(p.status) for p in stored_payments(payments)) == ["FAILED", "PENDING"]


def test_a_failed_checkout_does_not_block_the_next_one(function, store, payments):
    store.course()
    function("CheckoutFunction", PAYMOB_INTEGRATION_IDS="999")(checkout_request())
    checkout = function("CheckoutFunction")

    response = checkout(checkout_request())

    assert response["statusCode"] == 201
    statuses = sorted(str(p.status) for p in stored_payments(payments))
    assert statuses == ["FAILED", "PENDING"]


class EchoingRefusal:
    """A gateway PayMob refuses with a 400 that echoes the billing data it was sent."""

    def create_intention(self, body: dict[str, Any]) -> Intention:
        billing = body["billing_data"]
        raise PaymobRejected(
            400,
            {
                "billing_data": {
                    "email": ["Enter a valid email address."],
                    "phone_number": [f"{billing['phone_number']!r} is not a valid phone number."],
                    "first_name": billing["first_name"],
                },
                "customer": dict(body["customer"]),
                "detail": f"rejected {billing['first_name']} {billing['last_name']}",
            },
        )

    def checkout_url(self, client_secret: str) -> str:
        raise AssertionError("no checkout is opened")


def test_a_refusal_echoing_billing_data_is_audited_and_logged_without_it(aws, store, caplog):
    payments = PaymentRepository(aws.payments_table, aws.webhooks_table, client=aws.dynamodb)
    gateway = EchoingRefusal()
    service = CheckoutService(
        payments=payments,
        courses=CourseRepository(aws.courses_table, client=aws.dynamodb),
        enrollments=EnrollmentRepository(
            aws.enrollments_table, aws.courses_table, aws.payments_table, client=aws.dynamodb
        ),
        paymob=gateway,
        inquiry=PaymentInquiry(cast(Any, gateway), cast(Any, None)),
        settings=CheckoutSettings(integration_ids=(4_097_558,), expiration_seconds=3600),
    )
    store.course()
    student = Student(
        STUDENT, "Nour", "El-Sherif", "nour.elsherif@mail.example", phone_number="01001234567"
    )

    with pytest.raises(CheckoutFailed):
        service.checkout(CheckoutRequest(student, COURSE, PUBLIC_BASE_URL))

    (payment,) = stored_payments(payments)
    (audit,) = [e for e in payments.events_for(payment.payment_id) if e.kind is EventKind.AUDIT]
    assert audit.payload == {
        "error": "PaymobRejected",
        "status": 400,
        "details": {
            "billing_data": {
                "email": ["Enter a valid email address."],
                "phone_number": ["'<redacted>' is not a valid phone number."],
                "first_name": "<redacted>",
            },
            "customer": {
                "first_name": "<redacted>",
                "last_name": "<redacted>",
                "email": "<redacted>",
            },
            "detail": "rejected <redacted> <redacted>",
        },
    }
    (logged,) = [r for r in caplog.records if r.getMessage() == "checkout failed"]
    text = str(logged.__dict__).lower()
    assert "enter a valid email address." in text
    assert not [v for v in ("nour", "sherif", "mail.example", "1001234567") if v in text]
