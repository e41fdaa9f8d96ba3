"""An HTTP resolver with the project's error mapping, shared by every JSON API function."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from pydantic import ValidationError

from coursepay.api.auth import Caller, caller_from_event
from coursepay.errors import ApiError
from coursepay.http import JSON_HEADERS, error_body
from coursepay.observability import logger
from coursepay.storage.errors import TransientStorageError


def _error(status: int, code: str, message: str) -> Response[str]:
    return Response(
        status_code=status,
        content_type=JSON_HEADERS["content-type"],
        body=json.dumps(error_body(code, message)),
        headers={"cache-control": "no-store"},
    )


def create_resolver() -> APIGatewayHttpResolver:
    app = APIGatewayHttpResolver()

    @app.exception_handler(ApiError)  # type: ignore[untyped-decorator]
    def _api_error(exc: ApiError) -> Response[str]:
        if exc.status >= 500:
            logger.warning("request failed", code=exc.code, detail=exc.message)
        return _error(exc.status, exc.code, exc.message)

    @app.exception_handler(ValidationError)  # type: ignore[untyped-decorator]
    def _invalid(exc: ValidationError) -> Response[str]:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return _error(400, "invalid_request", f"{where}: {first['msg']}" if where else first["msg"])

    @app.exception_handler(TransientStorageError)  # type: ignore[untyped-decorator]
    def _busy(exc: TransientStorageError) -> Response[str]:
        logger.warning("storage busy", detail=str(exc))
        return _error(503, "temporarily_unavailable", "please try again in a moment")

    @app.exception_handler(Exception)  # type: ignore[untyped-decorator]
    def _unexpected(exc: Exception) -> Response[str]:
        # Logged in full here; the client gets the error shape, never a stack trace.
        logger.exception("unexpected error")
        return _error(500, "internal_error", "something went wrong on our side")

    @app.not_found
    def _no_route(exc: Exception) -> Response[str]:
        return _error(404, "not_found", "no such route")

    return app


def current_caller(app: APIGatewayHttpResolver) -> Caller:
    event: Any = app.current_event.raw_event
    return caller_from_event(event)
