"""The local gateway: routes from the template, payload 2.0 events, the JWT authorizer, responses.

The gateway runs on a real loopback socket in front of small handler modules written for
these tests, so what the handlers receive is exactly what the gateway built from the bytes
a client sent. The reference event is tests/events/apigw_http_api_v2_jwt_event.json: the
payload 2.0 shape AWS documents for an HTTP API Lambda integration behind a JWT authorizer.
"""

from __future__ import annotations

import base64
import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from devstack.auth import (
    AUDIENCE,
    ISSUER,
    JwtAuthorizer,
    KeyPair,
    generate_key_pair,
    issue_token,
)
from devstack.gateway import Gateway, Route, routes_from_template
from devstack.lambdas import Invocation, LocalFunction, function_specs
from devstack.servers import ServerThread
from devstack.template import load_template

REPO = Path(__file__).resolve().parents[2]
REFERENCE_EVENT = json.loads((REPO / "tests/events/apigw_http_api_v2_jwt_event.json").read_text())
PARAMETERS = {"Stage": "test", "JwtIssuer": ISSUER, "JwtAudience": [AUDIENCE, "other-client"]}
KEYS = generate_key_pair()

ECHO_HANDLER = """
import json


def lambda_handler(event, context):
    seen = {
        "function_name": context.function_name,
        "memory_limit_in_mb": context.memory_limit_in_mb,
        "aws_request_id": context.aws_request_id,
        "invoked_function_arn": context.invoked_function_arn,
        "remaining_ms": context.get_remaining_time_in_millis(),
    }
    return {
        "statusCode": 200,
        "headers": {"content-type": "application/json"},
        "body": json.dumps({"event": event, "context": seen}),
    }
"""

REPLY_HANDLER = """
import base64
import time

PNG = b"\\x89PNG\\r\\n\\x1a\\n\\x00binary"
REPLIES = {
    "dict": {"message": "hello", "count": 2},
    "string": "plain words",
    "binary": {
        "statusCode": 201,
        "headers": {"content-type": "image/png"},
        "isBase64Encoded": True,
        "body": base64.b64encode(PNG).decode(),
    },
    "cookies": {
        "statusCode": 202,
        "headers": {"content-type": "text/plain", "x-count": 7},
        "cookies": ["a=1; Path=/", "b=2; HttpOnly"],
        "body": "ok",
    },
    "bad-status": {"statusCode": "teapot", "body": ""},
}


def lambda_handler(event, context):
    kind = event["pathParameters"]["kind"]
    if kind == "raise":
        raise RuntimeError("the handler failed")
    if kind == "slow":
        time.sleep(1.3)
        return {"statusCode": 200, "body": "too late"}
    return REPLIES[kind]
"""


def _http_event(method: str, path: str, **extra: Any) -> dict[str, Any]:
    return {
        "Type": "HttpApi",
        "Properties": {"ApiId": {"Ref": "Api"}, "Method": method, "Path": path, **extra},
    }


TEMPLATE: dict[str, Any] = {
    "Globals": {"Function": {"Timeout": 10, "MemorySize": 512}},
    "Resources": {
        "Api": {
            "Type": "AWS::Serverless::HttpApi",
            "Properties": {
                "Auth": {
                    "DefaultAuthorizer": "Jwt",
                    "Authorizers": {
                        "Jwt": {
                            "IdentitySource": "$request.header.Authorization",
                            "JwtConfiguration": {
                                "issuer": {"Ref": "JwtIssuer"},
                                "audience": {"Ref": "JwtAudience"},
                            },
                        }
                    },
                }
            },
        },
        "EchoFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "FunctionName": {"Fn::Sub": "gateway-${Stage}-echo"},
                "CodeUri": "functions/gwtest_echo/",
                "Handler": "handle_gwtest_echo.lambda_handler",
                "MemorySize": 256,
                "Events": {
                    "Checkout": _http_event("POST", "/api/courses/{courseId}/checkout"),
                    "Special": _http_event("GET", "/api/courses/special/checkout"),
                    "ByCourse": _http_event("GET", "/api/courses/{courseId}/checkout"),
                    "Files": _http_event("GET", "/files/{path+}", Auth={"Authorizer": "NONE"}),
                    "Anything": _http_event("ANY", "/open", Auth={"Authorizer": "NONE"}),
                },
            },
        },
        "ReplyFunction": {
            "Type": "AWS::Serverless::Function",
            "Properties": {
                "CodeUri": "functions/gwtest_reply/",
                "Handler": "handle_gwtest_reply.lambda_handler",
                "Timeout": 1,
                "Events": {
                    "Reply": _http_event("GET", "/reply/{kind}", Auth={"Authorizer": "NONE"}),
                },
            },
        },
    },
}


