"""Whole payments over HTTP: checkout, PayMob's page, callbacks, enrolment, reconciliation.

Each test is a student buying a fresh course on the running stack; the PayMob simulator's
switches make its callbacks duplicated, delayed, reordered or lost, and every path must end
in the same place: paid once, enrolled once.
"""

from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support.polling import wait_until
from tests.support.shop import DECLINE_CARD, PENDING_THRESHOLD_SECONDS, Shop


def test_a_paid_checkout_enrols_the_student_exactly_once(shop: Shop) -> None:
    # Given a student and a course
    student, course = shop.student(), shop.course(price_cents=150_000, currency="EGP")

    # When the student checks out and pays with a sandbox card on PayMob's page
    started = shop.start_payment(student, course)
    redirect = shop.pay(started["checkout_url"])

    # Then the checkout answered per the contract, and PayMob holds the right amount
    assert started["status"] == "PENDING"
    assert started["payment_id"] and started["expires_at"]
    assert started["checkout_url"].startswith(f"{shop.stack.paymob_url}/unifiedcheckout/")
    intention = _intention(shop, started["checkout_url"])
    assert intention["intention_detail"]["amount"] == 150_000
    assert intention["intention_detail"]["currency"] == "EGP"
    # And the payment is PAID and the student enrolled, once
    paid = shop.wait_for(student, started["payment_id"], status="PAID", enrolled=True)
    assert (paid["amount_cents"], paid["currency"]) == (150_000, "EGP")
    assert paid["course_id"] == course.course_id
    assert paid["completed_at"]
    assert shop.enrolment_count(course.course_id) == 1
    enrolments = shop.enrolments(student)
    listed = enrolments["enrollments"] if isinstance(enrolments, dict) else enrolments
    assert [e["course_id"] for e in listed] == [course.course_id]
    # And the browser, redirected back, lands on the result page showing PAID
    assert urlsplit(redirect).path == f"/courses/{course.course_id}/payment/result"
    page = shop.result_page(redirect)
    assert page.status == "PAID"
    assert page.has("course-link")
    # And buying it again is refused: the student already owns it
    again = shop.checkout(student, course.course_id)
    assert again.status_code == 409, again.text


def test_an_omr_price_keeps_its_three_decimals_all_the_way_to_paymob(shop: Shop) -> None:
    student, course = shop.student(), shop.course(price_cents=49_875, currency="OMR")

    started = shop.start_payment(student, course)
    shop.pay(started["checkout_url"])

    paid = shop.wait_for(student, started["payment_id"], status="PAID", enrolled=True)
    assert (paid["amount_cents"], paid["currency"]) == (49_875, "OMR")
    intention = _intention(shop, started["checkout_url"])
    assert intention["intention_detail"]["amount"] == 49_875
    assert intention["intention_detail"]["currency"] == "OMR"


def test_a_declined_card_fails_the_payment_and_offers_a_retry(shop: Shop) -> None:
    student, course = shop.student(), shop.course()

    started = shop.start_payment(student, course)
    redirect = shop.pay(started["checkout_url"], card_number=DECLINE_CARD)

    failed = shop.wait_for(student, started["payment_id"], status="FAILED", enrolled=False)
    assert failed["failure_reason"]
    assert shop.enrolment_count(course.course_id) == 0
    page = shop.result_page(redirect)
    assert page.status == "FAILED"
    assert page.has("retry-button")
    assert not page.has("course-link")


def test_duplicated_callbacks_pay_and_enrol_once(shop: Shop) -> None:
    # Given PayMob delivering every callback twice
    shop.simulator.set_switches(callback_mode="duplicate")
    student, course = shop.student(), shop.course()

    started = shop.start_payment(student, course)
    shop.pay(started["checkout_url"])

    # Then both deliveries were acknowledged, and the payment settled once
    shop.wait_for(student, started["payment_id"], status="PAID", enrolled=True)
    deliveries = _deliveries_for(shop, started["checkout_url"])
    assert [d["copy"] for d in deliveries] == [1, 2]
    assert {d["status"] for d in deliveries} == {"delivered"}
    time.sleep(1)  # let any second enrolment attempt through the stream, if there were one
    assert shop.enrolment_count(course.course_id) == 1


