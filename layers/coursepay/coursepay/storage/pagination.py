"""Pages of a listing and the opaque cursors that continue them."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from coursepay.storage.errors import InvalidCursor


@dataclass(frozen=True, slots=True)
class Page[T]:
    items: list[T]
    cursor: str | None  # None once the listing is exhausted


def encode_cursor(state: dict[str, Any]) -> str:
    raw = json.dumps(state, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, *, listing: str, scope: dict[str, Any]) -> dict[str, Any]:
    """The state inside a cursor issued by `listing` for the same `scope` (filters)."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        state = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("the cursor is not one this API issued") from None
    if not isinstance(state, dict) or state.get("listing") != listing:
        raise InvalidCursor("the cursor belongs to another listing")
    if state.get("scope") != scope:
        raise InvalidCursor("the cursor was issued for other filters")
    return state
