"""GET /api/payments/{paymentId}/status: the owner's (or an admin's) view of one payment."""

from __future__ import annotations

import json

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from coursepay.api.auth import caller_from_event
from coursepay.http import JSON_HEADERS
from coursepay.services.payment_status import PaymentNotVisible, Viewer
from coursepay.wiring import payment_status_service

router = Router()  # type: ignore[no-untyped-call]

# Longer than any id we issue: refused before it reaches DynamoDB's key size limit.
MAX_PAYMENT_ID_LENGTH = 64


@router.get("/api/payments/<payment_id>/status")
def payment_status(payment_id: str) -> Response[str]:
    caller = caller_from_event(router.current_event.raw_event)
    if len(payment_id) > MAX_PAYMENT_ID_LENGTH:
        raise PaymentNotVisible("no such payment")
    view = payment_status_service().status_for(
        Viewer(subject=caller.subject, is_admin=caller.is_admin), payment_id
    )
    return Response(
        status_code=200,
        content_type=JSON_HEADERS["content-type"],
        body=json.dumps(view.to_json()),
        headers={"cache-control": "no-store"},
    )
