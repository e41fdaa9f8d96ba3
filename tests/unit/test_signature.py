"""PayMob HMAC verification: the official vector, every signed field, rendering and decoding."""

import hashlib
import hmac
import json
import math
from collections.abc import Callable, Mapping
from copy import deepcopy
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coursepay.domain.signature import (
    TOKEN_HMAC_FIELDS,
    TRANSACTION_HMAC_FIELDS,
    HmacSecrets,
    SignatureCheck,
    UnsignableValueError,
    check,
    check_redirect_query,
    check_token_obj,
    check_transaction_obj,
    missing_signed_query_fields,
    null_signed_fields,
    parse_raw_query,
    render_value,
    sign,
    sign_token_obj,
    sign_transaction_obj,
    sign_transaction_query,
    token_message,
    transaction_message_from_obj,
    transaction_message_from_query,
)

EVENTS = Path(__file__).resolve().parent.parent / "events"

# PayMob's documented example: the sample callback in tests/events, signed with this secret.
SAMPLE_SECRET = "04DC1A9490B8CC2094C011FC055ADCDB"
SAMPLE_MESSAGE = (
    "1000002024-06-13T11:33:44.592345EGPfalsefalse1920364654097558truefalsefalsefalsetruefalse"
    "217503754302852false2346MasterCardcardtrue"
)
SAMPLE_DIGEST = (
    "fa8ac0b7f3852e60c50e7fdd4ea5ef0bda96030c19dea1d55df8c76d6c08ab18"
    "77774662cbb04981dc84839ad4da560bcc8cb53b8973548657f7e8f8d2e79930"
)
# tests/events/token_callback.json signed with the sample secret, pinned when it was written.
TOKEN_SAMPLE_MESSAGE = (
    "MasterCard2024-06-13T11:33:45.118027student@example.com8845123xxxx-xxxx-xxxx-2346"
    "164295217503754d7a342a4e8974bbb1be9c09a3b4ecbe81f9ecf985b224787cda7d333"
)
TOKEN_SAMPLE_DIGEST = (
    "902b822bd8277a6e4965ab844c88fd07e9916bc12bc147d75a7dc69ca75d6894"
    "fc34f23c16463b6dde14abca61b0814f85ef500b0b8a9e10f4125631d9680a07"
)
OTHER_SECRET = "7B31E0C55D2A4F8E9C06B1D4A3F27E58"
THIRD_SECRET = "C2E9A4F7B1D03E6A58F4C7B2E91D0A36"

SAMPLE_SECRETS = HmacSecrets(current=SAMPLE_SECRET)

# As PAYMOB.md lists them. Pinned literally: the official vector alone would not notice two
# fields with equal values (is_auth, is_capture) trading places.
PAYMOB_TRANSACTION_FIELDS = (
    "amount_cents",
    "created_at",
    "currency",
    "error_occured",
    "has_parent_transaction",
    "id",
    "integration_id",
    "is_3d_secure",
    "is_auth",
    "is_capture",
    "is_refunded",
    "is_standalone_payment",
    "is_voided",
    "order.id",
    "owner",
    "pending",
    "source_data.pan",
    "source_data.sub_type",
    "source_data.type",
    "success",
)
PAYMOB_TOKEN_FIELDS = (
    "card_subtype",
    "created_at",
    "email",
    "id",
    "masked_pan",
    "merchant_id",
    "order_id",
    "token",
)


# --- builders ----------------------------------------------------------------------------


def load_event(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text(encoding="utf-8"))
    return loaded


def sample_obj() -> dict[str, Any]:
    obj: dict[str, Any] = load_event("transaction_processed_callback.json")["obj"]
    return obj


def sample_token_obj() -> dict[str, Any]:
    obj: dict[str, Any] = load_event("token_callback.json")["obj"]
    return obj


def sample_raw_query() -> str:
    # One line; the file may end with a newline, which is not part of the query.
    return (EVENTS / "transaction_response_redirect.txt").read_text(encoding="utf-8").strip()


def value_at(obj: Mapping[str, Any], dotted: str) -> Any:
    node: Any = obj
    for key in dotted.split("."):
        node = node[key]
    return node


def with_field(obj: Mapping[str, Any], dotted: str, value: Any) -> dict[str, Any]:
    changed = deepcopy(dict(obj))
    *parents, leaf = dotted.split(".")
    node = changed
    for key in parents:
        node = node.setdefault(key, {})
    node[leaf] = value
    return changed


