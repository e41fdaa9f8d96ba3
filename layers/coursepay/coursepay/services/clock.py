"""The time, as the services see it: ISO 8601 UTC with microseconds, so strings sort by time."""

from __future__ import annotations

from datetime import UTC, datetime


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")
