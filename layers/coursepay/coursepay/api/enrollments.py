"""GET /api/me/enrollments: the signed-in student's own enrolments (a Router for the status API)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from coursepay.api.auth import caller_from_event
from coursepay.domain.records import Enrollment
from coursepay.http import JSON_HEADERS
from coursepay.services.enrollment import enrollments_of
from coursepay.wiring import enrollment_reader

router = Router()  # type: ignore[no-untyped-call]


@router.get("/api/me/enrollments")
def my_enrollments() -> Response[str]:
    caller = caller_from_event(router.current_event.raw_event)
    enrollments = enrollments_of(enrollment_reader(), caller.subject)
    return Response(
        status_code=200,
        content_type=JSON_HEADERS["content-type"],
        body=json.dumps({"enrollments": [enrollment_view(e) for e in enrollments]}),
        # Someone's own records: never kept by a shared cache.
        headers={"cache-control": "no-store"},
    )


def enrollment_view(enrollment: Enrollment) -> dict[str, Any]:
    return {
        "course_id": enrollment.course_id,
        "status": str(enrollment.status),
        "since": enrollment.enrolled_at,
        "payment_id": enrollment.payment_id,
        "revoked_at": enrollment.revoked_at,
    }
