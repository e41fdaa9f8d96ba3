"""The enrolment stream's filter: the matcher, and template.yaml's patterns over real records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coursepay.domain.payment import Payment, PaymentFlag, PaymentStatus
from coursepay.services.enrollment import EnrollmentService
from devstack.filters import (
    InvalidPattern,
    UnsupportedPattern,
    matches,
    matches_any,
    parse_filter_criteria,
)
from devstack.template import load_template
from tests.support.aws import a_course
from tests.support.builders import a_payment, a_payment_in, a_stream_record
from tests.support.enrollment import InMemoryEnrollments, RecordingBus
from tests.support.fakes import InMemoryPaymentStore

REPO = Path(__file__).resolve().parents[2]
EVENTS = REPO / "tests" / "events"
S = PaymentStatus

# --- the matcher ---------------------------------------------------------------------------

RECORD: dict[str, Any] = {
    "eventName": "MODIFY",
    "dynamodb": {
        "NewImage": {
            "status": {"S": "PAID"},
            "version": {"N": "3"},
            "flags": {"SS": ["LATE_SUCCESS", "ADMIN_OVERRIDE"]},
            "paid": {"BOOL": True},
        },
        "OldImage": {"status": {"S": "FAILED"}},
    },
}


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        pytest.param({"eventName": ["MODIFY"]}, True, id="exact"),
        pytest.param({"eventName": ["INSERT", "MODIFY"]}, True, id="list-is-or"),
        pytest.param({"eventName": ["INSERT"]}, False, id="other-value"),
        pytest.param({"eventName": ["modify"]}, False, id="case-sensitive"),
        pytest.param(
            {"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": ["PAID"]}}}},
            True,
            id="nested-and",
        ),
        pytest.param(
            {"eventName": ["MODIFY"], "dynamodb": {"OldImage": {"status": {"S": ["PAID"]}}}},
            False,
            id="one-key-fails-all",
        ),
        pytest.param(
            {"dynamodb": {"OldImage": {"status": {"S": [{"anything-but": ["PAID", "X"]}]}}}},
            True,
            id="anything-but",
        ),
        pytest.param(
            {"dynamodb": {"OldImage": {"status": {"S": [{"anything-but": "FAILED"}]}}}},
            False,
            id="anything-but-one-value",
        ),
        pytest.param(
            {"dynamodb": {"OldImage": {"gone": {"S": [{"anything-but": ["PAID"]}]}}}},
            False,
            id="anything-but-needs-the-field",
        ),
        pytest.param(
            {"dynamodb": {"OldImage": {"gone": {"S": [{"exists": False}]}}}},
            True,
            id="exists-false-missing",
        ),
        pytest.param(
            {"dynamodb": {"OldImage": {"status": {"S": [{"exists": False}]}}}},
            False,
            id="exists-false-present",
        ),
        pytest.param(
            {"dynamodb": {"NewImage": {"flags": {"SS": [{"exists": True}]}}}},
            True,
            id="exists-true-on-a-set",
        ),
        pytest.param(
            {"dynamodb": {"OldImage": {"flags": {"SS": [{"exists": True}]}}}},
            False,
            id="exists-true-missing",
        ),
        pytest.param(
            {"dynamodb": {"NewImage": {"flags": {"SS": ["ADMIN_OVERRIDE"]}}}},
            True,
            id="set-matches-any-element",
        ),
        pytest.param(
            {"dynamodb": {"NewImage": {"flags": {"SS": ["DOUBLE_CHARGE"]}}}},
            False,
            id="set-without-the-value",
        ),
        pytest.param({"dynamodb": {"NewImage": {"version": {"N": [3]}}}}, False, id="3-not-'3'"),
        pytest.param({"dynamodb": {"NewImage": {"paid": {"BOOL": [1]}}}}, False, id="1-not-true"),
        pytest.param({"dynamodb": {"NewImage": {"paid": {"BOOL": [True]}}}}, True, id="true"),
        pytest.param({"dynamodb": {"NewImage": {"status": ["PAID"]}}}, False, id="object-leaf"),
        pytest.param(
            {"dynamodb": {"NewImage": {"status": {"S": [{"prefix": "PA"}]}}}}, True, id="prefix"
        ),
    ],
)
def test_a_pattern_matches_as_lambda_filters(pattern: dict[str, Any], expected: bool) -> None:
    assert matches(pattern, RECORD) is expected


@pytest.mark.parametrize(
    ("pattern", "error"),
    [
        pytest.param({"eventName": "MODIFY"}, InvalidPattern, id="scalar-leaf"),
        pytest.param({"eventName": []}, InvalidPattern, id="empty-list"),
        pytest.param({}, InvalidPattern, id="empty-pattern"),
        pytest.param({"$or": [{"eventName": ["INSERT"]}]}, UnsupportedPattern, id="or"),
        pytest.param({"n": [{"numeric": [">", 1]}]}, UnsupportedPattern, id="numeric"),
        pytest.param({"n": [{"anything-but": {"prefix": "A"}}]}, UnsupportedPattern, id="nested"),
        pytest.param({"n": [{"exists": "yes"}]}, InvalidPattern, id="exists-not-bool"),
    ],
)
def test_a_pattern_it_cannot_honour_is_refused_not_guessed(
    pattern: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        matches(pattern, RECORD)


def test_filters_are_ored_and_no_filters_let_everything_through() -> None:
    # Given two patterns, only the second of which matches
    criteria = {
        "Filters": [
            {"Pattern": json.dumps({"eventName": ["REMOVE"]})},
            {"Pattern": json.dumps({"eventName": ["MODIFY"]})},
        ]
    }

    # Then the record passes them, fails the first alone, and passes an empty filter
    patterns = parse_filter_criteria(criteria)
    assert matches_any(patterns, RECORD)
    assert not matches_any(patterns[:1], RECORD)
    assert matches_any(parse_filter_criteria(None), RECORD)


def test_a_filter_whose_pattern_is_not_json_is_refused() -> None:
    with pytest.raises(InvalidPattern, match="not JSON"):
        parse_filter_criteria({"Filters": [{"Pattern": "{eventName: MODIFY}"}]})


# --- the template's filter over Payments stream records ----------------------------------------


@pytest.fixture(scope="module")
def enrol_filter() -> list[dict[str, Any]]:
    template = load_template(REPO / "template.yaml")
    mapping = template["Resources"]["EnrollFunction"]["Properties"]["Events"]["PaymentSettled"]
    return parse_filter_criteria(mapping["Properties"].get("FilterCriteria"))


def delivered(patterns: list[dict[str, Any]], before: Payment | None, after: Payment) -> bool:
    return matches_any(patterns, a_stream_record(before, after))


def acted_on(before: Payment | None, after: Payment) -> bool:
    """Whether the enrolment service does anything with this change (everything succeeding)."""
    payments = InMemoryPaymentStore(after)
    service = EnrollmentService(payments, InMemoryEnrollments(payments, a_course()), RecordingBus())
    return not service.on_payment_changed(before, after).ignored


def test_the_template_filters_the_enrolment_stream(enrol_filter: list[dict[str, Any]]) -> None:
    assert enrol_filter, "the enrolment mapping must filter the Payments stream"
    assert len(enrol_filter) <= 5, "Lambda's default quota is five filters per mapping"


flag_sets = st.frozensets(st.sampled_from(list(PaymentFlag)), max_size=3)


@settings(max_examples=300, deadline=None)
@given(
    before_status=st.one_of(st.none(), st.sampled_from(list(PaymentStatus))),
    after_status=st.sampled_from(list(PaymentStatus)),
    before_flags=flag_sets,
    added_flags=flag_sets,
)
def test_the_filter_never_drops_a_change_the_service_acts_on(
    enrol_filter: list[dict[str, Any]],
    before_status: PaymentStatus | None,
    after_status: PaymentStatus,
    before_flags: frozenset[PaymentFlag],
    added_flags: frozenset[PaymentFlag],
) -> None:
    # Given any change of status and flags (an INSERT when there is no before)
    before = None if before_status is None else a_payment_in(before_status, flags=before_flags)
    after = a_payment_in(
        after_status,
        flags=(before_flags if before is not None else frozenset()) | added_flags,
        version=9,
    )

    # Then whenever the service would act on it, the mapping delivers it; and it delivers
    # nothing the service ignores, apart from changes of a flagged payment (the filter cannot
    # tell which flags are new)
    if acted_on(before, after):
        assert delivered(enrol_filter, before, after)
    elif not after.flags:
        assert not delivered(enrol_filter, before, after)


ENTITLING = [S.PAID, S.PARTIALLY_REFUNDED]
NOT_ENTITLING = [s for s in PaymentStatus if s not in ENTITLING]


@pytest.mark.parametrize("entitling", ENTITLING)
@pytest.mark.parametrize("status", NOT_ENTITLING)
def test_leaving_an_entitling_status_for_any_other_is_delivered_and_revokes(
    enrol_filter: list[dict[str, Any]], entitling: PaymentStatus, status: PaymentStatus
) -> None:
    # Given an enrolled payment moved out of PAID or PARTIALLY_REFUNDED, by a refund, a void
    # or an admin override (no flag on either image, so only the status can let it through)
    before = a_payment_in(entitling, flags=frozenset())
    after = a_payment_in(status, flags=frozenset(), version=9)
    payments = InMemoryPaymentStore(before)
    enrollments = InMemoryEnrollments(payments, a_course())
    service = EnrollmentService(payments, enrollments, RecordingBus())
    assert service.on_payment_changed(None, before).enrolment == "GRANTED"
    payments.payments[after.payment_id] = after

    # When the mapping filters its record and the service handles it
    passes = delivered(enrol_filter, before, after)
    outcome = service.on_payment_changed(before, after)

    # Then it is delivered, and the enrolment is revoked
    assert passes
    assert outcome.enrolment == "REVOKED"
    assert enrollments.count(a_course().course_id) == 0


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(a_payment(), a_payment(version=2, last_checked_at="x"), id="pending-checked"),
        pytest.param(
            a_payment_in(S.PAID), a_payment_in(S.PAID, enrolled_at="t"), id="paid-marked-enrolled"
        ),
        pytest.param(a_payment_in(S.PAID), a_payment_in(S.PARTIALLY_REFUNDED), id="partial-refund"),
        pytest.param(a_payment_in(S.REFUNDED), a_payment_in(S.VOIDED), id="refunded-then-voided"),
        pytest.param(
            a_payment_in(S.FAILED), a_payment_in(S.REFUNDED, flags=frozenset()), id="never-paid"
        ),
        pytest.param(None, a_payment(), id="checkout-insert"),
        pytest.param(None, a_payment_in(S.REFUNDED, flags=frozenset()), id="inserted-refunded"),
    ],
)
def test_the_filter_drops_changes_that_do_not_concern_enrolment(
    enrol_filter: list[dict[str, Any]], before: Payment | None, after: Payment
) -> None:
    # Given a change that enters no entitling or failed status, leaves no entitling one and
    # adds no flag
    # Then the mapping does not invoke the function for it, and the service would ignore it
    assert not delivered(enrol_filter, before, after)
    assert not acted_on(before, after)


def test_a_removed_payment_is_not_delivered(enrol_filter: list[dict[str, Any]]) -> None:
    assert not matches_any(enrol_filter, a_stream_record(a_payment_in(S.PAID), None))


SAMPLES = {
    "payments_stream_paid.json": True,
    "payments_stream_refunded.json": True,
    "payments_stream_declined.json": True,
    "payments_stream_duplicate_flagged.json": True,
    "payments_stream_enrolled_mark.json": False,
    "payments_stream_pending_checked.json": False,
}


@pytest.mark.parametrize(("sample", "expected"), SAMPLES.items())
def test_the_sample_records_are_filtered_as_their_names_say(
    enrol_filter: list[dict[str, Any]], sample: str, expected: bool
) -> None:
    (record,) = json.loads((EVENTS / sample).read_text())["Records"]
    assert matches_any(enrol_filter, record) is expected
