"""PayMob HMAC signatures: build the signed message of a callback and verify its digest."""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, unquote_plus

# PayMob's order, hard-coded: sorting at run time would silently follow any key we add or
# PayMob renames. `error_occured` is PayMob's spelling.
TRANSACTION_HMAC_FIELDS: tuple[str, ...] = (
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

# The browser redirect flattens nested keys with dots, except the order id, sent as `order`.
TRANSACTION_QUERY_KEYS: tuple[str, ...] = tuple(
    "order" if name == "order.id" else name for name in TRANSACTION_HMAC_FIELDS
)

TOKEN_HMAC_FIELDS: tuple[str, ...] = (
    "card_subtype",
    "created_at",
    "email",
    "id",
    "masked_pan",
    "merchant_id",
    "order_id",
    "token",
)

HMAC_QUERY_KEY = "hmac"

# A SHA-512 digest in hex. Explicit ASCII ranges: `\d` would also match Arabic-Indic digits.
# PayMob sends lowercase; hex case carries no information, so either case is accepted.
_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{128}")

_TRANSACTION_PATHS = tuple(tuple(name.split(".")) for name in TRANSACTION_HMAC_FIELDS)
_TOKEN_PATHS = tuple((name,) for name in TOKEN_HMAC_FIELDS)


class UnsignableValueError(ValueError):
    """A signed field holds a value PayMob cannot have signed (an object, a fraction, ...)."""


class MalformedQueryError(ValueError):
    """A redirect query string that has no single reading (repeated key, invalid UTF-8)."""


class SignatureCheck(StrEnum):
    """The verdict on a received signature; only the two VALID ones let a callback through."""

    VALID = "valid"
    # Still rotating: worth an alert if it lingers. (S105: a verdict's name, not a secret.)
    VALID_PREVIOUS_SECRET = "valid_previous_secret"  # noqa: S105
    MISSING = "missing"  # no hmac at all
    MALFORMED = "malformed"  # an hmac, or a signed input, that cannot be a PayMob signature
    MISMATCH = "mismatch"  # well formed, but no secret we hold produced it

    @property
    def is_valid(self) -> bool:
        return self in (SignatureCheck.VALID, SignatureCheck.VALID_PREVIOUS_SECRET)


@dataclass(frozen=True)
class HmacSecrets:
    """The account's HMAC secret, and during a rotation in the dashboard the one it replaces."""

    # repr=False: a dataclass repr would otherwise print the secrets into any log line.
    current: str = field(repr=False)
    previous: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        _require_usable_secret(self.current, "current")
        if self.previous is not None:
            _require_usable_secret(self.previous, "previous")


def _require_usable_secret(secret: str, which: str) -> None:
    # Fail at cold start rather than answer every genuine callback with 401: an empty secret
    # signs for anyone, and a newline pasted into the secret store never verifies.
    if not secret:
        raise ValueError(f"the {which} HMAC secret is empty")
    if not secret.isascii():
        raise ValueError(f"the {which} HMAC secret is not ASCII")
    if secret != secret.strip():
        raise ValueError(f"the {which} HMAC secret has surrounding whitespace")


def render_value(value: object) -> str:
    """Render one signed value the way PayMob concatenates it.

    Booleans are `true`/`false` (never Python's `True`), integers plain decimals, strings
    verbatim (so the string "false" stays "false"), null the empty string. PayMob signs
    integers; a JSON decoder or DynamoDB may hand them back as an integral float or Decimal,
    which renders as that integer. Anything else (a fraction, NaN, an object or a list)
    cannot have been signed and raises UnsignableValueError.
    """
    if value is None:
        return ""
    # bool before int: bool is an int subclass and str(True) is "True".
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if not value.isascii():
            _require_utf8_encodable(value)
        return str.__str__(value)
    if isinstance(value, int):
        return _decimal_digits(value)
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return _decimal_digits(int(value))
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return _decimal_digits(int(value))
    raise UnsignableValueError(f"a signed field holds an unsignable {type(value).__name__}")


def _decimal_digits(number: int) -> str:
    try:
        return int.__repr__(number)
    except ValueError as too_long:  # beyond Python's int-to-str digit limit
        raise UnsignableValueError("a signed integer is too long to render") from too_long


def _require_utf8_encodable(text: str) -> None:
    # A JSON body can carry a lone surrogate (\ud800); it has no UTF-8 form to sign.
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as unencodable:
        raise UnsignableValueError("a signed string is not valid Unicode") from unencodable


def _value_at(obj: Mapping[str, Any], path: tuple[str, ...]) -> object:
    node: object = obj
    for key in path:
        if node is None:
            return None
        if not isinstance(node, Mapping):
            raise UnsignableValueError(f"expected an object on the way to {'.'.join(path)}")
        node = node.get(key)
    return node


def _message(obj: Mapping[str, Any], paths: tuple[tuple[str, ...], ...]) -> str:
    return "".join(render_value(_value_at(obj, path)) for path in paths)


def transaction_message_from_obj(obj: Mapping[str, Any]) -> str:
    """The signed message of a transaction processed callback, from the POST body's `obj`.

    A null or missing field renders as the empty string (PayMob documents no null);
    `null_signed_fields` says which ones, so the caller can count them.
    """
    return _message(obj, _TRANSACTION_PATHS)


def transaction_message_from_query(params: Mapping[str, str]) -> str:
    """The signed message of a transaction response redirect, from its decoded parameters.

    Keys are PayMob's flattened ones (`source_data.pan`, the order id under `order`); a
    missing key renders as the empty string (see `missing_signed_query_fields`).
    """
    return "".join(render_value(params.get(key)) for key in TRANSACTION_QUERY_KEYS)


def token_message(obj: Mapping[str, Any]) -> str:
    """The signed message of a TOKEN (saved card) callback, from the POST body's `obj`."""
    return _message(obj, _TOKEN_PATHS)


def null_signed_fields(obj: Mapping[str, Any]) -> tuple[str, ...]:
    """The signed transaction fields that are null or missing in a callback's `obj`."""
    return tuple(
        name
        for name, path in zip(TRANSACTION_HMAC_FIELDS, _TRANSACTION_PATHS, strict=True)
        if _value_at(obj, path) is None
    )


def missing_signed_query_fields(params: Mapping[str, str]) -> tuple[str, ...]:
    """The signed transaction fields (by their dotted names) absent from redirect parameters."""
    return tuple(
        name
        for name, key in zip(TRANSACTION_HMAC_FIELDS, TRANSACTION_QUERY_KEYS, strict=True)
        if key not in params
    )


def sign(message: str, secret: str) -> str:
    """HMAC-SHA512 of the UTF-8 message, keyed with the secret's ASCII bytes, as lowercase hex.

    The secret is used as text, case preserved: it looks like hex but is not hex-decoded.
    """
    return _hex_hmac(secret, message.encode("utf-8"))


def _hex_hmac(secret: str, payload: bytes) -> str:
    try:
        key = secret.encode("ascii")
    except UnicodeEncodeError as not_ascii:
        raise ValueError("the HMAC secret is not ASCII") from not_ascii
    return hmac.new(key, payload, hashlib.sha512).hexdigest()


def _is_hex_digest(received_hmac: str) -> bool:
    # fullmatch, not match with `$`, which would accept a trailing newline.
    return _HEX_DIGEST.fullmatch(received_hmac) is not None


def _hmac_format_problem(received_hmac: str | None) -> SignatureCheck | None:
    if received_hmac is None:
        return SignatureCheck.MISSING
    if not _is_hex_digest(received_hmac):
        return SignatureCheck.MALFORMED
    return None


def check(message: str, received_hmac: str | None, secrets: HmacSecrets) -> SignatureCheck:
    """Verify a received hmac over a message, against the current then the previous secret.

    Never raises on bad input: a missing hmac is MISSING; an empty, short, long or non-hex
    one (or a message with no UTF-8 form) is MALFORMED. Digests compare in constant time.
    """
    if received_hmac is None:
        return SignatureCheck.MISSING
    if not _is_hex_digest(received_hmac):
        return SignatureCheck.MALFORMED
    received = received_hmac.lower()
    try:
        payload = message.encode("utf-8")
    except UnicodeEncodeError:
        return SignatureCheck.MALFORMED
    if hmac.compare_digest(_hex_hmac(secrets.current, payload), received):
        return SignatureCheck.VALID
    if secrets.previous is not None and hmac.compare_digest(
        _hex_hmac(secrets.previous, payload), received
    ):
        return SignatureCheck.VALID_PREVIOUS_SECRET
    return SignatureCheck.MISMATCH


def _check_built(
    build_message: Callable[[], str], received_hmac: str | None, secrets: HmacSecrets
) -> SignatureCheck:
    # The hmac's own problems come first: a callback with no hmac is MISSING whatever its body.
    problem = _hmac_format_problem(received_hmac)
    if problem is not None:
        return problem
    try:
        message = build_message()
    except UnsignableValueError:
        return SignatureCheck.MALFORMED
    return check(message, received_hmac, secrets)


def check_transaction_obj(
    obj: Mapping[str, Any], received_hmac: str | None, secrets: HmacSecrets
) -> SignatureCheck:
    """Verify a transaction processed callback (`obj` of the POST body, `?hmac=` of its URL).

    Never raises: a signed field PayMob cannot have signed makes the callback MALFORMED.
    """
    return _check_built(lambda: transaction_message_from_obj(obj), received_hmac, secrets)


def check_token_obj(
    obj: Mapping[str, Any], received_hmac: str | None, secrets: HmacSecrets
) -> SignatureCheck:
    """Verify a TOKEN callback (`obj` of the POST body, `?hmac=` of its URL). Never raises."""
    return _check_built(lambda: token_message(obj), received_hmac, secrets)


def _decode_once(component: str) -> str:
    # errors="strict": the default "replace" would turn invalid UTF-8 into U+FFFD silently.
    return unquote(component, errors="strict")


def _decode_form_once(component: str) -> str:
    return unquote_plus(component, errors="strict")


def _decode_pairs(raw_query: str, decode: Callable[[str], str]) -> dict[str, str]:
    params: dict[str, str] = {}
    # Only `&` separates: `;` is data since Python 3.10, and PayMob never uses it.
    for segment in raw_query.split("&"):
        if not segment:
            continue
        raw_key, _, raw_value = segment.partition("=")
        try:
            key, value = decode(raw_key), decode(raw_value)
        except UnicodeDecodeError as invalid:
            raise MalformedQueryError("a query component is not UTF-8 once decoded") from invalid
        # A repeated key has two readings, and whichever one a later reader picks is a value
        # the signature may not cover; PayMob never repeats a key, so refuse the whole query.
        if key in params:
            raise MalformedQueryError(f"the query repeats the key {key[:64]!r}")
        params[key] = value
    return params


def parse_raw_query(raw_query: str) -> list[dict[str, str]]:
    """The readings of a raw query string (API Gateway's rawQueryString), most likely first.

    Each reading decodes every key and value exactly once. The first is the form reading
    (`+` is a space, `%2B` is `+`), as PayMob's redirects are form encoded; the second,
    offered only when the raw string holds a literal `+` (where the two differ), is plain
    percent decoding, where that `+` means itself. Dots in keys are kept. Raises
    MalformedQueryError for a repeated key or invalid UTF-8 in either reading.
    """
    # PayMob form encodes its redirects: a space arrives as `+` and a `+` in a value as
    # `%2B`, which both readings decode alike. The form reading comes first, so a redirect
    # that verifies either way also gives its unsigned values their spaces back
    # ("Do+not+honour" is "Do not honour"). A `+` left unencoded by a proxy or a hand-built
    # URL (an offset like `+04:00` in created_at) fails the form reading's signature, and
    # the percent reading is tried. Both readings come from the same raw bytes and each
    # must carry PayMob's signature, so trying both widens nothing. A value is never
    # decoded a second time: that would turn a signed literal `%2B` into `+`.
    decoders: list[Callable[[str], str]] = [_decode_form_once]
    if "+" in raw_query:
        decoders.append(_decode_once)
    return [_decode_pairs(raw_query, decode) for decode in decoders]


def check_redirect_query(
    raw_query: str, secrets: HmacSecrets
) -> tuple[SignatureCheck, dict[str, str]]:
    """Verify a transaction response redirect (GET) from its raw query string.

    Returns the check and, only when it is valid, the decoded parameters that verified
    (without `hmac`); otherwise an empty dict, so nothing unverified can leak onward.
    Never raises.
    """
    try:
        readings = parse_raw_query(raw_query)
    except MalformedQueryError:
        return SignatureCheck.MALFORMED, {}
    received_hmac = readings[0].get(HMAC_QUERY_KEY)
    problem = _hmac_format_problem(received_hmac)
    if problem is not None:
        return problem, {}
    for reading in readings:
        params = {key: value for key, value in reading.items() if key != HMAC_QUERY_KEY}
        try:
            message = transaction_message_from_query(params)
        except UnsignableValueError:
            return SignatureCheck.MALFORMED, {}
        result = check(message, received_hmac, secrets)
        if result.is_valid:
            return result, params
    return SignatureCheck.MISMATCH, {}


def sign_transaction_obj(obj: Mapping[str, Any], secret: str) -> str:
    """The hmac PayMob would send with this callback `obj` (for tests and the simulator)."""
    return sign(transaction_message_from_obj(obj), secret)


def sign_transaction_query(params: Mapping[str, str], secret: str) -> str:
    """The hmac PayMob would put on a redirect with these parameters."""
    return sign(transaction_message_from_query(params), secret)


def sign_token_obj(obj: Mapping[str, Any], secret: str) -> str:
    """The hmac PayMob would send with this TOKEN callback `obj`."""
    return sign(token_message(obj), secret)