def without_field(obj: Mapping[str, Any], dotted: str) -> dict[str, Any]:
    changed = deepcopy(dict(obj))
    *parents, leaf = dotted.split(".")
    node = changed
    for key in parents:
        node = node[key]
    del node[leaf]
    return changed


def query_key(field: str) -> str:
    return "order" if field == "order.id" else field


def as_query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def query_params_for(obj: Mapping[str, Any]) -> dict[str, str]:
    """The redirect PayMob sends for a transaction: flattened keys, strings, unsigned detail."""
    params = {
        query_key(field): as_query_value(value_at(obj, field)) for field in TRANSACTION_HMAC_FIELDS
    }
    message = obj.get("data", {}).get("message")
    if message is not None:
        params["data.message"] = message
    return params


Quoter = Callable[..., str]


def raw_query(params: Mapping[str, str], hmac_value: str, quote_via: Quoter = quote_plus) -> str:
    # PayMob's redirects are form encoded (quote_plus): `:` as %3A, `+` as %2B, space as `+`.
    return urlencode([*params.items(), ("hmac", hmac_value)], quote_via=quote_via)


def signed_redirect(
    obj: Mapping[str, Any], secret: str = SAMPLE_SECRET, quote_via: Quoter = quote_plus
) -> str:
    return raw_query(query_params_for(obj), sign_transaction_obj(obj, secret), quote_via)


def with_query_component(raw: str, key: str, raw_value: str) -> str:
    """The raw query with one component's encoded value replaced verbatim."""
    return "&".join(
        f"{key}={raw_value}" if segment.partition("=")[0] == key else segment
        for segment in raw.split("&")
    )


