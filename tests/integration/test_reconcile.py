"""Reconciliation: stuck PENDING payments settled by PayMob's inquiry, lapsed ones expired."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from coursepay.domain.payment import PaymentStatus
from coursepay.domain.records import EventKind
from coursepay.domain.signature import HmacSecrets
from coursepay.services.abuse import BadSignatureLimiter
from coursepay.services.callbacks import CallbackService
from coursepay.services.inquiry import PaymentInquiry
from coursepay.services.reconcile import ReconcileService, ReconcileSettings
from coursepay.storage.payments import PaymentRepository
from tests.support.builders import AMOUNT_CENTS, COURSE_ID, STUDENT_ID
from tests.support.callbacks import TEST_HMAC_SECRET, transaction_callback
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


# --- a lapsed payment PayMob cannot settle: asked hourly, a bounded number of times ------------


class ScriptedInquiry:
    """PayMob's inquiry answering the same thing every time; counts the questions."""

    def __init__(self, answer: dict[str, Any] | None) -> None:
        self.answer = answer
        self.asked: list[str] = []

    def inquire_by_merchant_order(self, merchant_order_id: str) -> dict[str, Any] | None:
        self.asked.append(merchant_order_id)
        return self.answer


class VirtualTime:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def reconciler(aws, gateway: ScriptedInquiry, clock: VirtualTime, **settings: Any):
    payments = PaymentRepository(aws.payments_table, aws.webhooks_table, client=aws.dynamodb)
    callbacks = CallbackService(
        payments, None, lambda: HmacSecrets(TEST_HMAC_SECRET), BadSignatureLimiter(20, 60)
    )
    return ReconcileService(
        payments, PaymentInquiry(gateway, callbacks), ReconcileSettings(**settings), clock=clock
    )


def every(service, clock: VirtualTime, step: timedelta, until: datetime) -> list[Any]:
    """Runs the reconciler every `step` (the schedule's rate) until `until`."""
    reports = []
    while clock.now < until:
        reports.append(service.run(lambda: 900_000))
        clock.now += step
    return reports


CREATED = datetime.now(UTC).replace(minute=0, second=30, microsecond=0) - timedelta(days=3)
STILL_PENDING = transaction_callback(
    success=False, pending=True, amount_cents=AMOUNT_CENTS, message="Pending"
)["obj"]


def a_lapsing_payment(store, **overrides: Any):
    return store.payment(
        created_at=CREATED.isoformat(),
        updated_at=CREATED.isoformat(),
        expires_at=(CREATED + timedelta(hours=1)).isoformat(),
        **overrides,
    )


def reconciler_audits(payments, payment_id: str):
    return [a for a in audits(payments, payment_id) if a.actor == "reconciler"]


def test_a_lapsed_payment_paymob_keeps_calling_pending_is_asked_hourly_then_left(
    aws, store, payments
):
    # Given a lapsed payment whose transaction PayMob keeps reporting as pending
    payment = a_lapsing_payment(store)
    gateway = ScriptedInquiry(STILL_PENDING)
    clock = VirtualTime(CREATED + timedelta(hours=1, minutes=10))
    service = reconciler(aws, gateway, clock, lapsed_max_checks=6)

    # When the reconciler runs every ten minutes for a day
    reports = every(service, clock, timedelta(minutes=10), clock.now + timedelta(days=1))

    # Then PayMob was asked six times, an hour apart, and the payment is left PENDING
    assert len(gateway.asked) == 6
    assert payments.get(payment.payment_id).status is PaymentStatus.PENDING
    assert sum(r.final_checks for r in reports) == 1
    assert reports[-1].given_up == 1 and reports[-1].checked == 0
    # And each check is audited once, the last saying that the reconciler stops asking
    entries = reconciler_audits(payments, payment.payment_id)
    assert len(entries) == 6
    assert entries[-1].payload["last_check"] is True
    assert "an admin settles it" in (entries[-1].reason or "")


def test_a_lapsed_unlinked_payment_with_a_transaction_at_paymob_is_never_expired(
    aws, store, payments
):
    # Given a lapsed payment that never stored PayMob's order, while PayMob holds a
    # transaction for its merchant order id (the payment id)
    payment = a_lapsing_payment(store, paymob_order_id=None, paymob_intention_id=None)
    gateway = ScriptedInquiry(transaction_callback(amount_cents=AMOUNT_CENTS)["obj"])
    clock = VirtualTime(CREATED + timedelta(hours=1, minutes=10))
    service = reconciler(aws, gateway, clock, lapsed_max_checks=4)

    reports = every(service, clock, timedelta(minutes=10), clock.now + timedelta(hours=8))

    # Then it is asked by its payment id a bounded number of times, and never expired:
    # the transaction may have paid it, and an admin links it
    assert gateway.asked == [payment.payment_id] * 4
    assert sum(r.unlinked for r in reports) == 4
    stored = payments.get(payment.payment_id)
    assert (stored.status, stored.paymob_order_id) == (PaymentStatus.PENDING, None)
    assert len(reconciler_audits(payments, payment.payment_id)) == 4


def test_a_lapsed_unlinked_payment_paymob_knows_nothing_about_expires(aws, store, payments):
    payment = a_lapsing_payment(store, paymob_order_id=None, paymob_intention_id=None)
    gateway = ScriptedInquiry(None)  # PayMob: no transaction for this merchant order id
    clock = VirtualTime(CREATED + timedelta(hours=1, minutes=10))

    report = reconciler(aws, gateway, clock).run(lambda: 900_000)

    assert (gateway.asked, report.expired) == ([payment.payment_id], 1)
    assert payments.get(payment.payment_id).status is PaymentStatus.EXPIRED


def test_checks_that_change_nothing_are_audited_once_an_hour(aws, store, payments):
    # Given a payment nobody has paid yet, and runs every five minutes for half an hour
    payment = a_lapsing_payment(store)
    gateway = ScriptedInquiry(None)
    clock = VirtualTime(CREATED)
    service = reconciler(aws, gateway, clock)

    every(service, clock, timedelta(minutes=5), CREATED + timedelta(minutes=30))

    # Then a check on each run from the fifth minute, and one audit entry: nothing changed
    assert len(gateway.asked) == 5
    (entry,) = reconciler_audits(payments, payment.payment_id)
    assert entry.decision == "NO_TRANSACTION"


def test_a_check_that_changes_the_payment_is_audited_even_within_the_hour(aws, store, payments):
    payment = a_lapsing_payment(store)
    gateway = ScriptedInquiry(None)
    clock = VirtualTime(CREATED)
    service = reconciler(aws, gateway, clock)
    every(service, clock, timedelta(minutes=5), CREATED + timedelta(minutes=10))

    gateway.answer = transaction_callback(amount_cents=AMOUNT_CENTS)["obj"]
    every(service, clock, timedelta(minutes=5), CREATED + timedelta(minutes=15))

    assert payments.get(payment.payment_id).status is PaymentStatus.PAID
    entries = reconciler_audits(payments, payment.payment_id)
    assert [(e.status_before, e.status_after) for e in entries] == [
        ("PENDING", "PENDING"),
        ("PENDING", "PAID"),
    ]
