"""Bookkeeping writes (PayMob's references, check times) never change what a payment is."""

from __future__ import annotations

import pytest

from coursepay.domain.payment import PaymentStatus
from coursepay.services.inquiry import bookkeeping
from tests.support.builders import NOW, a_payment


def test_bookkeeping_changes_only_its_fields_and_the_version():
    payment = a_payment(paymob_order_id=None, paymob_intention_id=None)

    decision = bookkeeping(payment, paymob_order_id="400000001", last_checked_at=NOW)

    assert decision.changed and not decision.status_changed
    assert decision.after.version == payment.version + 1
    assert decision.after.updated_at == payment.updated_at  # listings sort on real changes
    assert decision.after.model_dump(exclude={"version", "paymob_order_id", "last_checked_at"}) == (
        payment.model_dump(exclude={"version", "paymob_order_id", "last_checked_at"})
    )


@pytest.mark.parametrize(
    "fields",
    [
        {"status": PaymentStatus.PAID},
        {"failure_reason": "x"},
        {"amount_cents": 1},
        {"paymob_transaction_id": "1"},
        {"flags": frozenset()},
    ],
)
def test_bookkeeping_refuses_what_only_the_state_machine_may_change(fields):
    with pytest.raises(ValueError, match="not bookkeeping"):
        bookkeeping(a_payment(), **fields)


@pytest.mark.parametrize("new_order_id", ["400000002", None])
def test_a_stored_paymob_order_id_is_never_rewritten(new_order_id):
    # Given a payment holding PayMob's order id (the key signed callbacks find it by)
    payment = a_payment(paymob_order_id="400000001")

    # Then another order id, or none, is refused
    with pytest.raises(ValueError, match="never rewritten"):
        bookkeeping(payment, paymob_order_id=new_order_id, last_checked_at=NOW)


def test_the_paymob_order_id_is_set_when_there_is_none_and_may_be_repeated():
    payment = a_payment(paymob_order_id=None)

    stored = bookkeeping(payment, paymob_order_id="400000001").after

    assert stored.paymob_order_id == "400000001"
    assert bookkeeping(stored, paymob_order_id="400000001").after.paymob_order_id == "400000001"
    assert bookkeeping(stored, last_checked_at=NOW).after.paymob_order_id == "400000001"
