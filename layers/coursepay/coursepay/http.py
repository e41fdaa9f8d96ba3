"""The HTTP contract's shapes: JSON bodies and the one error format, {"error": {code, message}}."""

from __future__ import annotations

import json
from typing import Any

JSON_HEADERS = {"content-type": "application/json", "cache-control": "no-store"}


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {**JSON_HEADERS, **(headers or {})},
        "body": json.dumps(body, separators=(",", ":"), ensure_ascii=False),
    }


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


def error_response(status: int, code: str, message: str) -> dict[str, Any]:
    return json_response(status, error_body(code, message))
