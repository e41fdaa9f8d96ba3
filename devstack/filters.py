"""Lambda event filtering for the local stack: would a record pass a mapping's FilterCriteria?

The subset of the EventBridge pattern language that Lambda's event source mappings accept and
this project's template uses: nested keys (AND), a list of matchers per leaf (OR), exact
values, `{"anything-but": ...}`, `{"exists": ...}` and `{"prefix": ...}`. Filters of one
mapping are ORed: a record passes if any pattern matches. Anything else in a pattern (numeric
ranges, `$or`, suffix, wildcard...) raises UnsupportedPattern rather than guessing, so a
template change the local stack cannot honour fails loudly instead of delivering the wrong
records.

Semantics kept from EventBridge:
- every key of the pattern must match; keys of the record the pattern does not name are free;
- a missing field matches only `{"exists": false}` (so `anything-but` needs the field present);
- a record value that is a list (a DynamoDB set, `{"SS": [...]}`) matches if any element does;
- values compare by JSON type: "1" is not 1, and true is not 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

__all__ = [
    "InvalidPattern",
    "UnsupportedPattern",
    "matches",
    "matches_any",
    "parse_filter_criteria",
]

_MISSING = object()


class InvalidPattern(ValueError):
    """The pattern is not a valid event pattern (Lambda would refuse the mapping)."""


class UnsupportedPattern(InvalidPattern):
    """A valid pattern that uses syntax this matcher does not implement."""


def parse_filter_criteria(criteria: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    """The patterns of a mapping's FilterCriteria ({"Filters": [{"Pattern": "<json>"}]})."""
    if not criteria:
        return []
    patterns: list[dict[str, Any]] = []
    for number, entry in enumerate(criteria.get("Filters") or []):
        raw = entry.get("Pattern") if isinstance(entry, Mapping) else None
        if not isinstance(raw, str):
            raise InvalidPattern(f"filter {number}: Pattern must be a JSON string")
        try:
            pattern = json.loads(raw)
        except ValueError as exc:
            raise InvalidPattern(f"filter {number}: Pattern is not JSON: {exc}") from None
        _validate(pattern, path=f"filter {number}")
        patterns.append(pattern)
    return patterns


def matches_any(patterns: Sequence[Mapping[str, Any]], record: Mapping[str, Any]) -> bool:
    """Whether Lambda would deliver `record`: no filters means everything passes."""
    return not patterns or any(matches(pattern, record) for pattern in patterns)


def matches(pattern: Mapping[str, Any], record: Mapping[str, Any]) -> bool:
    """Whether one event pattern matches one record (the record as Lambda would deliver it)."""
    _validate(pattern, path="pattern")
    return _match_object(pattern, record)


# --- matching -----------------------------------------------------------------------


def _match_object(pattern: Mapping[str, Any], value: Any) -> bool:
    if not isinstance(value, Mapping):
        # Patterns address paths: under a missing object every path is missing, which
        # only `{"exists": false}` matches.
        value = {}
    for key, expected in pattern.items():
        field = value.get(key, _MISSING)
        if isinstance(expected, Mapping):
            if not _match_object(expected, field):
                return False
        elif not _match_leaf(expected, field):
            return False
    return True


def _match_leaf(matchers: Iterable[Any], field: Any) -> bool:
    matchers = list(matchers)
    if field is _MISSING:
        return any(_is_exists(m, False) for m in matchers)
    if isinstance(field, Mapping):
        # An object where the pattern expects a value: EventBridge matches leaves only.
        return False
    values = field if isinstance(field, list) else [field]
    return any(_match_value(m, v, values) for m in matchers for v in values) or any(
        _is_exists(m, True) for m in matchers if values
    )


def _match_value(matcher: Any, value: Any, values: list[Any]) -> bool:
    if not isinstance(matcher, Mapping):
        return _same(matcher, value)
    ((operator, operand),) = matcher.items()
    if operator == "anything-but":
        excluded = operand if isinstance(operand, list) else [operand]
        return not any(_same(item, value) for item in excluded)
    if operator == "prefix":
        return isinstance(value, str) and value.startswith(operand)
    return False  # exists is decided on the field as a whole, in _match_leaf


def _same(expected: Any, actual: Any) -> bool:
    # JSON types differ where Python's equality would blur them (True == 1, 1 == 1.0 is fine).
    if isinstance(expected, bool) or isinstance(actual, bool):
        return isinstance(expected, bool) and isinstance(actual, bool) and expected is actual
    if isinstance(expected, (int, float)) and isinstance(actual, (int, float)):
        return expected == actual
    return type(expected) is type(actual) and expected == actual


def _is_exists(matcher: Any, wanted: bool) -> bool:
    return isinstance(matcher, Mapping) and matcher.get("exists", _MISSING) is wanted


# --- validation ---------------------------------------------------------------------

_SCALARS = (str, int, float, bool, type(None))


def _validate(pattern: Any, path: str) -> None:
    if not isinstance(pattern, Mapping):
        raise InvalidPattern(f"{path}: a pattern is a JSON object")
    if not pattern:
        raise InvalidPattern(f"{path}: an empty object matches nothing useful")
    for key, expected in pattern.items():
        where = f"{path}.{key}"
        if key.startswith("$"):
            raise UnsupportedPattern(f"{where}: {key} is not supported here")
        if isinstance(expected, Mapping):
            _validate(expected, where)
        elif isinstance(expected, list):
            if not expected:
                raise InvalidPattern(f"{where}: an empty list of values matches nothing")
            for matcher in expected:
                _validate_matcher(matcher, where)
        else:
            raise InvalidPattern(f"{where}: a leaf must be a list of values or matchers")


def _validate_matcher(matcher: Any, where: str) -> None:
    if isinstance(matcher, _SCALARS):
        return
    if not isinstance(matcher, Mapping) or len(matcher) != 1:
        raise InvalidPattern(f"{where}: a matcher is a value or a one-key object")
    ((operator, operand),) = matcher.items()
    if operator == "exists":
        if not isinstance(operand, bool):
            raise InvalidPattern(f"{where}: exists takes true or false")
    elif operator == "anything-but":
        items = operand if isinstance(operand, list) else [operand]
        if not items or not all(isinstance(i, _SCALARS) and i is not None for i in items):
            raise UnsupportedPattern(f"{where}: anything-but is supported with values only")
    elif operator == "prefix":
        if not isinstance(operand, str):
            raise UnsupportedPattern(f"{where}: prefix is supported with a string only")
    else:
        raise UnsupportedPattern(f"{where}: the {operator!r} matcher is not supported here")
