"""GET /api/payments/{paymentId}/status: owner or admin only, and PayMob's inquiry as backup."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from coursepay.domain.payment import PaymentStatus
from coursepay.domain.records import EventKind
from coursepay.services.inquiry import claim_check
from tests.support.builders import COURSE_ID, PAYMENT_ID, STUDENT_ID, a_payment, a_payment_in
from tests.support.events import admin_claims, http_event, json_body, student_claims
from tests.support.payments_api import (
    DECLINED_CARD,
    checkout_event,
    function,
    pay,
    paymob,
    paymob_secret,
    status_event,
)

__all__ = ["function", "paymob", "paymob_secret"]  # fixtures


def ask_status(status, payment_id: str = PAYMENT_ID, claims=None):
    return status(
        status_event(payment_id, student_claims(STUDENT_ID) if claims is None else claims)
    )


@pytest.fixture
def status(function):
    return function("StatusFunction")


@pytest.fixture
def open_checkout(function, store):
    """A real checkout at the simulator; returns its response body."""

    def open_one():
        store.course()
        response = function("CheckoutFunction")(checkout_event(COURSE_ID, STUDENT_ID))
        assert response["statusCode"] == 201
        return json_body(response)

    return open_one


# --- who may see a payment -----------------------------------------------------------------


def test_the_owner_sees_the_stored_status(status, store):
    store.payment()

    response = ask_status(status)

    assert response["statusCode"] == 200
    assert response["headers"]["cache-control"] == "no-store"
    payment = a_payment()
    assert json_body(response) == {
        "payment_id": PAYMENT_ID,
        "course_id": COURSE_ID,
        "status": "PENDING",
        "amount_cents": payment.amount_cents,
        "currency": "EGP",
        "updated_at": payment.updated_at,
        "completed_at": None,
        "failure_reason": None,
        "enrolled": False,
    }


def test_a_paid_payment_reports_the_enrolment_once_it_exists(status, store):
    store.payment(a_payment_in(PaymentStatus.PAID))
    before = json_body(ask_status(status))
    store.enrollment()

    after = json_body(ask_status(status))

    assert (before["status"], before["enrolled"]) == ("PAID", False)
    assert (after["status"], after["enrolled"], after["completed_at"]) == (
        "PAID",
        True,
        a_payment_in(PaymentStatus.PAID).completed_at,
    )


def test_a_failed_payment_shows_its_reason(status, store):
    store.payment(a_payment_in(PaymentStatus.FAILED))

    body = json_body(ask_status(status))

    assert (body["status"], body["failure_reason"]) == ("FAILED", "Do not honour")


def test_someone_elses_payment_is_not_found(status, store):
    store.payment()

    response = ask_status(status, claims=student_claims("student-other"))

    assert response["statusCode"] == 404
    assert json_body(response) == {
        "error": {"code": "payment_not_found", "message": "no such payment"}
    }


def test_a_missing_payment_looks_the_same_as_someone_elses(status, store):
    response = ask_status(status, "pay_does_not_exist")

    assert response["statusCode"] == 404
    assert json_body(response)["error"]["code"] == "payment_not_found"


def test_an_admin_sees_any_payment(status, store):
    store.payment()

    response = ask_status(status, claims=admin_claims())

    assert (response["statusCode"], json_body(response)["payment_id"]) == (200, PAYMENT_ID)


def test_the_status_needs_a_signed_in_user(status, store):
    store.payment()
    event = status_event(PAYMENT_ID, None)

    assert status(event)["statusCode"] == 401


# --- PayMob as backup for a lost callback ---------------------------------------------------


def test_a_young_pending_payment_is_answered_without_asking_paymob(
    status, open_checkout, paymob, payments
):
    opened = open_checkout()
    pay(paymob, opened["checkout_url"])  # paid; the callback is dropped

    body = json_body(ask_status(status, opened["payment_id"]))

    assert body["status"] == "PENDING"
    assert payments.get(opened["payment_id"]).last_checked_at is None


def test_a_payment_pending_too_long_is_settled_by_paymobs_inquiry(
    function, open_checkout, paymob, payments
):
    opened = open_checkout()
    transaction, _ = pay(paymob, opened["checkout_url"])  # paid; the callback is dropped
    status = function("StatusFunction", STATUS_INQUIRY_AFTER_SECONDS="0")

    body = json_body(ask_status(status, opened["payment_id"]))

    assert body["status"] == "PAID"
    assert body["completed_at"] == transaction["created_at"]
    stored = payments.get(opened["payment_id"])
    assert stored.paymob_transaction_id == str(transaction["id"])
    assert stored.last_checked_at is not None
    (inquiry,) = [e for e in payments.events_for(opened["payment_id"]) if e.source == "INQUIRY"]
    assert (inquiry.kind, inquiry.status_after) == (EventKind.CALLBACK, "PAID")


def test_a_decline_learned_from_paymob_shows_its_reason(function, open_checkout, paymob):
    opened = open_checkout()
    pay(paymob, opened["checkout_url"], card=DECLINED_CARD)
    status = function("StatusFunction", STATUS_INQUIRY_AFTER_SECONDS="0")

    body = json_body(ask_status(status, opened["payment_id"]))

    assert (body["status"], body["failure_reason"]) == ("FAILED", "Do not honour")


def test_paymob_is_asked_at_most_once_per_interval(function, open_checkout, paymob, payments):
    opened = open_checkout()
    status = function("StatusFunction", STATUS_INQUIRY_AFTER_SECONDS="0")
    assert json_body(ask_status(status, opened["payment_id"]))["status"] == "PENDING"
    checked_at = payments.get(opened["payment_id"]).last_checked_at
    pay(paymob, opened["checkout_url"])  # paid just after PayMob was asked

    again = json_body(ask_status(status, opened["payment_id"]))

    assert again["status"] == "PENDING"  # not asked again within the interval
    assert payments.get(opened["payment_id"]).last_checked_at == checked_at
    eager = function(
        "StatusFunction", STATUS_INQUIRY_AFTER_SECONDS="0", STATUS_INQUIRY_INTERVAL_SECONDS="0"
    )
    assert json_body(ask_status(eager, opened["payment_id"]))["status"] == "PAID"


def test_while_paymob_is_unreachable_the_stored_status_is_answered(function, open_checkout, paymob):
    opened = open_checkout()
    pay(paymob, opened["checkout_url"])
    paymob.set_switches(inquiry_mode="fail")
    status = function("StatusFunction", STATUS_INQUIRY_AFTER_SECONDS="0")

    response = ask_status(status, opened["payment_id"])

    assert (response["statusCode"], json_body(response)["status"]) == (200, "PENDING")


def test_of_two_pollers_with_the_same_read_only_one_may_ask(payments, store):
    store.payment()
    read_by_both = payments.get(PAYMENT_ID)
    now = datetime.now(UTC).isoformat()

    first = claim_check(payments, read_by_both, now)
    second = claim_check(payments, read_by_both, now)

    assert first is not None and first.last_checked_at == now
    assert second is None
    assert payments.get(PAYMENT_ID).version == read_by_both.version + 1


# --- the rest of the status function ----------------------------------------------------------


def test_the_health_check_answers_without_a_token(status):
    response = status(http_event("GET", "/api/health", route_key="GET /api/health"))

    assert (response["statusCode"], json_body(response)) == (200, {"status": "ok"})


def test_the_students_enrolments_are_served_by_the_same_function(status, store):
    store.enrollment()

    response = status(
        http_event(
            "GET",
            "/api/me/enrollments",
            claims=student_claims(STUDENT_ID),
            route_key="GET /api/me/enrollments",
        )
    )

    assert response["statusCode"] == 200
    assert [e["course_id"] for e in json_body(response)["enrollments"]] == [COURSE_ID]


def test_an_unknown_route_is_a_json_404(status):
    response = status(http_event("GET", "/api/nothing-here", claims=student_claims(STUDENT_ID)))

    assert (response["statusCode"], json_body(response)["error"]["code"]) == (404, "not_found")


def test_an_overlong_payment_id_is_not_found_without_a_lookup(status):
    response = ask_status(status, "pay_" + "x" * 2048)

    assert (response["statusCode"], json_body(response)["error"]["code"]) == (
        404,
        "payment_not_found",
    )
