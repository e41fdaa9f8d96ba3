"""API Gateway v2 (payload format 2.0) events for handler tests, built by the local gateway's code.

The same `build_event` serves `make dev`, so tests and the local stack hand the handlers
events of one shape: raw query string kept as sent, lower-cased headers, base64 bodies for
non-text content, the JWT authorizer's claims in the request context.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote

from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from devstack.gateway import Route, build_event

ACCOUNT_ID = "123456789012"
API_ID = "testapi"
PAYMOB_SOURCE_IP = "41.33.0.10"


def api_event(
    route_key: str,
    path: str,
    *,
    body: bytes = b"",
    query: str = "",
    headers: Mapping[str, str] | None = None,
    claims: Mapping[str, Any] | None = None,
    source_ip: str = PAYMOB_SOURCE_IP,
) -> dict[str, Any]:
    """The event API Gateway sends for `route_key` ("POST /api/payments/webhook") at `path`."""
    method, route_path = route_key.split(" ", 1)
    environ = EnvironBuilder(
        method=method,
        path=path,
        query_string=query,
        data=body,
        headers=list((headers or {"content-type": "application/json"}).items()),
        environ_base={"REMOTE_ADDR": source_ip},
    ).get_environ()
    # The request line as a client sends it, query included, as a real server records it.
    environ["RAW_URI"] = environ["REQUEST_URI"] = f"{path}?{query}" if query else path
    request = Request(environ)
    route = Route(method, route_path, "function-under-test")
    segments = [unquote(part) for part in path.strip("/").split("/")]
    path_parameters = route.match(method, segments)
    if path_parameters is None:
        raise ValueError(f"{path} does not match the route {route_key}")
    return build_event(
        request,
        route,
        path_parameters,
        body=body,
        api_id=API_ID,
        account_id=ACCOUNT_ID,
        claims=claims,
    )


def webhook_event(
    body: bytes,
    hmac: str | None,
    *,
    source_ip: str = PAYMOB_SOURCE_IP,
    content_type: str = "application/json",
) -> dict[str, Any]:
    """PayMob's POST of the transaction processed callback, `?hmac=` in the query string."""
    return api_event(
        "POST /api/payments/webhook",
        "/api/payments/webhook",
        body=body,
        query="" if hmac is None else f"hmac={hmac}",
        headers={"content-type": content_type},
        source_ip=source_ip,
    )
