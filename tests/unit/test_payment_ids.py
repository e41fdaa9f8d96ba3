"""Payment ids: sortable by creation, and one per student and Idempotency-Key."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from coursepay.services.checkout import keyed_payment_id, new_payment_id

ULID = re.compile(r"pay_[0-9A-HJKMNP-TV-Z]{26}")
NOW = datetime(2024, 6, 13, 11, 30, tzinfo=UTC)


def test_a_new_payment_id_is_a_prefixed_ulid():
    assert ULID.fullmatch(new_payment_id(NOW, bytes(10)))


def test_new_payment_ids_sort_by_creation_time_whatever_their_randomness():
    earlier = new_payment_id(NOW, b"\xff" * 10)
    later = new_payment_id(NOW + timedelta(milliseconds=1), b"\x00" * 10)

    assert earlier < later


def test_ids_of_the_same_millisecond_differ_by_their_randomness():
    assert new_payment_id(NOW, bytes(10)) != new_payment_id(NOW, b"\x01" + bytes(9))


def test_an_id_needs_eighty_random_bits():
    with pytest.raises(ValueError, match="80 random bits"):
        new_payment_id(NOW, bytes(8))


def test_a_key_names_the_same_payment_every_time_for_its_student_only():
    mine = keyed_payment_id("student-1", "key-1")

    assert ULID.fullmatch(mine)
    assert keyed_payment_id("student-1", "key-1") == mine
    assert keyed_payment_id("student-2", "key-1") != mine
    assert keyed_payment_id("student-1", "key-2") != mine
    # The separator keeps ("ab", "c") and ("a", "bc") apart.
    assert keyed_payment_id("ab", "c") != keyed_payment_id("a", "bc")
