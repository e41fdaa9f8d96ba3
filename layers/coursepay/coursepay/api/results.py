"""GET /courses/{courseId}/payment/result: the HTML page PayMob redirects the browser to.

Public (PayMob's redirect carries no JWT): the page trusts the query only when its HMAC
verifies, and shows the stored status of the payment, never the query's.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.event_handler import Response
from aws_lambda_powertools.event_handler.api_gateway import Router

from coursepay.pages.language import choose_language
from coursepay.pages.result import render_result_page
from coursepay.wiring import payment_status_service, result_page_links

router = Router()  # type: ignore[no-untyped-call]

HTML_CONTENT_TYPE = "text/html; charset=utf-8"


@router.get("/courses/<course_id>/payment/result")
def payment_result(course_id: str) -> Response[str]:
    event: Any = router.current_event.raw_event
    result = payment_status_service().result_for_redirect(
        course_id, str(event.get("rawQueryString") or "")
    )
    language = choose_language(router.current_event.headers.get("accept-language"))
    page = render_result_page(result.payment, result.course, result_page_links(), language)
    return Response(
        status_code=200, content_type=HTML_CONTENT_TYPE, body=page.html, headers=page.headers
    )
