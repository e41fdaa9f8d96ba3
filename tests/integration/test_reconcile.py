"""Reconciliation: stuck PENDING payments settled by PayMob's inquiry, lapsed ones expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from coursepay.domain.payment import PaymentStatus
from coursepay.domain.records import EventKind
from tests.support.builders import COURSE_ID, STUDENT_ID
from tests.support.events import json_body, lambda_context, scheduled_event
from tests.support.payments_api import (
    DECLINED_CARD,
    backdate,
    checkout_event,
    function,
    pay,
    paymob,
    paymob_secret,
)

__all__ = ["function", "paymob", "paymob_secret"]  # fixtures


@pytest.fixture
def reconcile(function):
    return function("ReconcileFunction", PENDING_THRESHOLD_SECONDS="60")


@pytest.fixture
def open_checkout(function, store):
    """A real checkout at the simulator for a new student; returns its response body."""
    store.course()
    checkout = function("CheckoutFunction")
    opened = 0

    def open_one():
        nonlocal opened
        opened += 1
        response = checkout(checkout_event(COURSE_ID, f"{STUDENT_ID}-{opened}"))
        assert response["statusCode"] == 201
        return json_body(response)

    return open_one


def run(reconcile, *remaining_millis: int):
    reconcile.context = lambda_context("reconcile", *remaining_millis)
    return reconcile(scheduled_event())


def audits(payments, payment_id: str):
    return [e for e in payments.events_for(payment_id) if e.kind is EventKind.AUDIT]


# --- a lost callback --------------------------------------------------------------------------


def test_a_paid_payment_whose_callback_was_lost_is_settled(
    aws, reconcile, open_checkout, paymob, payments
):
    opened = open_checkout()
    transaction, _ = pay(paymob, opened["checkout_url"])  # the callback is dropped
    backdate(aws, opened["payment_id"], by=timedelta(minutes=2))

    report = run(reconcile)

    assert (report["checked"], report["applied"]) == (1, 1)
    stored = payments.get(opened["payment_id"])
    assert stored.status is PaymentStatus.PAID
    assert stored.paymob_transaction_id == str(transaction["id"])
    (audit,) = audits(payments, opened["payment_id"])
    assert (audit.actor, audit.source, audit.status_before, audit.status_after) == (
        "reconciler",
        "RECONCILER",
        "PENDING",
        "PAID",
    )


def test_a_declined_payment_whose_callback_was_lost_fails(
    aws, reconcile, open_checkout, paymob, payments
):
    opened = open_checkout()
    pay(paymob, opened["checkout_url"], card=DECLINED_CARD)
    backdate(aws, opened["payment_id"], by=timedelta(minutes=2))

    run(reconcile)

    stored = payments.get(opened["payment_id"])
    assert (stored.status, stored.failure_reason) == (PaymentStatus.FAILED, "Do not honour")


def test_an_unpaid_payment_still_within_its_checkout_stays_pending_and_is_audited(
    aws, reconcile, open_checkout, payments
):
    opened = open_checkout()
    backdate(aws, opened["payment_id"], by=timedelta(minutes=2))

    report = run(reconcile)

    assert report["no_transaction"] == 1
    stored = payments.get(opened["payment_id"])
    assert stored.status is PaymentStatus.PENDING
    assert stored.last_checked_at is not None
    (audit,) = audits(payments, opened["payment_id"])
    assert (audit.actor, audit.decision) == ("reconciler", "NO_TRANSACTION")


# --- the schedule -----------------------------------------------------------------------------


def test_a_payment_younger_than_a_minute_is_not_asked_about(reconcile, open_checkout, payments):
    opened = open_checkout()

    report = run(reconcile)

    assert report["checked"] == 0
    assert payments.get(opened["payment_id"]).last_checked_at is None


def test_a_payment_checked_in_its_current_slot_is_not_asked_again(
    aws, reconcile, open_checkout, paymob, payments
):
    opened = open_checkout()
    backdate(aws, opened["payment_id"], by=timedelta(minutes=2))
    run(reconcile)  # the one-minute check
    pay(paymob, opened["checkout_url"])

    report = run(reconcile)  # the next check is due at six minutes

    assert (report["checked"], report["not_due"]) == (0, 1)
    assert payments.get(opened["payment_id"]).status is PaymentStatus.PENDING


# --- expiry -----------------------------------------------------------------------------------


def test_a_checkout_that_lapsed_without_a_transaction_expires(
    aws, reconcile, open_checkout, payments
):
    opened = open_checkout()
    backdate(aws, opened["payment_id"], by=timedelta(hours=2))

    report = run(reconcile)

    assert report["expired"] == 1
    stored = payments.get(opened["payment_id"])
    assert stored.status is PaymentStatus.EXPIRED
    assert stored.failure_reason == "no transaction before the checkout expired"
    (audit,) = audits(payments, opened["payment_id"])
    assert (audit.actor, audit.fact_kind, audit.decision, audit.status_after) == (
        "reconciler",
        "EXPIRED",
        "EXPIRED",
        "EXPIRED",
    )


def test_a_lapsed_checkout_that_was_paid_is_settled_not_expired(
    aws, reconcile, open_checkout, paymob, payments
):
    opened = open_checkout()
    pay(paymob, opened["checkout_url"])
    backdate(aws, opened["payment_id"], by=timedelta(hours=2))

    run(reconcile)

    assert payments.get(opened["payment_id"]).status is PaymentStatus.PAID


def test_a_checkout_just_past_expiry_gets_a_grace_period(aws, reconcile, open_checkout, payments):
    opened = open_checkout()
    backdate(aws, opened["payment_id"], by=timedelta(minutes=61))

    run(reconcile)

    assert payments.get(opened["payment_id"]).status is PaymentStatus.PENDING


def test_a_payment_that_never_reached_paymob_expires(reconcile, store, payments):
    long_ago = datetime.now(UTC) - timedelta(hours=3)
    store.payment(
        payment_id="pay_lost_checkout",
        paymob_order_id=None,
        paymob_intention_id=None,
        created_at=long_ago.isoformat(),
        updated_at=long_ago.isoformat(),
        expires_at=(long_ago + timedelta(hours=1)).isoformat(),
    )

    run(reconcile)

    assert payments.get("pay_lost_checkout").status is PaymentStatus.EXPIRED


# --- PayMob unreachable: nothing changes, the next run asks again -----------------------------


def test_while_paymob_is_unreachable_nothing_changes(
    aws, reconcile, open_checkout, paymob, payments
):
    opened = open_checkout()
    backdate(aws, opened["payment_id"], by=timedelta(hours=2))
    before = payments.get(opened["payment_id"])
    paymob.set_switches(inquiry_mode="fail")

    report = run(reconcile)

    assert report["unavailable"] == 1
    after = payments.get(opened["payment_id"])
    assert (after.status, after.last_checked_at) == (PaymentStatus.PENDING, None)
    assert audits(payments, opened["payment_id"]) == []
    assert after.version > before.version  # claimed and given back

    paymob.set_switches(inquiry_mode="ok")
    run(reconcile)

    assert payments.get(opened["payment_id"]).status is PaymentStatus.EXPIRED


def test_a_run_stops_after_three_outages_in_a_row(aws, reconcile, open_checkout, paymob):
    for _ in range(4):
        backdate(aws, open_checkout()["payment_id"], by=timedelta(minutes=2))
    paymob.set_switches(inquiry_mode="fail")

    report = run(reconcile)

    assert (report["unavailable"], report["stopped"]) == (3, "paymob_unavailable")


# --- bounded work -----------------------------------------------------------------------------


def test_a_run_asks_about_at_most_the_batch_limit(function, aws, open_checkout):
    for _ in range(3):
        backdate(aws, open_checkout()["payment_id"], by=timedelta(minutes=2))
    reconcile = function(
        "ReconcileFunction", PENDING_THRESHOLD_SECONDS="60", RECONCILE_BATCH_LIMIT="2"
    )

    report = run(reconcile)

    assert (report["checked"], report["stopped"]) == (2, "batch_limit")


def test_a_run_stops_taking_payments_when_its_time_runs_out(reconcile, aws, open_checkout):
    for _ in range(2):
        backdate(aws, open_checkout()["payment_id"], by=timedelta(minutes=2))

    report = run(reconcile, 170_000, 30_000)  # plenty for one, then under the margin

    assert (report["checked"], report["stopped"]) == (1, "time_budget")