def test_a_delayed_callback_leaves_the_payment_pending_until_it_arrives(shop: Shop) -> None:
    shop.simulator.set_switches(callback_mode="delay", delay_seconds=2.0)
    student, course = shop.student(), shop.course()

    started = shop.start_payment(student, course)
    shop.pay(started["checkout_url"])

    # Before the callback: still PENDING (the redirect alone proves nothing)
    assert shop.status(student, started["payment_id"])["status"] == "PENDING"
    # After it: PAID and enrolled
    shop.wait_for(student, started["payment_id"], status="PAID", enrolled=True)
    assert shop.enrolment_count(course.course_id) == 1


def test_reordered_callbacks_converge_on_paid(shop: Shop) -> None:
    # Given PayMob swapping consecutive callbacks: a decline, then a success on the same
    # checkout, arrive success first and decline last
    shop.simulator.set_switches(callback_mode="reorder", delay_seconds=5.0)
    student, course = shop.student(), shop.course()
    started = shop.start_payment(student, course)

    shop.pay(started["checkout_url"], card_number=DECLINE_CARD)
    shop.pay(started["checkout_url"])

    # Then the late decline does not un-pay the payment
    def both_delivered() -> list[dict[str, Any]] | None:
        found = _deliveries_for(shop, started["checkout_url"])
        return found if [d["status"] for d in found] == ["delivered"] * 2 else None

    deliveries = wait_until(
        both_delivered,
        message="both callbacks delivered",
    )
    in_arrival_order = sorted(deliveries, key=lambda d: d["delivered_at"])
    assert [d["payload"]["obj"]["success"] for d in in_arrival_order] == [True, False]
    paid = shop.wait_for(student, started["payment_id"], status="PAID", enrolled=True)
    time.sleep(1)
    assert shop.status(student, started["payment_id"])["status"] == paid["status"] == "PAID"
    assert shop.enrolment_count(course.course_id) == 1


def test_a_dropped_callback_is_recovered_by_the_reconciler(shop: Shop) -> None:
    # Given PayMob never delivering the callback of a successful payment
    shop.simulator.set_switches(callback_mode="drop")
    student, course = shop.student(), shop.course()
    started = shop.start_payment(student, course)
    shop.pay(started["checkout_url"])
    assert shop.status(student, started["payment_id"])["status"] == "PENDING"

    # When the scheduled reconciliation runs (it first asks PayMob about a payment the
    # pending threshold after its creation: a second in this stack)
    def reconciled() -> dict[str, Any] | None:
        run = shop.run_reconciler()
        assert all(r["ok"] for r in run["runs"]), run
        seen = shop.status(student, started["payment_id"])
        return seen if seen["status"] != "PENDING" else None

    settled = wait_until(
        reconciled,
        timeout=PENDING_THRESHOLD_SECONDS + 30,
        interval=2,
        message="reconciliation of the dropped callback",
    )

    # Then it found PayMob's transaction, and the student is enrolled, once
    assert settled["status"] == "PAID"
    shop.wait_for(student, started["payment_id"], status="PAID", enrolled=True)
    assert shop.enrolment_count(course.course_id) == 1


def _intention(shop: Shop, checkout_url: str) -> dict[str, Any]:
    """PayMob's record of the intention behind a checkout URL (by its client secret)."""
    client_secret = parse_qs(urlsplit(checkout_url).query)["clientSecret"][0]
    matching: list[dict[str, Any]] = [
        i for i in shop.simulator.intentions if i["client_secret"] == client_secret
    ]
    (intention,) = matching
    return intention


def _deliveries_for(shop: Shop, checkout_url: str) -> list[dict[str, Any]]:
    """The simulator's callback log for the order behind a checkout URL, in send order."""
    order_id = _intention(shop, checkout_url)["intention_order_id"]
    return [d for d in shop.simulator.callbacks if d["order_id"] == order_id]
