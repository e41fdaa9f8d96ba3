"""When the reconciler asks PayMob: one minute in, every five minutes five times, then hourly;
after the checkout lapsed, hourly a bounded number of times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from coursepay.services.reconcile import next_check_at, next_lapsed_check_at

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


# --- after the checkout lapsed: at once, then hourly, a bounded number of times ----------------

LAPSED = CREATED + timedelta(hours=1, minutes=5)
HOUR = timedelta(hours=1)


def test_a_lapsed_payment_is_asked_at_once_then_hourly_then_no_more():
    checks: list[datetime] = []
    due = next_lapsed_check_at(LAPSED, None, HOUR, 3)
    while due is not None:
        checks.append(due)
        due = next_lapsed_check_at(LAPSED, due + timedelta(minutes=4), HOUR, 3)

    assert checks == [LAPSED, LAPSED + HOUR, LAPSED + 2 * HOUR]


def test_a_check_made_before_the_lapse_does_not_count_against_it():
    assert next_lapsed_check_at(LAPSED, LAPSED - timedelta(seconds=1), HOUR, 1) == LAPSED


@given(
    st.lists(st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3)), max_size=200),
    st.integers(min_value=1, max_value=30),
)
def test_however_often_runs_come_a_lapsed_payment_is_asked_at_most_the_maximum(
    runs: list[timedelta], max_checks: int
):
    # Given runs at any times after the lapse, each asking when the payment is due
    asked: list[timedelta] = []
    last: datetime | None = None
    for offset in sorted(runs):
        now = LAPSED + offset
        due = next_lapsed_check_at(LAPSED, last, HOUR, max_checks)
        if due is not None and due <= now:
            asked.append(offset)
            last = now

    # Then it was asked at most the maximum, at most once in each hour after the lapse
    assert len(asked) <= max_checks
    hours = [offset // HOUR for offset in asked]
    assert len(set(hours)) == len(hours)
    # And nothing followed a check made in the last hour of the allowance, or later
    assert all(hour < max_checks - 1 for hour in hours[:-1])
    assert next_lapsed_check_at(LAPSED, LAPSED + max_checks * HOUR, HOUR, max_checks) is None
