"""`classify`: what PayMob's transaction booleans mean for a payment (the paid predicate)."""

from itertools import product
from typing import get_type_hints

import pytest

from coursepay.domain.facts import FactKind, TransactionFlags, classify
from tests.support.builders import transaction_flags

K = FactKind

SIGNED = (
    "success",
    "pending",
    "error_occured",
    "is_voided",
    "is_refunded",
    "has_parent_transaction",
)
UNSIGNED = ("is_void", "is_refund")
ALL_FLAGS = SIGNED + UNSIGNED


def paid_predicate(f: TransactionFlags) -> bool:
    """DESIGN §4, word for word: the only combination that is a payment."""
    return (
        f.success
        and not f.pending
        and not f.error_occured
        and not f.is_voided
        and not f.is_refunded
        and not f.has_parent_transaction
        and not f.is_void
        and not f.is_refund
    )


EVERY_COMBINATION = [
    TransactionFlags(**dict(zip(ALL_FLAGS, values, strict=True)))
    for values in product((False, True), repeat=len(ALL_FLAGS))
]


def _id(f: TransactionFlags) -> str:
    return "+".join(name for name in ALL_FLAGS if getattr(f, name)) or "none"


# Given the booleans set (all others false), then the kind. One row per distinct rule.
TRUTH_TABLE: list[tuple[set[str], FactKind]] = [
    # the paid predicate holds
    ({"success"}, K.SUCCESS),
    # each signed boolean alone spoils it
    ({"success", "pending"}, K.STILL_PENDING),
    ({"success", "error_occured"}, K.DECLINED),
    ({"success", "is_voided"}, K.VOIDED),
    ({"success", "is_refunded"}, K.REFUNDED),
    ({"success", "has_parent_transaction"}, K.REFUND),
    (set(), K.DECLINED),
    # each unsigned boolean alone spoils it, without a parent it is no reversal either
    ({"success", "is_void"}, K.DECLINED),
    ({"success", "is_refund"}, K.DECLINED),
    # children: recognised by the signed has_parent_transaction; is_void tells a void
    ({"success", "has_parent_transaction", "is_refund"}, K.REFUND),
    ({"success", "has_parent_transaction", "is_void"}, K.VOID),
    ({"has_parent_transaction", "is_refund"}, K.REVERSAL_FAILED),
    ({"has_parent_transaction", "is_void"}, K.REVERSAL_FAILED),
    ({"success", "has_parent_transaction", "pending"}, K.REVERSAL_FAILED),
    ({"success", "has_parent_transaction", "error_occured"}, K.REVERSAL_FAILED),
    # parents of a reversal, whatever their own success says; a void wins over a refund
    ({"is_refunded"}, K.REFUNDED),
    ({"is_voided"}, K.VOIDED),
    ({"success", "is_voided", "is_refunded"}, K.VOIDED),
    # unfinished
    ({"pending"}, K.STILL_PENDING),
]


@pytest.mark.parametrize(
    ("set_flags", "expected"),
    TRUTH_TABLE,
    ids=["+".join(sorted(s)) or "none" for s, _ in TRUTH_TABLE],
)
def test_truth_table(set_flags: set[str], expected: FactKind) -> None:
    flags = TransactionFlags(**{name: name in set_flags for name in ALL_FLAGS})

    assert classify(flags) is expected


@pytest.mark.parametrize("flags", EVERY_COMBINATION, ids=_id)
def test_success_exactly_when_the_paid_predicate_holds(flags: TransactionFlags) -> None:
    assert (classify(flags) is K.SUCCESS) == paid_predicate(flags)


@pytest.mark.parametrize("flags", EVERY_COMBINATION, ids=_id)
def test_a_child_is_never_a_payment_and_always_a_reversal(flags: TransactionFlags) -> None:
    kind = classify(flags)

    if flags.has_parent_transaction:
        assert kind in {K.REFUND, K.VOID, K.REVERSAL_FAILED}
    else:
        assert kind not in {K.REFUND, K.VOID, K.REVERSAL_FAILED}


def test_a_successful_refund_child_is_not_a_payment_even_without_the_unsigned_flags() -> None:
    # Older payloads omit is_refund / is_void: the signed has_parent_transaction decides.
    old_payload_child = transaction_flags(has_parent_transaction=True)

    assert classify(old_payload_child) is K.REFUND


def test_an_old_void_child_without_is_void_counts_as_a_refund() -> None:
    assert classify(transaction_flags(has_parent_transaction=True)) is K.REFUND
    assert classify(transaction_flags(has_parent_transaction=True, is_void=True)) is K.VOID


def test_a_transaction_never_reads_as_an_expiry_an_override_or_a_duplicate_payment() -> None:
    # Those facts come from the reconciler, an admin and the enrolment step, never PayMob.
    kinds = {classify(flags) for flags in EVERY_COMBINATION}

    assert kinds == set(FactKind) - {K.EXPIRED, K.OVERRIDE, K.DUPLICATE_PAYMENT}


def test_the_flags_are_booleans_so_the_parser_must_convert_false_strings() -> None:
    # "false" is truthy: converting the redirect's strings to bool is the parser's job, and
    # the type says so.
    hints = get_type_hints(TransactionFlags)

    assert {name: hints[name] for name in ALL_FLAGS} == dict.fromkeys(ALL_FLAGS, bool)