def mutated(value: Any) -> Any:
    """A different value of the same type."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    return f"{value}0"


def mutated_query_value(value: str) -> str:
    if value in ("true", "false"):
        return "false" if value == "true" else "true"
    if value.isdigit():
        return str(int(value) + 1)
    return f"{value}0"


# --- the official example ----------------------------------------------------------------


def test_the_sample_callback_renders_paymobs_concatenated_string_and_verifies() -> None:
    # Given PayMob's sample transaction processed callback
    obj = sample_obj()

    # When its message is built and signed with the sample secret
    message = transaction_message_from_obj(obj)

    # Then it is PayMob's documented string and digest, and the digest verifies
    assert message == SAMPLE_MESSAGE
    assert sign(message, SAMPLE_SECRET) == SAMPLE_DIGEST
    assert check_transaction_obj(obj, SAMPLE_DIGEST, SAMPLE_SECRETS) is SignatureCheck.VALID


def test_the_signed_fields_are_paymobs_in_paymobs_order() -> None:
    assert TRANSACTION_HMAC_FIELDS == PAYMOB_TRANSACTION_FIELDS
    assert TOKEN_HMAC_FIELDS == PAYMOB_TOKEN_FIELDS


def test_the_secret_is_keyed_as_its_ascii_text_with_case_preserved() -> None:
    # Given the sample secret, which looks like hex
    hex_decoded_key = bytes.fromhex(SAMPLE_SECRET)

    # When it is hex-decoded or lowercased instead of used as written
    hex_decoded = hmac.new(hex_decoded_key, SAMPLE_MESSAGE.encode(), hashlib.sha512).hexdigest()
    lowercased = sign(SAMPLE_MESSAGE, SAMPLE_SECRET.lower())

    # Then neither reproduces PayMob's digest, and a lowercased secret does not verify
    assert SAMPLE_DIGEST not in (hex_decoded, lowercased)
    lowercased_secrets = HmacSecrets(current=SAMPLE_SECRET.lower())
    assert check(SAMPLE_MESSAGE, SAMPLE_DIGEST, lowercased_secrets) is SignatureCheck.MISMATCH


def test_the_sample_redirect_verifies_with_the_same_digest_as_its_callback() -> None:
    # Given the browser redirect PayMob sends for the sample transaction
    raw = sample_raw_query()

    # When it is verified from the raw query string
    result, params = check_redirect_query(raw, SAMPLE_SECRETS)

    # Then it verifies, under the same digest, and yields the decoded parameters without hmac
    assert result is SignatureCheck.VALID
    assert f"hmac={SAMPLE_DIGEST}" in raw
    assert transaction_message_from_query(params) == SAMPLE_MESSAGE
    assert params["order"] == "217503754"
    assert params["created_at"] == "2024-06-13T11:33:44.592345"
    assert params["data.message"] == "Approved"
    assert "hmac" not in params
    assert sign_transaction_query(params, SAMPLE_SECRET) == SAMPLE_DIGEST


# --- every signed field ------------------------------------------------------------------


@pytest.mark.parametrize("field", TRANSACTION_HMAC_FIELDS)
def test_changing_a_signed_field_of_a_callback_breaks_its_signature(field: str) -> None:
    # Given the sample callback with one signed field changed, and the genuine hmac
    obj = sample_obj()
    tampered = with_field(obj, field, mutated(value_at(obj, field)))

    # When it is verified
    result = check_transaction_obj(tampered, SAMPLE_DIGEST, SAMPLE_SECRETS)

    # Then the signature no longer holds
    assert result is SignatureCheck.MISMATCH


@pytest.mark.parametrize("field", TRANSACTION_HMAC_FIELDS)
def test_changing_a_signed_parameter_of_a_redirect_breaks_its_signature(field: str) -> None:
    # Given the sample redirect, which verifies, and a copy with one signed parameter changed
    params = query_params_for(sample_obj())
    assert check_redirect_query(raw_query(params, SAMPLE_DIGEST), SAMPLE_SECRETS)[0].is_valid
    key = query_key(field)
    tampered = {**params, key: mutated_query_value(params[key])}

    # When it is verified with the genuine hmac
    result, verified = check_redirect_query(raw_query(tampered, SAMPLE_DIGEST), SAMPLE_SECRETS)

    # Then the signature no longer holds and nothing is handed on
    assert result is SignatureCheck.MISMATCH
    assert verified == {}


@pytest.mark.parametrize("field", TRANSACTION_HMAC_FIELDS)
def test_a_signed_field_left_out_of_a_redirect_breaks_its_signature(field: str) -> None:
    # Given the sample redirect without one signed parameter
    params = query_params_for(sample_obj())
    del params[query_key(field)]

    # When it is verified, the missing field renders as nothing, and the signature fails
    assert missing_signed_query_fields(params) == (field,)
    result, _ = check_redirect_query(raw_query(params, SAMPLE_DIGEST), SAMPLE_SECRETS)
    assert result is SignatureCheck.MISMATCH


# --- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "rendered"),
    [
        (True, "true"),
        (False, "false"),
        (0, "0"),
        (100000, "100000"),
        (-1, "-1"),
        ("MasterCard", "MasterCard"),
        ("false", "false"),
        ("True", "True"),
        ("", ""),
        (None, ""),
        ("ميزة", "ميزة"),
        ("2024-06-13T11:33:44.592345+04:00", "2024-06-13T11:33:44.592345+04:00"),
        (100000.0, "100000"),
        (Decimal("100000"), "100000"),
        (Decimal("1E+3"), "1000"),
    ],
)
def test_values_render_as_paymob_concatenates_them(value: object, rendered: str) -> None:
    assert render_value(value) == rendered


@pytest.mark.parametrize(
    "value",
    [
        1000.5,
        math.nan,
        math.inf,
        Decimal("1000.5"),
        Decimal("NaN"),
        {"id": 217503754},
        [2346],
        b"2346",
        "\ud800",
        10**5000,
    ],
    ids=[
        "fraction",
        "nan",
        "inf",
        "decimal-fraction",
        "decimal-nan",
        "object",
        "list",
        "bytes",
        "lone-surrogate",
        "huge-int",
    ],
)
def test_a_value_paymob_cannot_have_signed_is_refused(value: object) -> None:
    with pytest.raises(UnsignableValueError):
        render_value(value)


def test_booleans_never_render_as_python_literals() -> None:
    # Given a transaction whose signed flags are all true
    flags = [f for f in TRANSACTION_HMAC_FIELDS if isinstance(value_at(sample_obj(), f), bool)]
    obj = sample_obj()
    for flag in flags:
        obj = with_field(obj, flag, True)

    # When its message is built
    message = transaction_message_from_obj(obj)

    # Then every flag is PayMob's `true`, and no Python literal appears
    assert len(flags) == 10
    assert message.count("true") == 10
    assert "True" not in message
    assert "False" not in message


def test_the_string_false_is_rendered_verbatim_and_never_taken_for_true() -> None:
    # Given a signature PayMob made over a successful transaction
    paid = sample_obj()
    hmac_of_paid = sign_transaction_obj(paid, SAMPLE_SECRET)

    # When the body instead says success is the string "false"
    says_false = with_field(paid, "success", "false")

    # Then it renders as `false`, the same as the boolean, and the success signature fails
    assert transaction_message_from_obj(says_false).endswith("cardfalse")
    assert transaction_message_from_obj(says_false) == transaction_message_from_obj(
        with_field(paid, "success", False)
    )
    assert check_transaction_obj(says_false, hmac_of_paid, SAMPLE_SECRETS) is (
        SignatureCheck.MISMATCH
    )


def test_arabic_text_is_signed_as_its_utf8_bytes_in_a_callback_and_a_redirect() -> None:
    # Given a Meeza card transaction whose sub type PayMob wrote in Arabic
    obj = with_field(sample_obj(), "source_data.sub_type", "ميزة")
    message = SAMPLE_MESSAGE.replace("MasterCard", "ميزة")
    utf8_digest = hmac.new(
        SAMPLE_SECRET.encode("ascii"), message.encode("utf-8"), hashlib.sha512
    ).hexdigest()

    # When the callback and its percent-encoded redirect are verified
    callback = check_transaction_obj(obj, utf8_digest, SAMPLE_SECRETS)
    redirect = signed_redirect(obj)
    result, params = check_redirect_query(redirect, SAMPLE_SECRETS)

    # Then both carry the Arabic text as UTF-8, and both verify
    assert transaction_message_from_obj(obj) == message
    assert callback is SignatureCheck.VALID
    assert "source_data.sub_type=%D9%85%D9%8A%D8%B2%D8%A9" in redirect
    assert result is SignatureCheck.VALID
    assert params["source_data.sub_type"] == "ميزة"


def test_a_null_or_missing_signed_field_renders_empty_and_is_reported() -> None:
    # Given a callback whose sub type is null and whose order object is missing
    obj = without_field(with_field(sample_obj(), "source_data.sub_type", None), "order")

    # When its message is built
    message = transaction_message_from_obj(obj)

    # Then both render as the empty string and are named for the caller to count
    assert message == SAMPLE_MESSAGE.replace("MasterCard", "").replace("217503754", "")
    assert null_signed_fields(obj) == ("order.id", "source_data.sub_type")
    assert null_signed_fields(sample_obj()) == ()
    assert check_transaction_obj(obj, sign(message, SAMPLE_SECRET), SAMPLE_SECRETS).is_valid


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("amount_cents", {"value": 100000}),
        ("amount_cents", 1000.5),
        ("order", 217503754),
        ("source_data", "card"),
    ],
    ids=["object-amount", "fractional-amount", "order-not-an-object", "source-data-not-an-object"],
)
def test_a_callback_with_an_unsignable_field_is_malformed_not_an_error(
    field: str, value: object
) -> None:
    # Given a callback body with a signed field PayMob cannot have produced
    obj = with_field(sample_obj(), field, value)

    # When it is verified, with and without an hmac
    with_hmac = check_transaction_obj(obj, SAMPLE_DIGEST, SAMPLE_SECRETS)
    without_hmac = check_transaction_obj(obj, None, SAMPLE_SECRETS)

    # Then it is MALFORMED (the missing hmac is reported first), never an exception
    assert with_hmac is SignatureCheck.MALFORMED
    assert without_hmac is SignatureCheck.MISSING
    with pytest.raises(UnsignableValueError):
        transaction_message_from_obj(obj)


def test_a_message_with_no_utf8_form_is_malformed_not_an_error() -> None:
    assert check("\ud800", SAMPLE_DIGEST, SAMPLE_SECRETS) is SignatureCheck.MALFORMED


def test_integral_numbers_from_dynamodb_or_a_float_parser_verify() -> None:
    # Given the sample callback as read back from DynamoDB (Decimal) or a float-happy parser
    from_dynamodb = with_field(sample_obj(), "amount_cents", Decimal(100000))
    from_floats = with_field(sample_obj(), "order.id", 217503754.0)

    # Then both still verify with PayMob's digest
    assert check_transaction_obj(from_dynamodb, SAMPLE_DIGEST, SAMPLE_SECRETS).is_valid
    assert check_transaction_obj(from_floats, SAMPLE_DIGEST, SAMPLE_SECRETS).is_valid


# --- decoding the redirect -------------------------------------------------------------------


OFFSET_CREATED_AT = "2024-06-13T15:33:44.592345+04:00"


def test_a_created_at_offset_sent_as_percent_2b_verifies() -> None:
    # Given a Gulf transaction created at +04:00, redirected with `+` encoded as %2B
    obj = with_field(sample_obj(), "created_at", OFFSET_CREATED_AT)
    raw = with_query_component(
        signed_redirect(obj), "created_at", "2024-06-13T15%3A33%3A44.592345%2B04:00"
    )

    # When it is verified
    result, params = check_redirect_query(raw, SAMPLE_SECRETS)

    # Then it verifies, and the offset is decoded once to `+`
    assert result is SignatureCheck.VALID
    assert params["created_at"] == OFFSET_CREATED_AT


def test_a_created_at_offset_left_as_a_literal_plus_verifies() -> None:
    # Given the same redirect with the `+` left unencoded by whoever built the URL
    obj = with_field(sample_obj(), "created_at", OFFSET_CREATED_AT)
    raw = with_query_component(signed_redirect(obj), "created_at", OFFSET_CREATED_AT)

    # Then the percent reading keeps the `+`, and it verifies
    result, params = check_redirect_query(raw, SAMPLE_SECRETS)
    assert result is SignatureCheck.VALID
    assert params["created_at"] == OFFSET_CREATED_AT


def test_a_created_at_signed_with_a_space_does_not_verify_a_plus_offset() -> None:
    # Given a signature over created_at with a space where the offset's `+` was
    spaced = with_field(sample_obj(), "created_at", OFFSET_CREATED_AT.replace("+", " "))
    raw = with_query_component(
        signed_redirect(spaced), "created_at", "2024-06-13T15%3A33%3A44.592345%2B04:00"
    )

    # When the redirect carries the offset as %2B, it does not verify
    result, params = check_redirect_query(raw, SAMPLE_SECRETS)
    assert result is SignatureCheck.MISMATCH
    assert params == {}


def test_a_form_encoded_space_in_a_signed_value_verifies_through_the_form_reading() -> None:
    # Given a signed sub type with a space, which form encoding sends as `+`
    obj = with_field(sample_obj(), "source_data.sub_type", "American Express")
    raw = signed_redirect(obj, quote_via=quote_plus)
    assert "source_data.sub_type=American+Express" in raw

    # When it is verified
    result, params = check_redirect_query(raw, SAMPLE_SECRETS)

    # Then the form reading (a `+` is a space) verifies it
    assert result is SignatureCheck.VALID
    assert params["source_data.sub_type"] == "American Express"


def test_an_unsigned_message_gets_its_spaces_back_when_either_reading_verifies() -> None:
    # Given a declined redirect, form encoded as PayMob sends it: no `+` in a signed value,
    # so the signature verifies under both readings, and the unsigned message is Do+not+honour
    obj = {**sample_obj(), "success": False, "data": {"message": "Do not honour"}}
    raw = signed_redirect(obj, quote_via=quote_plus)
    assert "data.message=Do+not+honour" in raw

    # When it is verified
    result, params = check_redirect_query(raw, SAMPLE_SECRETS)

    # Then the form reading is the one kept: the message reads as PayMob wrote it
    assert result is SignatureCheck.VALID
    assert params["data.message"] == "Do not honour"


def test_a_signed_plus_sent_as_percent_2b_is_kept_beside_form_encoded_spaces() -> None:
    # Given a Gulf transaction (offset `+04:00`, sent as %2B) declined with a spaced message
    obj = {
        **with_field(sample_obj(), "created_at", OFFSET_CREATED_AT),
        "data": {"message": "Insufficient funds"},
    }
    raw = signed_redirect(obj, quote_via=quote_plus)
    assert "%2B04%3A00" in raw and "Insufficient+funds" in raw

    result, params = check_redirect_query(raw, SAMPLE_SECRETS)

    # Then both decode right in the one reading
    assert result is SignatureCheck.VALID
    assert params["created_at"] == OFFSET_CREATED_AT
    assert params["data.message"] == "Insufficient funds"


def test_the_form_reading_comes_first_and_the_percent_reading_only_for_a_literal_plus() -> None:
    assert parse_raw_query("created_at=11%3A33%2B04%3A00&pan=2346") == [
        {"created_at": "11:33+04:00", "pan": "2346"}
    ]
    assert parse_raw_query("created_at=11%3A33+04%3A00") == [
        {"created_at": "11:33 04:00"},
        {"created_at": "11:33+04:00"},
    ]


def test_a_redirect_value_is_decoded_exactly_once() -> None:
    # Given a signature over an offset `+`, and a redirect carrying it encoded twice (%252B)
    obj = with_field(sample_obj(), "created_at", OFFSET_CREATED_AT)
    double_encoded = with_query_component(
        signed_redirect(obj), "created_at", "2024-06-13T15%3A33%3A44.592345%252B04%3A00"
    )
    # And a signature over the literal text `%2B`, sent encoded once
    literal = with_field(sample_obj(), "created_at", "2024-06-13T15:33:44.592345%2B04:00")

    # Then the double-encoded one does not verify, and the literal text does
    assert check_redirect_query(double_encoded, SAMPLE_SECRETS)[0] is SignatureCheck.MISMATCH
    result, params = check_redirect_query(signed_redirect(literal), SAMPLE_SECRETS)
    assert result is SignatureCheck.VALID
    assert params["created_at"] == "2024-06-13T15:33:44.592345%2B04:00"


def test_dots_in_redirect_keys_are_kept_and_never_read_as_underscores() -> None:
    # Given the sample redirect, and a copy whose dotted keys were rewritten with underscores
    raw = sample_raw_query()
    underscored = raw.replace("source_data.", "source_data_")

    # When both are verified
    result, params = check_redirect_query(raw, SAMPLE_SECRETS)
    underscored_result, _ = check_redirect_query(underscored, SAMPLE_SECRETS)

    # Then the dotted keys survive, and the rewritten query does not verify
    assert result is SignatureCheck.VALID
    assert {"source_data.pan", "source_data.type", "source_data.sub_type"} <= params.keys()
    assert not any("_pan" in key or "data_message" in key for key in params)
    assert underscored_result is SignatureCheck.MISMATCH


@pytest.mark.parametrize(
    "raw",
    [
        "order=217503754&" + "order=1&hmac=" + SAMPLE_DIGEST,
        "id=192036465&%69d=1&hmac=" + SAMPLE_DIGEST,
        "data.message=Approved&data.message=Declined&hmac=" + SAMPLE_DIGEST,
        f"hmac={SAMPLE_DIGEST}&hmac={SAMPLE_DIGEST}",
        "source_data.sub_type=%FF&hmac=" + SAMPLE_DIGEST,
    ],
    ids=[
        "repeated-signed-key",
        "repeated-after-decoding",
        "repeated-unsigned-key",
        "repeated-hmac",
        "invalid-utf8",
    ],
)
def test_a_redirect_with_no_single_reading_is_malformed(raw: str) -> None:
    result, params = check_redirect_query(raw, SAMPLE_SECRETS)
    assert result is SignatureCheck.MALFORMED
    assert params == {}


def test_a_repeated_signed_key_is_malformed_even_when_the_first_value_is_genuine() -> None:
    # Given the genuine sample redirect with a second `order` appended
    raw = sample_raw_query() + "&order=1"

    # Then it is refused: whichever value a later reader picks may not be the signed one
    assert check_redirect_query(raw, SAMPLE_SECRETS) == (SignatureCheck.MALFORMED, {})


# --- the hmac itself -----------------------------------------------------------------------


HMAC_FORMATS = [
    pytest.param(None, SignatureCheck.MISSING, id="missing"),
    pytest.param("", SignatureCheck.MALFORMED, id="empty"),
    pytest.param("fa8ac0b7", SignatureCheck.MALFORMED, id="short"),
    pytest.param(SAMPLE_DIGEST[:-1], SignatureCheck.MALFORMED, id="127-chars"),
    pytest.param(SAMPLE_DIGEST + "0", SignatureCheck.MALFORMED, id="129-chars"),
    pytest.param("g" + SAMPLE_DIGEST[1:], SignatureCheck.MALFORMED, id="non-hex"),
    pytest.param("٣" + SAMPLE_DIGEST[1:], SignatureCheck.MALFORMED, id="arabic-indic-digit"),
    pytest.param(SAMPLE_DIGEST + "\n", SignatureCheck.MALFORMED, id="trailing-newline"),
    pytest.param(" " + SAMPLE_DIGEST[1:], SignatureCheck.MALFORMED, id="space"),
    pytest.param(SAMPLE_DIGEST[:-1] + "1", SignatureCheck.MISMATCH, id="one-digit-off"),
    pytest.param(SAMPLE_DIGEST.upper(), SignatureCheck.VALID, id="uppercase"),
    pytest.param(SAMPLE_DIGEST, SignatureCheck.VALID, id="genuine"),
]


@pytest.mark.parametrize(("received", "expected"), HMAC_FORMATS)
def test_the_hmac_of_a_callback_is_classified_never_raised_on(
    received: str | None, expected: SignatureCheck
) -> None:
    assert check(SAMPLE_MESSAGE, received, SAMPLE_SECRETS) is expected
    assert check_transaction_obj(sample_obj(), received, SAMPLE_SECRETS) is expected


@pytest.mark.parametrize(("received", "expected"), HMAC_FORMATS)
def test_the_hmac_of_a_redirect_is_classified_never_raised_on(
    received: str | None, expected: SignatureCheck
) -> None:
    # Given the sample redirect with its hmac replaced (or dropped)
    params = query_params_for(sample_obj())
    raw = urlencode(params) if received is None else raw_query(params, received, quote)

    # When it is verified, it is classified, and only a valid one yields parameters
    result, verified = check_redirect_query(raw, SAMPLE_SECRETS)
    assert result is expected
    assert bool(verified) is expected.is_valid


# --- secret rotation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secrets", "expected"),
    [
        (HmacSecrets(current=SAMPLE_SECRET, previous=OTHER_SECRET), SignatureCheck.VALID),
        (
            HmacSecrets(current=OTHER_SECRET, previous=SAMPLE_SECRET),
            SignatureCheck.VALID_PREVIOUS_SECRET,
        ),
        (HmacSecrets(current=OTHER_SECRET), SignatureCheck.MISMATCH),
        (HmacSecrets(current=OTHER_SECRET, previous=THIRD_SECRET), SignatureCheck.MISMATCH),
    ],
    ids=["current", "previous-during-rotation", "unknown", "unknown-during-rotation"],
)
def test_a_callback_verifies_against_the_current_then_the_previous_secret(
    secrets: HmacSecrets, expected: SignatureCheck
) -> None:
    assert check_transaction_obj(sample_obj(), SAMPLE_DIGEST, secrets) is expected
    assert check_redirect_query(sample_raw_query(), secrets)[0] is expected


def test_only_the_two_valid_verdicts_are_valid() -> None:
    valid = {verdict for verdict in SignatureCheck if verdict.is_valid}
    assert valid == {SignatureCheck.VALID, SignatureCheck.VALID_PREVIOUS_SECRET}


def test_secrets_never_show_in_a_repr() -> None:
    secrets = HmacSecrets(current=SAMPLE_SECRET, previous=OTHER_SECRET)
    assert SAMPLE_SECRET not in repr(secrets)
    assert OTHER_SECRET not in repr(secrets)


@pytest.mark.parametrize(
    ("current", "previous"),
    [
        ("", None),
        (SAMPLE_SECRET + "\n", None),
        (" " + SAMPLE_SECRET, None),
        ("سر", None),
        (SAMPLE_SECRET, ""),
    ],
    ids=["empty", "trailing-newline", "leading-space", "not-ascii", "empty-previous"],
)
def test_an_unusable_secret_is_refused_when_configured(current: str, previous: str | None) -> None:
    with pytest.raises(ValueError, match="HMAC secret"):
        HmacSecrets(current=current, previous=previous)


# --- TOKEN callbacks -----------------------------------------------------------------------


def test_the_sample_token_callback_renders_its_eight_fields_and_verifies() -> None:
    # Given a saved-card TOKEN callback
    obj = sample_token_obj()

    # When its message is built and checked against the digest pinned for the sample secret
    message = token_message(obj)
    result = check_token_obj(obj, TOKEN_SAMPLE_DIGEST, SAMPLE_SECRETS)

    # Then the eight fields are concatenated in PayMob's order, and it verifies
    assert message == TOKEN_SAMPLE_MESSAGE
    assert sign_token_obj(obj, SAMPLE_SECRET) == TOKEN_SAMPLE_DIGEST
    assert result is SignatureCheck.VALID


@pytest.mark.parametrize("field", TOKEN_HMAC_FIELDS)
def test_changing_a_signed_field_of_a_token_callback_breaks_its_signature(field: str) -> None:
    obj = sample_token_obj()
    tampered = with_field(obj, field, mutated(obj[field]))
    assert check_token_obj(tampered, TOKEN_SAMPLE_DIGEST, SAMPLE_SECRETS) is (
        SignatureCheck.MISMATCH
    )


def test_a_token_callback_order_id_verifies_as_a_number_or_a_string() -> None:
    numeric = with_field(sample_token_obj(), "order_id", 217503754)
    assert check_token_obj(numeric, TOKEN_SAMPLE_DIGEST, SAMPLE_SECRETS) is SignatureCheck.VALID


def test_an_unsigned_token_callback_is_missing() -> None:
    assert check_token_obj(sample_token_obj(), None, SAMPLE_SECRETS) is SignatureCheck.MISSING


# --- properties over generated transactions -------------------------------------------------


def paymob_timestamp(moment: datetime, offset: str) -> str:
    return moment.isoformat(timespec="microseconds") + offset


_ids = st.integers(min_value=1, max_value=10**12)
_flags = st.booleans()
# Free text mixes what breaks naive encoders: `+`, `%`, `&`, `=`, spaces, Arabic.
_free_text = st.text(
    alphabet=st.characters(codec="utf-8") | st.sampled_from("+%&= .:ميزة"), max_size=24
)

FIELD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "amount_cents": st.integers(min_value=1, max_value=10**10),
    "created_at": st.builds(
        paymob_timestamp,
        st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2035, 12, 31)),
        st.sampled_from(["", "+02:00", "+03:00", "+04:00"]),
    ),
    "currency": st.sampled_from(["EGP", "SAR", "AED", "OMR"]),
    "error_occured": _flags,
    "has_parent_transaction": _flags,
    "id": _ids,
    "integration_id": _ids,
    "is_3d_secure": _flags,
    "is_auth": _flags,
    "is_capture": _flags,
    "is_refunded": _flags,
    "is_standalone_payment": _flags,
    "is_voided": _flags,
    "order.id": _ids,
    "owner": _ids,
    "pending": _flags,
    "source_data.pan": st.from_regex(r"[0-9]{4}", fullmatch=True) | st.just("01010101010"),
    "source_data.sub_type": st.sampled_from(["MasterCard", "Visa", "Meeza", "American Express"])
    | _free_text,
    "source_data.type": st.sampled_from(["card", "wallet", "kiosk"]) | _free_text,
    "success": _flags,
}
assert tuple(FIELD_STRATEGIES) == TRANSACTION_HMAC_FIELDS


def transaction_from(fields: Mapping[str, Any], message: str) -> dict[str, Any]:
    obj: dict[str, Any] = {"data": {"message": message}, "profile_id": 164295}
    for name, value in fields.items():
        obj = with_field(obj, name, value)
    return obj


transactions = st.builds(transaction_from, st.fixed_dictionaries(FIELD_STRATEGIES), _free_text)


@given(transactions)
def test_any_signed_transaction_verifies(obj: dict[str, Any]) -> None:
    hmac_value = sign_transaction_obj(obj, SAMPLE_SECRET)
    assert check_transaction_obj(obj, hmac_value, SAMPLE_SECRETS) is SignatureCheck.VALID


@given(transactions, st.sampled_from(TRANSACTION_HMAC_FIELDS), st.data())
def test_any_change_to_one_signed_field_is_a_mismatch(
    obj: dict[str, Any], field: str, data: st.DataObject
) -> None:
    # Given a signed transaction and one signed field given another value of its type
    hmac_value = sign_transaction_obj(obj, SAMPLE_SECRET)
    original = value_at(obj, field)
    other = data.draw(FIELD_STRATEGIES[field].filter(lambda value: value != original))
    tampered = with_field(obj, field, other)

    # When the tampered callback, and its redirect, are verified with the genuine hmac
    callback = check_transaction_obj(tampered, hmac_value, SAMPLE_SECRETS)
    redirect, _ = check_redirect_query(
        raw_query(query_params_for(tampered), hmac_value), SAMPLE_SECRETS
    )

    # Then neither verifies
    assert callback is SignatureCheck.MISMATCH
    assert redirect is SignatureCheck.MISMATCH


@given(transactions)
def test_a_callback_and_its_flattened_redirect_sign_the_same_message(obj: dict[str, Any]) -> None:
    params = query_params_for(obj)
    assert transaction_message_from_query(params) == transaction_message_from_obj(obj)
    assert missing_signed_query_fields(params) == null_signed_fields(obj) == ()


@given(transactions, st.sampled_from([quote, quote_plus]))
def test_a_signed_redirect_survives_percent_and_form_encoding(
    obj: dict[str, Any], quote_via: Quoter
) -> None:
    # Given a signed transaction, redirected with either encoding of its parameters
    raw = signed_redirect(obj, quote_via=quote_via)

    # When the raw query is verified
    result, params = check_redirect_query(raw, SAMPLE_SECRETS)

    # Then it verifies, and every signed parameter reads back as sent
    sent = query_params_for(obj)
    assert result is SignatureCheck.VALID
    signed_keys = [query_key(field) for field in TRANSACTION_HMAC_FIELDS]
    assert {key: params[key] for key in signed_keys} == {key: sent[key] for key in signed_keys}
    # And so does every unsigned one: either encoding decodes exactly under the form reading
    assert params == sent
