"""PayMob's transaction processed callback: POST /api/payments/webhook?hmac=…

A plain handler rather than powertools' HTTP resolver: this is one route on the hottest
cold-start path, and the resolver costs about a quarter of a second to import.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any

from coursepay.http import error_response, json_response
from coursepay.observability import count, logger, metrics
from coursepay.services.callbacks import MAX_CALLBACK_BYTES, CallbackOutcome
from coursepay.wiring import callback_service

# Base64 grows a body by 4/3: anything longer cannot decode to an acceptable size.
_MAX_ENCODED_LENGTH = 4 * (MAX_CALLBACK_BYTES // 3 + 1)


@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    http = event.get("requestContext", {}).get("http", {})
    source_ip = str(http.get("sourceIp") or "unknown")
    received_hmac = (event.get("queryStringParameters") or {}).get("hmac")
    raw_body = event.get("body") or ""
    if event.get("isBase64Encoded"):
        if len(raw_body) > _MAX_ENCODED_LENGTH:
            count("CallbackRejected.TooLarge")
            return _answer(error_response(413, "payload_too_large", "body over 64 KiB"))
        try:
            body = base64.b64decode(raw_body, validate=True)
        except (binascii.Error, ValueError):
            count("CallbackRejected.Malformed")
            return _answer(error_response(400, "malformed_body", "body is not valid base64"))
    else:
        body = raw_body.encode("utf-8", errors="surrogatepass")
    try:
        outcome = callback_service().receive(body, received_hmac, source_ip)
    except Exception:
        # The service answers every failure it knows; this is the one it did not foresee.
        # A 503 in the error shape lets PayMob deliver again; the reconciler asks anyway.
        logger.exception("webhook failed")
        count("CallbackUnhandledError")
        return _answer(error_response(503, "temporarily_unavailable", "please retry later"))
    return _answer(_to_response(outcome), outcome)


def _to_response(outcome: CallbackOutcome) -> dict[str, Any]:
    if outcome.is_error:
        return error_response(outcome.http_status, str(outcome.result), outcome.message)
    body: dict[str, Any] = {"status": str(outcome.result), "detail": outcome.message}
    if outcome.payment_id:
        body["payment_id"] = outcome.payment_id
    return json_response(outcome.http_status, body)


def _answer(response: dict[str, Any], outcome: CallbackOutcome | None = None) -> dict[str, Any]:
    logger.info(
        "webhook answered",
        status_code=response["statusCode"],
        result=None if outcome is None else str(outcome.result),
        payment_id=None if outcome is None else outcome.payment_id,
    )
    return response
