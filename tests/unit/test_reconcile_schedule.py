"""When the reconciler asks PayMob: one minute in, every five minutes five times, then hourly."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coursepay.services.reconcile import next_check_at

CREATED = datetime(2024, 6, 13, 11, 30, tzinfo=UTC)
MINUTE = timedelta(minutes=1)


def schedule(checks: int) -> list[timedelta]:
    """The first `checks` check times, each asked right on time, as offsets from creation."""
    offsets: list[timedelta] = []
    last = None
    for _ in range(checks):
        last = next_check_at(CREATED, last)
        offsets.append(last - CREATED)
    return offsets


def test_the_schedule_is_dense_while_the_student_may_pay_then_hourly():
    assert schedule(9) == [
        1 * MINUTE,
        6 * MINUTE,
        11 * MINUTE,
        16 * MINUTE,
        21 * MINUTE,
        26 * MINUTE,
        86 * MINUTE,
        146 * MINUTE,
        206 * MINUTE,
    ]


@pytest.mark.parametrize(
    ("checked_after", "next_after"),
    [
        (timedelta(seconds=30), 1 * MINUTE),  # checked early (a status poll): the first slot
        (3 * MINUTE, 6 * MINUTE),  # a late check counts for its slot, not the next
        (6 * MINUTE, 11 * MINUTE),
        (25 * MINUTE, 26 * MINUTE),
        (26 * MINUTE, 86 * MINUTE),
        (100 * MINUTE, 146 * MINUTE),
    ],
)
def test_the_next_check_follows_the_last_one(checked_after, next_after):
    assert next_check_at(CREATED, CREATED + checked_after) == CREATED + next_after


@given(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)))
def test_the_next_check_is_always_after_the_last_and_at_most_an_hour_later(elapsed):
    last = CREATED + elapsed

    following = next_check_at(CREATED, last)

    assert last < following <= last + timedelta(hours=1)


def test_the_first_check_follows_the_configured_pending_threshold():
    second = timedelta(seconds=1)

    first = next_check_at(CREATED, None, first_check=second)
    following = next_check_at(CREATED, first, first_check=second)

    assert first - CREATED == second
    assert following - CREATED == second + 5 * MINUTE
