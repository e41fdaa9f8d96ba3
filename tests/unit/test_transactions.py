"""PayMob transactions parsed from what PayMob signed, and nothing the holder could add."""

from __future__ import annotations

from pathlib import Path

import pytest

from coursepay.domain.facts import FactKind, FactSource
from coursepay.domain.signature import (
    HmacSecrets,
    check_redirect_query,
    transaction_message_from_query,
)
from coursepay.paymob.transactions import parse_redirect, parse_transaction
from tests.support.callbacks import TEST_HMAC_SECRET, transaction_callback

REDIRECT = (
    (Path(__file__).resolve().parents[1] / "events" / "transaction_response_redirect.txt")
    .read_text()
    .strip()
)
SECRETS = HmacSecrets(TEST_HMAC_SECRET)


def verified(raw_query: str) -> dict[str, str]:
    check, params = check_redirect_query(raw_query, SECRETS)
    assert check.is_valid
    return params


def test_a_redirect_parses_to_the_signed_transaction():
    txn = parse_redirect(verified(REDIRECT))

    assert (txn.id, txn.paymob_order_id, txn.amount_cents) == (192036465, "217503754", 100000)
    assert txn.signed_message() == transaction_message_from_query(verified(REDIRECT))


def without(raw_query: str, *keys: str) -> str:
    return "&".join(p for p in raw_query.split("&") if p.split("=", 1)[0] not in keys)


@pytest.mark.parametrize(
    "appended", ["order.id=999999", "obj.order.id=999999", "is_void=true", "is_refund=true"]
)
def test_unsigned_keys_added_to_a_signed_redirect_change_nothing_it_means(appended):
    query = without(REDIRECT, "is_void", "is_refund")

    txn = parse_redirect(verified(f"{query}&{appended}"))

    assert txn.paymob_order_id == "217503754"
    assert txn.to_fact(FactSource.REDIRECT).kind is FactKind.SUCCESS


@pytest.mark.parametrize("appended", ["id=5", "order=999999", "is_void=true"])
def test_a_key_given_twice_makes_the_redirect_malformed(appended):
    check, params = check_redirect_query(f"{REDIRECT}&{appended}", SECRETS)

    assert not check.is_valid
    assert params == {}


def test_the_signed_message_re_renders_exactly_for_a_canonical_callback():
    obj = transaction_callback()["obj"]

    assert parse_transaction(obj).signed_message() == (
        "1000002024-06-13T11:33:44.592345EGPfalsefalse1920364654097558truefalsefalsefalse"
        "truefalse217503754302852false2346MasterCardcardtrue"
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [("owner", "0302852"), ("amount_cents", "0100000"), ("integration_id", "04097558")],
)
def test_digits_the_parser_would_normalise_do_not_re_render_the_same(field, value):
    obj = transaction_callback()["obj"]
    obj[field] = value

    txn = parse_transaction(obj)

    from coursepay.domain.signature import transaction_message_from_obj

    assert txn.signed_message() != transaction_message_from_obj(obj)
