"""The local API gateway: template routes, payload 2.0 events, the JWT authorizer, responses.

It does what an HTTP API with Lambda proxy integrations (payload format 2.0) does in AWS:
- routes come from the template (every function's HttpApi events: method, path with
  {params} and {greedy+}, and the authorizer: NONE or the API's default JWT authorizer);
  the most specific route wins, and no match is 404 {"message":"Not Found"};
- JWT routes verify the Authorization header (RS256, kid, iss, aud or client_id, exp, nbf)
  and answer 401 {"message":"Unauthorized"} before any function runs;
- the event: version "2.0", routeKey, rawPath, rawQueryString exactly as received, cookies,
  lower-cased headers (repeats comma-joined, cookies moved out), queryStringParameters
  (decoded, repeats comma-joined, `+` kept as API Gateway keeps it), pathParameters,
  requestContext (accountId, apiId, domainName, domainPrefix, http, requestId, routeKey,
  stage "$default", time, timeEpoch, authorizer.jwt with claims as strings), and the body,
  base64 with isBase64Encoded true unless the content type is text (text/*, JSON, XML,
  JavaScript: the split AWS applies);
- the function's result maps back per the 2.0 response rules: statusCode, headers,
  cookies (one set-cookie each), body, isBase64Encoded; a result without statusCode is a
  200 application/json whose body is the result; a function error is 500
  {"message":"Internal Server Error"}.

It also serves what only the local stack has, under /_dev/ (never in AWS): the demo page
at GET /, a dev token endpoint, the local JWKS, health, and schedule triggers.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from urllib.parse import unquote

from werkzeug.datastructures import Headers
from werkzeug.wrappers import Request, Response

from devstack.auth import (
    JwtAuthorizer,
    Unauthorized,
    claims_as_api_gateway_renders,
    scopes_of,
)
from devstack.lambdas import Invocation

logger = logging.getLogger("devstack.gateway")

HTTP_API = "AWS::Serverless::HttpApi"
# SAM's name for the API it creates when a function's HttpApi event names no ApiId.
IMPLICIT_API = "ServerlessHttpApi"
NO_AUTH = "NONE"
# API Gateway's own limit on an HTTP API request's payload.
MAX_REQUEST_BYTES = 10 * 1024 * 1024

_TEXT_TYPES = ("application/json", "application/xml", "application/javascript")


class RouteConfigError(ValueError):
    """The template's HttpApi events describe something the local gateway cannot serve."""


