"""GET /courses/{courseId}/payment/result: PayMob's signed redirect, and only the stored status."""

from __future__ import annotations

import re
from datetime import timedelta
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

import pytest

from coursepay.domain.payment import PaymentStatus
from coursepay.domain.records import EventKind
from coursepay.domain.signature import sign_transaction_query
from tests.support.builders import COURSE_ID, STUDENT_ID
from tests.support.events import json_body
from tests.support.payments_api import (
    DECLINED_CARD,
    SIMULATOR,
    backdate,
    checkout_event,
    function,
    pay,
    paymob,
    paymob_secret,
    result_event,
)

__all__ = ["function", "paymob", "paymob_secret"]  # fixtures

COURSE_URL = f"https://learn.courses.example/courses/{COURSE_ID}"
SUPPORT = "support@courses.example"


@pytest.fixture
def result_page(function):
    return function("StatusFunction")


@pytest.fixture
def open_checkout(function, store):
    def open_one(**course):
        store.course(**course)
        response = function("CheckoutFunction")(checkout_event(COURSE_ID, STUDENT_ID))
        assert response["statusCode"] == 201
        return json_body(response)

    return open_one


def data_status(html: str) -> str:
    match = re.search(r'id="payment-status" data-status="([A-Z_]+)"', html)
    assert match is not None, "the page has no #payment-status"
    return match.group(1)


def element(html: str, element_id: str) -> str:
    """The start tag of the element with this id, or "" when the page has none."""
    match = re.search(rf'<[^>]*\bid="{element_id}"[^>]*>', html)
    return "" if match is None else match.group(0)


def resign(raw_query: str, **changes: str) -> str:
    """The redirect with fields changed and signed again with the account's secret."""
    params = {k: v for k, v in parse_qsl(raw_query, keep_blank_values=True) if k != "hmac"}
    params.update(changes)
    params["hmac"] = sign_transaction_query(params, SIMULATOR.hmac_secret)
    return urlencode(params, quote_via=quote)


# --- a valid signature: applied, then the stored status shown ------------------------------


def test_a_paid_redirect_shows_success_with_a_link_to_the_course(
    result_page, open_checkout, paymob, payments
):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"])  # the callback is dropped

    response = result_page(result_event(COURSE_ID, query))

    html = response["body"]
    assert response["statusCode"] == 200
    assert response["headers"]["Content-Type"] == "text/html; charset=utf-8"
    assert data_status(html) == "PAID"
    assert f'href="{COURSE_URL}"' in element(html, "course-link")
    assert element(html, "retry-button") == ""
    assert element(html, "support-contact") != ""
    stored = payments.get(opened["payment_id"])
    assert stored.status is PaymentStatus.PAID
    (redirect,) = [e for e in payments.events_for(stored.payment_id) if e.source == "REDIRECT"]
    assert (redirect.kind, redirect.status_after) == (EventKind.REDIRECT, "PAID")


def test_reloading_the_page_applies_nothing_twice(result_page, open_checkout, paymob, payments):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"])
    result_page(result_event(COURSE_ID, query))
    version = payments.get(opened["payment_id"]).version

    again = result_page(result_event(COURSE_ID, query))

    assert data_status(again["body"]) == "PAID"
    assert payments.get(opened["payment_id"]).version == version
    assert (
        len([e for e in payments.events_for(opened["payment_id"]) if e.source == "REDIRECT"]) == 1
    )


def test_a_declined_redirect_shows_the_reason_a_retry_and_the_support_contact(
    result_page, open_checkout, paymob
):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"], card=DECLINED_CARD)

    html = result_page(result_event(COURSE_ID, query))["body"]

    assert data_status(html) == "FAILED"
    assert "Do not honour" in html
    assert f'href="{COURSE_URL}"' in element(html, "retry-button")
    assert f'href="mailto:{SUPPORT}"' in element(html, "support-contact")
    assert element(html, "course-link") == ""


def test_a_form_encoded_declined_redirect_shows_the_reason_with_its_spaces(
    result_page, open_checkout, paymob, payments
):
    # Given the declined redirect form encoded, as PayMob sends it: `data.message=Do+not+honour`
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"], card=DECLINED_CARD)
    form_encoded = urlencode(parse_qsl(query, keep_blank_values=True), quote_via=quote_plus)
    assert "Do+not+honour" in form_encoded

    html = result_page(result_event(COURSE_ID, form_encoded))["body"]

    # Then the reason reads as PayMob wrote it, on the page and in the payment
    assert data_status(html) == "FAILED"
    assert "Do not honour" in html and "Do+not+honour" not in html
    assert payments.get(opened["payment_id"]).failure_reason == "Do not honour"