class CountingFunction:
    """A LocalFunction that also counts its invocations (to prove a 401 invoked nothing)."""

    def __init__(self, function: LocalFunction) -> None:
        self.function = function
        self.invocations = 0

    @property
    def arn(self) -> str:
        return self.function.arn

    def invoke(self, event: Any) -> Invocation:
        self.invocations += 1
        return self.function.invoke(event)


@dataclass
class Served:
    url: str
    functions: dict[str, CountingFunction]

    def echo(self, response: requests.Response) -> dict[str, Any]:
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("gateway")
    for name, source in (("gwtest_echo", ECHO_HANDLER), ("gwtest_reply", REPLY_HANDLER)):
        (root / "functions" / name).mkdir(parents=True)
        (root / "functions" / name / f"handle_{name}.py").write_text(source)
    specs = function_specs(TEMPLATE, root, stack_name="gateway-test", parameters=PARAMETERS)
    functions = {
        logical_id: CountingFunction(
            LocalFunction(spec, region="eu-west-1", account_id="123456789012")
        )
        for logical_id, spec in specs.items()
    }
    routes = routes_from_template(
        TEMPLATE,
        parameters=PARAMETERS,
        authorizer_for=lambda issuer, audiences: JwtAuthorizer(KEYS, issuer, audiences),
    )
    gateway = Gateway(routes, functions, api_id="gwtest0001", account_id="123456789012")
    server = ServerThread(gateway, name="gateway-test")
    try:
        yield Served(server.url, functions)
    finally:
        server.stop()


def token(keys: KeyPair = KEYS, **options: Any) -> str:
    return issue_token(keys, options.pop("sub", "student-7f3c"), **options)


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def _types(value: Any) -> Any:
    """The structure of a JSON value: keys kept, leaves replaced by their JSON type."""
    if isinstance(value, dict):
        return {key: _types(item) for key, item in value.items()}
    if isinstance(value, list):
        return ["list"]
    return type(value).__name__


# --- the event ----------------------------------------------------------------------------


def test_an_authorized_request_becomes_an_event_shaped_like_api_gateways(served: Served) -> None:
    # Given a signed-in student calling a JWT route with a query, cookies and a JSON body
    response = requests.post(
        f"{served.url}/api/courses/course-python-101/checkout?ref=newsletter&ref=home",
        data=b"{}",
        headers={
            **bearer(token(role="admin")),
            "Content-Type": "application/json",
            "Cookie": "theme=dark; session=abc123",
            "Idempotency-Key": "9d7e3b1c-4f2a-4d7e-9a61-0f5b2c8e1a77",
        },
        timeout=10,
    )

    # When the handler looks at the event it received
    event = served.echo(response)["event"]

    # Then it has the documented shape, key for key and type for type, minus what varies
    expected = _types(REFERENCE_EVENT)
    actual = _types(event)
    for volatile in ("headers",):
        expected.pop(volatile)
        actual.pop(volatile)
    claims_expected = expected["requestContext"]["authorizer"]["jwt"].pop("claims")
    claims_actual = actual["requestContext"]["authorizer"]["jwt"].pop("claims")
    assert actual == expected
    # and claims arrive as API Gateway renders them: every value a string
    assert set(claims_expected.values()) == {"str"}
    assert set(claims_actual.values()) == {"str"}
    # And the values that are not random are the request's own
    assert event["routeKey"] == "POST /api/courses/{courseId}/checkout"
    assert event["rawPath"] == "/api/courses/course-python-101/checkout"
    assert event["rawQueryString"] == "ref=newsletter&ref=home"
    assert event["queryStringParameters"] == {"ref": "newsletter,home"}
    assert event["cookies"] == ["theme=dark", "session=abc123"]
    assert "cookie" not in event["headers"]
    assert event["headers"]["idempotency-key"] == "9d7e3b1c-4f2a-4d7e-9a61-0f5b2c8e1a77"
    assert all(name == name.lower() for name in event["headers"])
    assert event["pathParameters"] == {"courseId": "course-python-101"}
    assert event["body"] == "{}"
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["routeKey"] == event["routeKey"]
    assert context["stage"] == "$default"
    assert context["apiId"] == "gwtest0001"
    assert context["accountId"] == "123456789012"
    assert context["http"]["method"] == "POST"
    assert context["http"]["path"] == "/api/courses/course-python-101/checkout"
    assert context["http"]["sourceIp"] == "127.0.0.1"
    assert abs(context["timeEpoch"] / 1000 - time.time()) < 60
    claims = context["authorizer"]["jwt"]["claims"]
    assert claims["sub"] == "student-7f3c"
    assert claims["iss"] == ISSUER
    assert claims["groups"] == "[admin]"
    assert claims["exp"].isdigit()


