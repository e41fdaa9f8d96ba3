"""API Gateway HTTP API (payload format 2.0) events and Lambda contexts, as Lambda delivers them.

    http_event("POST", "/api/courses/c1/checkout", claims=student_claims("s-1"),
               headers={"Idempotency-Key": "k-1"}, path_parameters={"courseId": "c1"})

`query` is either a mapping (encoded once, like a browser would) or the raw query string
itself, kept byte for byte: what a signed PayMob redirect needs. Claims arrive as the JWT
authorizer passes them (strings; array claims as "[a b]").
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode

API_ID = "a1b2c3d4e5"
DOMAIN_NAME = f"{API_ID}.execute-api.eu-west-1.amazonaws.com"
ACCOUNT_ID = "123456789012"
SOURCE_IP = "198.51.100.23"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/124.0 Safari/537.36"
JWT_ISSUER = "https://auth.courses.example"


def http_event(
    method: str,
    path: str,
    body: Any = None,
    headers: Mapping[str, str] | None = None,
    query: Mapping[str, str] | str | None = None,
    claims: Mapping[str, Any] | None = None,
    path_parameters: Mapping[str, str] | None = None,
    *,
    route_key: str | None = None,
    source_ip: str = SOURCE_IP,
    domain_name: str = DOMAIN_NAME,
    base64_body: bool = False,
) -> dict[str, Any]:
    """One HTTP API request as the Lambda integration receives it."""
    method = method.upper()
    raw_query, parameters = _query(query)
    all_headers = {
        "accept": "application/json",
        "host": domain_name,
        "user-agent": USER_AGENT,
        "x-forwarded-for": source_ip,
        "x-forwarded-port": "443",
        "x-forwarded-proto": "https",
        "x-amzn-trace-id": f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]}",
    }
    # API Gateway lower-cases header names.
    all_headers.update({name.lower(): value for name, value in (headers or {}).items()})
    text_body = _body(body, all_headers)
    if claims is not None:
        all_headers.setdefault("authorization", "Bearer eyJhbGciOiJSUzI1NiJ9.e30.c2lnbmF0dXJl")
    now = time.time()
    request_context: dict[str, Any] = {
        "accountId": ACCOUNT_ID,
        "apiId": API_ID,
        "domainName": domain_name,
        "domainPrefix": domain_name.split(".")[0],
        "http": {
            "method": method,
            "path": path,
            "protocol": "HTTP/1.1",
            "sourceIp": source_ip,
            "userAgent": all_headers["user-agent"],
        },
        "requestId": base64.b32encode(uuid.uuid4().bytes).decode()[:16],
        "routeKey": route_key or f"{method} {path}",
        "stage": "$default",
        "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
        "timeEpoch": int(now * 1000),
    }
    if claims is not None:
        request_context["authorizer"] = {
            "jwt": {
                "claims": dict(claims),
                "scopes": None,
            }
        }
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": request_context["routeKey"],
        "rawPath": path,
        "rawQueryString": raw_query,
        "headers": all_headers,
        "requestContext": request_context,
        "isBase64Encoded": base64_body,
    }
    if parameters:
        event["queryStringParameters"] = parameters
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if text_body is not None:
        event["body"] = base64.b64encode(text_body.encode()).decode() if base64_body else text_body
    return event


def student_claims(sub: str, **overrides: Any) -> dict[str, Any]:
    """A student's verified JWT claims, with the profile claims checkout bills with."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": sub,
        "iss": JWT_ISSUER,
        "aud": "course-payments",
        "iat": str(now),
        "exp": str(now + 3600),
        "email": f"{sub}@students.courses.example",
        "given_name": "Salma",
        "family_name": "Hassan",
        "phone_number": "+201000000001",
    }
    claims.update(overrides)
    return {name: value for name, value in claims.items() if value is not None}


def admin_claims(sub: str = "admin-1", **overrides: Any) -> dict[str, Any]:
    return student_claims(sub, groups="[admin]", **overrides)


@dataclass
class LambdaContext:
    """What a handler reads of Lambda's context object; the remaining time can be scripted."""

    function_name: str = "course-payments-dev-function"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 512
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    remaining_millis: list[int] = field(default_factory=lambda: [180_000])
    log_group_name: str = "/aws/lambda/course-payments-dev-function"
    log_stream_name: str = "2024/06/13/[$LATEST]0123456789abcdef"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:eu-west-1:{ACCOUNT_ID}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        # Each call takes the next scripted value; the last one repeats.
        if len(self.remaining_millis) > 1:
            return self.remaining_millis.pop(0)
        return self.remaining_millis[0]


def lambda_context(function: str = "function", *remaining_millis: int) -> LambdaContext:
    name = f"course-payments-dev-{function}"
    return LambdaContext(
        function_name=name,
        log_group_name=f"/aws/lambda/{name}",
        remaining_millis=list(remaining_millis) or [180_000],
    )


def scheduled_event(rule: str = "course-payments-dev-reconcile") -> dict[str, Any]:
    """An EventBridge scheduled event, as the reconcile function receives it."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": ACCOUNT_ID,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "region": "eu-west-1",
        "resources": [f"arn:aws:events:eu-west-1:{ACCOUNT_ID}:rule/{rule}"],
        "detail": {},
    }


def json_body(response: Mapping[str, Any]) -> Any:
    """The decoded JSON body of a handler's response."""
    return json.loads(response["body"])


def _query(query: Mapping[str, str] | str | None) -> tuple[str, dict[str, str]]:
    if query is None:
        return "", {}
    raw = query if isinstance(query, str) else urlencode(list(query.items()), quote_via=quote)
    # API Gateway decodes the parameters once and joins a repeated key's values with commas.
    parameters: dict[str, str] = {}
    for key, value in parse_qsl(raw, keep_blank_values=True):
        parameters[key] = f"{parameters[key]},{value}" if key in parameters else value
    return raw, parameters


def _body(body: Any, headers: dict[str, str]) -> str | None:
    if body is None:
        return None
    if isinstance(body, str | bytes):
        return body.decode() if isinstance(body, bytes) else body
    headers.setdefault("content-type", "application/json")
    return json.dumps(body)