@dataclass(frozen=True)
class Authorization:
    """A route's authorizer: which header holds the token and what verifies it."""

    name: str
    header: str
    authorizer: JwtAuthorizer
    scopes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Route:
    method: str  # "GET", ..., or "ANY"
    path: str  # "/api/payments/{paymentId}/status"
    function: str  # the function's logical id
    auth: Authorization | None = None
    _segments: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_segments", _parse_path(self.path))

    @property
    def route_key(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def specificity(self) -> tuple[int, ...]:
        # Literal segments beat {param}, which beats {greedy+}, left to right; a method
        # beats ANY. Lower sorts first.
        kinds = {"literal": 0, "param": 1, "greedy": 2}
        return (*(kinds[kind] for kind, _ in self._segments), self.method == "ANY")

    def match(self, method: str, segments: Sequence[str]) -> dict[str, str] | None:
        """Path parameters if this route takes the request, else None."""
        if self.method not in ("ANY", method):
            return None
        params: dict[str, str] = {}
        for index, (kind, name) in enumerate(self._segments):
            if kind == "greedy":
                rest = segments[index:]
                if not rest or not rest[0]:
                    return None
                params[name] = "/".join(rest)
                return params
            if index >= len(segments):
                return None
            segment = segments[index]
            if kind == "literal":
                if segment != name:
                    return None
            else:
                if not segment:
                    return None
                params[name] = segment
        return params if len(segments) == len(self._segments) else None


def _parse_path(path: str) -> tuple[tuple[str, str], ...]:
    if not path.startswith("/"):
        raise RouteConfigError(f"route path {path!r} must start with /")
    parts = path.strip("/").split("/") if path != "/" else [""]
    parsed: list[tuple[str, str]] = []
    for index, part in enumerate(parts):
        greedy = re.fullmatch(r"\{([A-Za-z0-9_.-]+)\+\}", part)
        param = re.fullmatch(r"\{([A-Za-z0-9_.-]+)\}", part)
        if greedy:
            if index != len(parts) - 1:
                raise RouteConfigError(f"route path {path!r}: a greedy parameter must be last")
            parsed.append(("greedy", greedy.group(1)))
        elif param:
            parsed.append(("param", param.group(1)))
        else:
            parsed.append(("literal", part))
    return tuple(parsed)


def _resolve_parameter(value: Any, parameters: Mapping[str, Any]) -> Any:
    if isinstance(value, Mapping) and set(value) == {"Ref"} and value["Ref"] in parameters:
        return parameters[value["Ref"]]
    return value


def routes_from_template(
    template: Mapping[str, Any],
    *,
    parameters: Mapping[str, Any],
    authorizer_for: Callable[[str, tuple[str, ...]], JwtAuthorizer],
    functions: Sequence[str] | None = None,
) -> list[Route]:
    """Every HttpApi event of every function as a Route, with its authorizer.

    `authorizer_for(issuer, audiences)` returns the verifier of a JWT authorizer whose
    issuer and audiences (after parameter references) are given; `functions`, if set,
    keeps only the routes of those functions (the others answer 404).
    """
    resources: Mapping[str, Any] = template.get("Resources") or {}
    routes: list[Route] = []
    for logical_id, resource in resources.items():
        if resource.get("Type") != "AWS::Serverless::Function":
            continue
        if functions is not None and logical_id not in functions:
            continue
        events = (resource.get("Properties") or {}).get("Events") or {}
        for event_name, event in events.items():
            if event.get("Type") != "HttpApi":
                continue
            properties = event.get("Properties") or {}
            method = str(properties.get("Method", "ANY")).upper()
            method = "ANY" if method in ("ANY", "X-AMAZON-APIGATEWAY-ANY-METHOD") else method
            path = properties.get("Path")
            if not isinstance(path, str):
                raise RouteConfigError(f"{logical_id}.{event_name}: only explicit paths are served")
            api_id = properties.get("ApiId")
            api_name = api_id["Ref"] if isinstance(api_id, Mapping) else IMPLICIT_API
            auth = _route_auth(
                resources, api_name, properties.get("Auth") or {}, parameters, authorizer_for
            )
            routes.append(Route(method, path, logical_id, auth))
    keys = [route.route_key for route in routes]
    duplicated = sorted({key for key in keys if keys.count(key) > 1})
    if duplicated:
        raise RouteConfigError(f"routes declared twice: {', '.join(duplicated)}")
    return routes


def _route_auth(
    resources: Mapping[str, Any],
    api_name: str,
    event_auth: Mapping[str, Any],
    parameters: Mapping[str, Any],
    authorizer_for: Callable[[str, tuple[str, ...]], JwtAuthorizer],
) -> Authorization | None:
    api = resources.get(api_name) or {}
    api_auth = (api.get("Properties") or {}).get("Auth") or {}
    name = event_auth.get("Authorizer", api_auth.get("DefaultAuthorizer"))
    if name is None or name == NO_AUTH:
        return None
    config = (api_auth.get("Authorizers") or {}).get(name)
    if config is None:
        raise RouteConfigError(f"authorizer {name} is not declared on {api_name}")
    jwt_config = config.get("JwtConfiguration")
    if jwt_config is None:
        raise RouteConfigError(f"authorizer {name}: only JWT authorizers are emulated")
    issuer = str(_resolve_parameter(jwt_config.get("issuer"), parameters))
    audience = _resolve_parameter(jwt_config.get("audience"), parameters)
    audiences = tuple(audience) if isinstance(audience, list) else (str(audience),)
    source = str(config.get("IdentitySource", "$request.header.Authorization"))
    prefix = "$request.header."
    if not source.startswith(prefix):
        raise RouteConfigError(f"authorizer {name}: identity source {source} is not emulated")
    scopes = tuple(event_auth.get("AuthorizationScopes") or ())
    header = source.removeprefix(prefix).lower()
    return Authorization(name, header, authorizer_for(issuer, audiences), scopes)


# --- the event -----------------------------------------------------------------------


def is_text_content(content_type: str | None) -> bool:
    """Whether API Gateway hands this body to the function as text (else base64)."""
    if not content_type:
        return False
    media = content_type.split(";", 1)[0].strip().lower()
    return media.startswith("text/") or media in _TEXT_TYPES


def _raw_target(request: Request) -> tuple[str, str]:
    # The request line as the client sent it (werkzeug keeps it in RAW_URI); PATH_INFO is
    # already percent-decoded, which would lose what rawPath must show.
    raw = request.environ.get("RAW_URI") or request.environ.get("REQUEST_URI")
    if raw:
        path, _, query = str(raw).partition("?")
        if "://" in path:  # an absolute-form request target
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        return path or "/", query
    return request.path, request.environ.get("QUERY_STRING", "")


def _query_parameters(raw_query: str) -> dict[str, str] | None:
    params: dict[str, list[str]] = {}
    for pair in raw_query.split("&"):
        if not pair:
            continue
        key, _, value = pair.partition("=")
        # Percent-decoding only: API Gateway leaves `+` as `+` (it is not form decoding).
        params.setdefault(unquote(key), []).append(unquote(value))
    return {key: ",".join(values) for key, values in params.items()} or None


def _request_id() -> str:
    # The shape of API Gateway's request ids ("JKJaXmPLvHcESHA=").
    return base64.b64encode(os.urandom(11)).decode("ascii")


def build_event(
    request: Request,
    route: Route,
    path_parameters: Mapping[str, str],
    *,
    body: bytes,
    api_id: str,
    account_id: str,
    claims: Mapping[str, Any] | None = None,
    now: datetime | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """The payload format 2.0 event API Gateway would send for this request and route."""
    moment = now or datetime.now(UTC)
    raw_path, raw_query = _raw_target(request)
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in request.headers.items():
        lowered = name.lower()
        if lowered == "cookie":
            cookies.extend(part.strip() for part in value.split(";") if part.strip())
            continue
        headers[lowered] = f"{headers[lowered]},{value}" if lowered in headers else value
    source_ip = request.remote_addr or "127.0.0.1"
    headers.setdefault("x-forwarded-for", source_ip)
    headers.setdefault("x-forwarded-proto", request.scheme)
    headers.setdefault("x-forwarded-port", str(request.environ.get("SERVER_PORT", "")))
    headers.setdefault(
        "x-amzn-trace-id", f"Root=1-{int(moment.timestamp()):08x}-{os.urandom(12).hex()}"
    )
    domain = headers.get("host", f"{request.environ.get('SERVER_NAME', '127.0.0.1')}")
    request_context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": domain,
        "domainPrefix": domain.split(".", 1)[0].split(":", 1)[0],
        "http": {
            "method": request.method,
            "path": unquote(raw_path),
            "protocol": request.environ.get("SERVER_PROTOCOL", "HTTP/1.1"),
            "sourceIp": source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id or _request_id(),
        "routeKey": route.route_key,
        "stage": "$default",
        "time": moment.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(moment.timestamp() * 1000),
    }
    if claims is not None:
        request_context["authorizer"] = {
            "jwt": {"claims": claims_as_api_gateway_renders(claims), "scopes": scopes_of(claims)}
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": raw_path,
        "rawQueryString": raw_query,
        "headers": headers,
    }
    if cookies:
        event["cookies"] = cookies
    query = _query_parameters(raw_query)
    if query is not None:
        event["queryStringParameters"] = query
    event["requestContext"] = request_context
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    text = is_text_content(request.headers.get("content-type"))
    if body:
        if text:
            event["body"] = body.decode("utf-8", errors="surrogateescape")
        else:
            event["body"] = base64.b64encode(body).decode("ascii")
    event["isBase64Encoded"] = bool(body) and not text
    return event


# --- the response --------------------------------------------------------------------


def _gateway_message(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    response = Response(
        json.dumps({"message": message}), status=status, content_type="application/json"
    )
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class InvalidFunctionResponse(ValueError):
    """The function answered something API Gateway cannot turn into an HTTP response."""


def response_from_result(result: Any) -> Response:
    """The HTTP response API Gateway makes of a function's result (payload 2.0 rules)."""
    if not isinstance(result, Mapping) or "statusCode" not in result:
        # No statusCode: API Gateway assumes 200, JSON, and the result as the body.
        body = result if isinstance(result, str) else json.dumps(result)
        return Response(body, status=200, content_type="application/json")
    status = result["statusCode"]
    if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
        raise InvalidFunctionResponse(f"statusCode {status!r} is not an HTTP status")
    raw_body = result.get("body")
    if raw_body is not None and not isinstance(raw_body, str):
        raise InvalidFunctionResponse("body must be a string")
    payload: bytes
    if result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(raw_body or "", validate=True)
        except ValueError as exc:
            raise InvalidFunctionResponse(f"body is not valid base64: {exc}") from None
    else:
        payload = (raw_body or "").encode("utf-8")
    headers = Headers()
    for name, value in (result.get("headers") or {}).items():
        headers.add(str(name), _header_text(value))
    for cookie in result.get("cookies") or []:
        headers.add("set-cookie", str(cookie))
    response = Response(payload, status=status, headers=headers)
    if "content-type" not in {name.lower() for name in (result.get("headers") or {})}:
        # What API Gateway sends when the function names no content type.
        response.headers["content-type"] = "application/json"
    return response


def _header_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# --- the gateway ---------------------------------------------------------------------


class Invoker(Protocol):
    """What the gateway needs of a function (LocalFunction, or a test's fake)."""

    def invoke(self, event: Any) -> Invocation: ...


DevHandler = Callable[[Request, Mapping[str, str]], Response]


@dataclass
class DevRoute:
    """A local-only endpoint (under /_dev/ or GET /), never part of the template."""

    method: str
    path: str
    handler: DevHandler
    _route: Route = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._route = Route(self.method, self.path, "devstack")

    def match(self, method: str, segments: Sequence[str]) -> dict[str, str] | None:
        return self._route.match(method, segments)


class Gateway:
    """The WSGI application of the local HTTP API."""

    def __init__(
        self,
        routes: Sequence[Route],
        functions: Mapping[str, Invoker],
        *,
        api_id: str,
        account_id: str,
        dev_routes: Sequence[DevRoute] = (),
    ) -> None:
        missing = sorted({route.function for route in routes} - set(functions))
        if missing:
            raise RouteConfigError(f"routes name functions that are not loaded: {missing}")
        self.routes = sorted(routes, key=lambda route: route.specificity)
        self.functions = functions
        self.api_id = api_id
        self.account_id = account_id
        self.dev_routes = list(dev_routes)

    def has_route(self, route_key: str) -> bool:
        return any(route.route_key == route_key for route in self.routes)

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        request = Request(environ)
        try:
            response = self.handle(request)
        except Exception:
            logger.exception("the local gateway failed on %s %s", request.method, request.path)
            response = _gateway_message(500, "Internal Server Error")
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        raw_path, _ = _raw_target(request)
        segments = [unquote(part) for part in raw_path.split("/")[1:]]
        method = request.method.upper()
        if raw_path.startswith("/_dev/") or raw_path == "/":
            for dev in self.dev_routes:
                params = dev.match(method, segments)
                if params is not None and not self._template_takes(method, segments, raw_path):
                    return dev.handler(request, params)
        for route in self.routes:
            params = route.match(method, segments)
            if params is not None:
                return self._invoke(request, route, params)
        return _gateway_message(404, "Not Found")

    def _template_takes(self, method: str, segments: Sequence[str], raw_path: str) -> bool:
        # GET / is the demo page only while the template has no route of its own there.
        return raw_path == "/" and any(r.match(method, segments) is not None for r in self.routes)

    def _invoke(self, request: Request, route: Route, params: Mapping[str, str]) -> Response:
        started = time.monotonic()
        claims = None
        if route.auth is not None:
            try:
                claims = route.auth.authorizer.verify(request.headers.get(route.auth.header))
            except Unauthorized as denied:
                logger.info("401 for %s: %s", route.route_key, denied.reason)
                return _gateway_message(
                    401,
                    "Unauthorized",
                    {"www-authenticate": 'Bearer error="invalid_token"'},
                )
            if not _has_a_scope(claims, route.auth.scopes):
                return _gateway_message(
                    403,
                    "Forbidden",
                    {"www-authenticate": 'Bearer error="insufficient_scope"'},
                )
        content_length = request.content_length
        if content_length is not None and content_length > MAX_REQUEST_BYTES:
            return _gateway_message(413, "Request Entity Too Large")
        body = request.get_data(cache=False)
        if len(body) > MAX_REQUEST_BYTES:
            return _gateway_message(413, "Request Entity Too Large")
        event = build_event(
            request,
            route,
            params,
            body=body,
            api_id=self.api_id,
            account_id=self.account_id,
            claims=claims,
        )
        invocation: Invocation = self.functions[route.function].invoke(event)
        request_id = event["requestContext"]["requestId"]
        if not invocation.ok:
            response = _gateway_message(500, "Internal Server Error")
        else:
            try:
                response = response_from_result(invocation.payload)
            except InvalidFunctionResponse as invalid:
                logger.error("%s answered an invalid response: %s", route.function, invalid)
                response = _gateway_message(500, "Internal Server Error")
        response.headers["apigw-requestid"] = request_id
        logger.info(
            "%s %s -> %s (%s, %.0f ms)",
            request.method,
            request.path,
            response.status_code,
            route.function,
            (time.monotonic() - started) * 1000,
        )
        return response


def _has_a_scope(claims: Mapping[str, Any], required: Sequence[str]) -> bool:
    # A route with AuthorizationScopes needs any one of them (API Gateway: 403 otherwise).
    return not required or bool(set(scopes_of(claims) or ()).intersection(required))
