"""GET /api/courses and POST /api/courses/{courseId}/checkout (a Router for the checkout API)."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from coursepay.api.auth import caller_from_event
from coursepay.domain.records import Course
from coursepay.errors import NotFound
from coursepay.http import JSON_HEADERS
from coursepay.services.checkout import (
    CheckoutRequest,
    Student,
    validate_idempotency_key,
)
from coursepay.wiring import checkout_service, public_base_url

router = Router()  # type: ignore[no-untyped-call]

MAX_COURSE_ID_LENGTH = 128


@router.get("/api/courses")
def list_courses() -> Response[str]:
    caller_from_event(router.current_event.raw_event)  # any signed-in user
    courses = checkout_service().active_courses()
    return _json(200, {"courses": [course_view(course) for course in courses]})


@router.post("/api/courses/<course_id>/checkout")
def checkout(course_id: str) -> Response[str]:
    event: Any = router.current_event.raw_event
    caller = caller_from_event(event)
    if len(course_id) > MAX_COURSE_ID_LENGTH:
        raise NotFound("no such course", code="course_not_found")
    key = router.current_event.headers.get("idempotency-key")
    result = checkout_service().checkout(
        CheckoutRequest(
            student=Student(
                student_id=caller.subject,
                first_name=caller.given_name,
                last_name=caller.family_name,
                email=caller.email,
                phone_number=caller.phone_number,
            ),
            course_id=course_id,
            public_base_url=public_base_url(event),
            idempotency_key=validate_idempotency_key(key),
        )
    )
    headers = {"idempotent-replayed": "true"} if result.replayed else {}
    return _json(201 if result.created else 200, result.to_json(), headers)


def course_view(course: Course) -> dict[str, Any]:
    return {
        "course_id": course.course_id,
        "title": course.title,
        "price_cents": course.price_cents,
        "currency": course.currency,
    }


def _json(status: int, body: Any, headers: dict[str, str] | None = None) -> Response[str]:
    return Response(
        status_code=status,
        content_type=JSON_HEADERS["content-type"],
        body=json.dumps(body, ensure_ascii=False),
        headers={"cache-control": "no-store", **(headers or {})},
    )