def test_the_retry_button_follows_the_configured_retry_url(function, open_checkout, paymob):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"], card=DECLINED_CARD)
    page = function(
        "StatusFunction", RETRY_URL_TEMPLATE="https://learn.courses.example/buy/{course_id}"
    )

    html = page(result_event(COURSE_ID, query))["body"]

    assert 'href="https://learn.courses.example/buy/course-python-101"' in element(
        html, "retry-button"
    )


def test_a_still_pending_transaction_shows_a_page_that_refreshes_itself(
    result_page, open_checkout, paymob, payments
):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"])
    pending = resign(query, pending="true", success="false")

    html = result_page(result_event(COURSE_ID, pending))["body"]

    assert data_status(html) == "PENDING"
    assert '<meta http-equiv="refresh" content="3">' in html
    assert payments.get(opened["payment_id"]).status is PaymentStatus.PENDING


def test_a_pending_page_past_the_inquiry_age_asks_paymob(
    aws, result_page, open_checkout, paymob, payments
):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"])
    backdate(aws, opened["payment_id"], by=timedelta(minutes=5))
    still_pending = resign(query, pending="true", success="false")

    html = result_page(result_event(COURSE_ID, still_pending))["body"]

    assert data_status(html) == "PAID"  # PayMob's inquiry knows better than the stale redirect


# --- no valid signature: nothing is trusted, not even which payment ------------------------


def test_a_tampered_redirect_shows_the_neutral_page_and_changes_nothing(
    result_page, open_checkout, paymob, payments, caplog
):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"], card=DECLINED_CARD)
    tampered = query.replace("success=false", "success=true")

    html = result_page(result_event(COURSE_ID, tampered))["body"]

    assert data_status(html) == "UNCONFIRMED"
    assert element(html, "history-link") != ""
    assert element(html, "course-link") == ""
    assert payments.get(opened["payment_id"]).status is PaymentStatus.PENDING
    events = [getattr(record, "security_event", None) for record in caplog.records]
    assert "unsigned_redirect" in events


@pytest.mark.parametrize("query", ["", "order=400000001&success=true&id=500000001"])
def test_a_redirect_without_a_signature_shows_the_neutral_page(result_page, store, query):
    store.payment(paymob_order_id="400000001")

    html = result_page(result_event(COURSE_ID, query))["body"]

    assert data_status(html) == "UNCONFIRMED"
    assert "check your payment history" in html


def test_a_signed_redirect_for_another_course_shows_the_neutral_page(
    result_page, open_checkout, paymob, payments
):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"])

    html = result_page(result_event("course-someone-else", query))["body"]

    assert data_status(html) == "UNCONFIRMED"
    assert payments.get(opened["payment_id"]).status is PaymentStatus.PENDING


def test_a_signed_redirect_of_an_unknown_order_shows_the_neutral_page(
    result_page, open_checkout, paymob
):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"])
    unknown = resign(query, order="999999999")

    html = result_page(result_event(COURSE_ID, unknown))["body"]

    assert data_status(html) == "UNCONFIRMED"


# --- escaping, language, headers -----------------------------------------------------------


def test_a_course_title_with_markup_is_escaped(result_page, open_checkout, paymob):
    opened = open_checkout(title='<script>alert("x")</script> & Co')
    _, query = pay(paymob, opened["checkout_url"])

    html = result_page(result_event(COURSE_ID, query))["body"]

    assert "<script>" not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; Co" in html


def test_an_arabic_browser_gets_the_page_in_arabic_right_to_left(
    result_page, open_checkout, paymob
):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"])

    response = result_page(result_event(COURSE_ID, query, "ar-EG,ar;q=0.9,en;q=0.8"))

    html = response["body"]
    assert '<html lang="ar" dir="rtl">' in html
    assert "تم الدفع بنجاح" in html
    assert data_status(html) == "PAID"
    assert response["headers"]["content-language"] == "ar"


def test_an_english_browser_gets_the_page_left_to_right(result_page, open_checkout, paymob):
    opened = open_checkout()
    _, query = pay(paymob, opened["checkout_url"])

    html = result_page(result_event(COURSE_ID, query, "en-US,en;q=0.9,ar;q=0.5"))["body"]

    assert '<html lang="en" dir="ltr">' in html
    assert "Payment successful" in html


def test_the_page_leaks_the_signed_query_nowhere_and_runs_no_script(result_page, store):
    store.payment()

    headers = result_page(result_event(COURSE_ID, ""))["headers"]

    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert "default-src 'none'" in headers["content-security-policy"]
    assert "script-src" not in headers["content-security-policy"]