def test_the_raw_query_string_is_passed_exactly_and_parameters_decoded_once(
    served: Served,
) -> None:
    # Given a PayMob-style redirect query: dots in keys, an encoded +, a literal +, a repeat
    raw = "created_at=2024-06-13T11%3A33%3A44%2B04%3A00&source_data.pan=2346&x=a+b&x=c&empty="

    event = served.echo(requests.get(f"{served.url}/files/a/b%20c.txt?{raw}", timeout=10))["event"]

    assert event["rawQueryString"] == raw
    assert event["queryStringParameters"] == {
        "created_at": "2024-06-13T11:33:44+04:00",
        "source_data.pan": "2346",
        # API Gateway percent-decodes but does not turn + into a space; repeats are joined
        "x": "a+b,c",
        "empty": "",
    }
    assert event["rawPath"] == "/files/a/b%20c.txt"
    assert event["requestContext"]["http"]["path"] == "/files/a/b c.txt"
    assert event["pathParameters"] == {"path": "a/b c.txt"}
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    assert "authorizer" not in event["requestContext"]


def test_repeated_headers_are_joined_with_commas(served: Served) -> None:
    parts = urlsplit(served.url)
    connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    connection.putrequest("GET", "/open")
    connection.putheader("X-Trace", "one")
    connection.putheader("X-Trace", "two")
    connection.endheaders()
    body = json.loads(connection.getresponse().read())
    connection.close()

    assert body["event"]["headers"]["x-trace"] == "one,two"
    assert "queryStringParameters" not in body["event"]
    assert body["event"]["rawQueryString"] == ""


@pytest.mark.parametrize(
    ("content_type", "as_text"),
    [
        ("application/json; charset=utf-8", True),
        ("text/plain", True),
        ("application/xml", True),
        ("application/octet-stream", False),
        # API Gateway base64-encodes form posts too, which surprises many handlers
        ("application/x-www-form-urlencoded", False),
        (None, False),
    ],
)
def test_bodies_are_base64_unless_their_content_type_is_text(
    served: Served, content_type: str | None, as_text: bool
) -> None:
    payload = b'{"amount_cents": 100000, "name": "\xd8\xb9\xd9\x84\xd9\x8a"}'
    headers = {"Content-Type": content_type} if content_type else {}

    event = served.echo(
        requests.put(f"{served.url}/open", data=payload, headers=headers, timeout=10)
    )["event"]

    assert event["routeKey"] == "ANY /open"
    assert event["requestContext"]["http"]["method"] == "PUT"
    assert event["isBase64Encoded"] is (not as_text)
    if as_text:
        assert event["body"] == payload.decode("utf-8")
    else:
        assert base64.b64decode(event["body"]) == payload


def test_the_handler_gets_a_lambda_context_from_the_template(served: Served) -> None:
    seen = served.echo(requests.get(f"{served.url}/open", timeout=10))["context"]

    assert seen["function_name"] == "gateway-test-echo"
    assert seen["memory_limit_in_mb"] == "256"
    assert seen["invoked_function_arn"].endswith(":function:gateway-test-echo")
    assert len(seen["aws_request_id"]) == 36
    # Timeout 10 s from Globals: the handler starts with almost all of it left
    assert 9000 < seen["remaining_ms"] <= 10000


# --- the JWT authorizer --------------------------------------------------------------------

CHECKOUT = "/api/courses/course-python-101/checkout"


def test_a_valid_token_reaches_the_function(served: Served) -> None:
    response = requests.post(served.url + CHECKOUT, headers=bearer(token()), timeout=10)
    assert response.status_code == 200


def test_the_bearer_prefix_is_optional_like_the_jwt_authorizer(served: Served) -> None:
    response = requests.post(served.url + CHECKOUT, headers={"Authorization": token()}, timeout=10)
    assert response.status_code == 200


def test_a_token_for_another_accepted_audience_passes(served: Served) -> None:
    response = requests.post(
        served.url + CHECKOUT, headers=bearer(token(audience="other-client")), timeout=10
    )
    assert response.status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="missing"),
        pytest.param({"Authorization": "Bearer "}, id="empty"),
        pytest.param(bearer("not-a-jwt"), id="garbage"),
        pytest.param(bearer(token(now=time.time() - 7200, ttl_seconds=3600)), id="expired"),
        pytest.param(bearer(token(now=time.time() + 600)), id="not-yet-valid"),
        pytest.param(bearer(token(audience="someone-else")), id="wrong-audience"),
        pytest.param(bearer(token(issuer="https://evil.example")), id="wrong-issuer"),
        pytest.param(bearer(token(generate_key_pair())), id="unknown-key"),
        pytest.param(
            bearer(token(KeyPair(generate_key_pair().private_key, KEYS.kid))),
            id="wrong-key-same-kid",
        ),
    ],
)
def test_a_bad_or_missing_token_is_refused_before_any_function_runs(
    served: Served, headers: dict[str, str]
) -> None:
    function = served.functions["EchoFunction"]
    before = function.invocations

    response = requests.post(served.url + CHECKOUT, headers=headers, timeout=10)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert function.invocations == before


