"""Typed errors that carry their HTTP status and code: the one mapping from failure to answer.

Services raise them (or subclasses named for the domain); the HTTP edge turns any of them
into the one error shape. Nothing here imports the edge, so services can use them.
"""

from __future__ import annotations


class ApiError(Exception):
    status = 500
    code = "internal_error"

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    """Also what a caller sees for someone else's payment: its existence is not theirs to learn."""

    status, code = 404, "not_found"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class BadGateway(ApiError):
    """PayMob failed or refused: the client gets a clear 502, never a hang or a stack trace."""

    status, code = 502, "payment_provider_error"


class ServiceUnavailable(ApiError):
    status, code = 503, "temporarily_unavailable"
