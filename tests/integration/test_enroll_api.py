"""GET /api/me/enrollments against moto: a student sees their own enrolments, and only those."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver

from coursepay.api.app import create_resolver
from coursepay.api.enrollments import router
from coursepay.domain.records import EnrollmentStatus
from tests.support.aws import Store
from tests.support.builders import COURSE_ID, STUDENT_ID
from tests.support.enrollment import fresh_enrolment_containers
from tests.support.events import http_event, json_body, lambda_context, student_claims


@pytest.fixture
def api(lambda_environment: Any) -> Iterator[APIGatewayHttpResolver]:
    lambda_environment("StatusFunction")
    fresh_enrolment_containers()
    app = create_resolver()
    app.include_router(router)
    yield app
    fresh_enrolment_containers()


def get_my_enrollments(api: APIGatewayHttpResolver, claims: dict[str, Any] | None) -> Any:
    event = http_event("GET", "/api/me/enrollments", claims=claims)
    context: Any = lambda_context("status")  # what Powertools reads of Lambda's context
    return api.resolve(event, context)


def test_a_student_sees_their_own_enrolments_newest_first(
    api: APIGatewayHttpResolver, store: Store
) -> None:
    # Given two enrolments of the student (one revoked) and one of somebody else
    store.enrollment(course_id=COURSE_ID, enrolled_at="2024-06-13T11:34:00+00:00")
    store.enrollment(
        course_id="course-sql-201",
        payment_id="pay_sql",
        enrolled_at="2024-06-20T08:00:00+00:00",
        status=EnrollmentStatus.REVOKED,
        revoked_at="2024-06-21T10:00:00+00:00",
    )
    store.enrollment(student_id="student-other", payment_id="pay_other")

    # When the student asks for their enrolments
    response = get_my_enrollments(api, student_claims(STUDENT_ID))

    # Then they get their two, newest first, with course, status, since and payment
    assert response["statusCode"] == 200
    assert response["headers"]["cache-control"] == "no-store"
    assert json_body(response) == {
        "enrollments": [
            {
                "course_id": "course-sql-201",
                "status": "REVOKED",
                "since": "2024-06-20T08:00:00+00:00",
                "payment_id": "pay_sql",
                "revoked_at": "2024-06-21T10:00:00+00:00",
            },
            {
                "course_id": COURSE_ID,
                "status": "ACTIVE",
                "since": "2024-06-13T11:34:00+00:00",
                "payment_id": "pay_01J0AXR8Y0QK4Z6V1M2N3P4Q5R",
                "revoked_at": None,
            },
        ]
    }


def test_a_student_without_enrolments_gets_an_empty_list(api: APIGatewayHttpResolver) -> None:
    response = get_my_enrollments(api, student_claims("student-new"))
    assert response["statusCode"] == 200
    assert json_body(response) == {"enrollments": []}


def test_a_request_without_a_signed_in_user_is_refused(api: APIGatewayHttpResolver) -> None:
    response = get_my_enrollments(api, None)
    assert response["statusCode"] == 401
    assert json_body(response)["error"]["code"] == "unauthorized"