def test_an_unsigned_token_is_refused(served: Served) -> None:
    import jwt

    forged = jwt.encode(
        {"sub": "x", "iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60},
        key="",
        algorithm="none",
        headers={"kid": KEYS.kid},
    )
    response = requests.post(served.url + CHECKOUT, headers=bearer(forged), timeout=10)
    assert response.status_code == 401


# --- routes --------------------------------------------------------------------------------


def test_a_literal_segment_beats_a_path_parameter(served: Served) -> None:
    special = served.echo(
        requests.get(
            f"{served.url}/api/courses/special/checkout", headers=bearer(token()), timeout=10
        )
    )["event"]
    other = served.echo(
        requests.get(
            f"{served.url}/api/courses/other/checkout", headers=bearer(token()), timeout=10
        )
    )["event"]

    assert special["routeKey"] == "GET /api/courses/special/checkout"
    assert "pathParameters" not in special
    assert other["routeKey"] == "GET /api/courses/{courseId}/checkout"
    assert other["pathParameters"] == {"courseId": "other"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/nowhere"),
        ("DELETE", CHECKOUT),  # the path exists, not for this method
        ("GET", "/api/courses//checkout"),  # an empty segment is no parameter
        ("GET", "/files/"),  # a greedy parameter needs at least one segment
    ],
)
def test_no_route_is_404_like_api_gateway(served: Served, method: str, path: str) -> None:
    response = requests.request(method, served.url + path, headers=bearer(token()), timeout=10)
    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_routes_come_from_every_http_api_event_of_the_real_template() -> None:
    template = load_template(REPO / "template.yaml")
    parameters = {"JwtIssuer": ISSUER, "JwtAudience": [AUDIENCE]}

    routes = routes_from_template(
        template,
        parameters=parameters,
        authorizer_for=lambda issuer, audiences: JwtAuthorizer(KEYS, issuer, audiences),
    )

    by_key: dict[str, Route] = {route.route_key: route for route in routes}
    declared = [
        (logical_id, event["Properties"])
        for logical_id, resource in template["Resources"].items()
        if resource["Type"] == "AWS::Serverless::Function"
        for event in (resource["Properties"].get("Events") or {}).values()
        if event["Type"] == "HttpApi"
    ]
    assert len(routes) == len(declared)
    for logical_id, properties in declared:
        route = by_key[f"{properties['Method'].upper()} {properties['Path']}"]
        assert route.function == logical_id
        if (properties.get("Auth") or {}).get("Authorizer") == "NONE":
            assert route.auth is None
        else:
            assert route.auth is not None
            assert route.auth.header == "authorization"
            assert route.auth.authorizer.issuer == ISSUER
            assert route.auth.authorizer.audiences == (AUDIENCE,)
    # PayMob's callback carries no JWT: its route must not have the authorizer
    assert by_key["POST /api/payments/webhook"].auth is None
    assert by_key["POST /api/payments/webhook"].function == "WebhookFunction"


# --- responses -----------------------------------------------------------------------------


def test_a_result_without_status_code_is_a_json_200(served: Served) -> None:
    as_dict = requests.get(f"{served.url}/reply/dict", timeout=10)
    as_string = requests.get(f"{served.url}/reply/string", timeout=10)

    assert as_dict.status_code == 200
    assert as_dict.headers["content-type"] == "application/json"
    assert as_dict.json() == {"message": "hello", "count": 2}
    assert as_string.status_code == 200
    assert as_string.headers["content-type"] == "application/json"
    assert as_string.text == "plain words"


def test_a_base64_body_is_decoded_and_cookies_become_set_cookie_headers(served: Served) -> None:
    binary = requests.get(f"{served.url}/reply/binary", timeout=10)
    cookies = requests.get(f"{served.url}/reply/cookies", timeout=10)

    assert binary.status_code == 201
    assert binary.headers["content-type"] == "image/png"
    assert binary.content == b"\x89PNG\r\n\x1a\n\x00binary"
    assert cookies.status_code == 202
    assert cookies.text == "ok"
    assert cookies.headers["x-count"] == "7"
    assert cookies.raw.headers.getlist("set-cookie") == ["a=1; Path=/", "b=2; HttpOnly"]
    assert cookies.headers["apigw-requestid"]


@pytest.mark.parametrize("kind", ["raise", "bad-status", "slow"])
def test_a_function_error_is_a_500_like_api_gateway(served: Served, kind: str) -> None:
    response = requests.get(f"{served.url}/reply/{kind}", timeout=10)

    assert response.status_code == 500
    assert response.json() == {"message": "Internal Server Error"}
