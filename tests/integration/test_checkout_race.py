"""A callback that reaches us before checkout stored PayMob's order is applied once it is stored."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from coursepay.domain.payment import PaymentStatus
from coursepay.domain.records import EventKind
from coursepay.domain.signature import HmacSecrets, sign_transaction_obj
from coursepay.paymob.client import Intention, PaymobClient, PaymobKeys
from coursepay.services.abuse import BadSignatureLimiter
from coursepay.services.callbacks import CallbackResult, CallbackService
from coursepay.services.checkout import (
    CheckoutRequest,
    CheckoutService,
    CheckoutSettings,
    Student,
)
from coursepay.services.inquiry import PaymentInquiry
from coursepay.storage.catalog import CourseRepository, EnrollmentRepository
from coursepay.storage.payments import PaymentRepository
from devstack.paymob_sim import CardPayment, PaymobSimulator
from tests.support.builders import COURSE_ID, STUDENT_ID
from tests.support.payments_api import CARD, PUBLIC_BASE_URL, SIMULATOR, paymob

__all__ = ["paymob"]  # fixtures


class PaidBeforeAnswered(PaymobClient):
    """PayMob as seen in the race: the student pays, and the callback arrives, before the
    Intention API's answer reaches checkout."""

    def __init__(self, simulator: PaymobSimulator, callbacks: CallbackService) -> None:
        super().__init__(
            simulator.url,
            lambda: PaymobKeys(SIMULATOR.secret_key, SIMULATOR.api_key, SIMULATOR.public_key),
        )
        self._simulator = simulator
        self._callbacks = callbacks
        self.raced: list[Any] = []

    def create_intention(self, body: Mapping[str, Any]) -> Intention:
        intention = super().create_intention(body)
        transaction, _ = self._simulator.pay(
            intention.client_secret, CardPayment(CARD, "Test Account", "01/39", "123")
        )
        callback = {"type": "TRANSACTION", "obj": transaction}
        self.raced.append(
            self._callbacks.receive(
                json.dumps(callback).encode(),
                sign_transaction_obj(transaction, SIMULATOR.hmac_secret),
                "203.0.113.7",
            )
        )
        return intention


def test_a_callback_that_raced_the_checkout_settles_the_new_payment(aws, store, paymob):
    payments = PaymentRepository(aws.payments_table, aws.webhooks_table, client=aws.dynamodb)
    secrets = HmacSecrets(SIMULATOR.hmac_secret)
    callbacks = CallbackService(payments, None, lambda: secrets, BadSignatureLimiter(20, 60))
    gateway = PaidBeforeAnswered(paymob, callbacks)
    checkout = CheckoutService(
        payments=payments,
        courses=CourseRepository(aws.courses_table, client=aws.dynamodb),
        enrollments=EnrollmentRepository(
            aws.enrollments_table, aws.courses_table, aws.payments_table, client=aws.dynamodb
        ),
        paymob=gateway,
        inquiry=PaymentInquiry(gateway, callbacks),
        settings=CheckoutSettings(
            integration_ids=(SIMULATOR.card_integration_id,), expiration_seconds=3600
        ),
    )
    store.course()

    result = checkout.checkout(
        CheckoutRequest(Student(STUDENT_ID, email="s@courses.example"), COURSE_ID, PUBLIC_BASE_URL)
    )

    (raced,) = gateway.raced
    assert raced.result is CallbackResult.ORPHAN
    stored = payments.get(result.payment.payment_id)
    assert stored is not None and stored.paymob_order_id is not None
    assert stored.status is PaymentStatus.PAID
    kinds = [e.kind for e in payments.events_for(stored.payment_id)]
    assert EventKind.CALLBACK in kinds  # the inquiry's answer, through the one apply path
    assert len(payments.orphans_for_order(stored.paymob_order_id)) == 1  # kept for the admin
