"""The checkout, status and reconcile functions against moto and the PayMob simulator.

Integration tests import the fixtures they use:

    paymob           a PayMob simulator on a free loopback port (callbacks dropped unless a
                     test switches them on: nothing listens for them in these tests)
    paymob_secret    the stage's PayMob secret in Secrets Manager, holding the simulator's keys
    function         `function("CheckoutFunction")` loads a handler fresh under its template
                     environment (PayMob's URL pointed at the simulator) and calls it

and build requests with tests/support/events.py.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from aws_lambda_powertools.utilities import parameters

from coursepay import wiring
from devstack.paymob_sim import SANDBOX_CARDS, CardPayment, PaymobSimulator, SimulatorConfig
from tests.support.aws import REGION, STAGE, AwsStack
from tests.support.events import LambdaContext, http_event, lambda_context, student_claims

ROOT = Path(__file__).resolve().parents[2]
PUBLIC_BASE_URL = "https://pay.courses.example"
SECRET_NAME = f"course-payments/{STAGE}/paymob"
SIMULATOR = SimulatorConfig()
CARD = next(iter(SANDBOX_CARDS))
DECLINED_CARD = "4000000000000002"

_HANDLERS = {
    "CheckoutFunction": ("functions/checkout", "handle_checkout", "checkout"),
    "StatusFunction": ("functions/status", "handle_status", "status"),
    "ReconcileFunction": ("functions/reconcile", "handle_reconcile", "reconcile"),
}


def paymob_secret_value(config: SimulatorConfig = SIMULATOR) -> dict[str, str]:
    return {
        "hmac_secret": config.hmac_secret,
        "secret_key": config.secret_key,
        "public_key": config.public_key,
        "api_key": config.api_key,
    }


@pytest.fixture
def paymob() -> Iterator[PaymobSimulator]:
    simulator = PaymobSimulator(SimulatorConfig(callback_mode="drop"))
    simulator.start(port=0)
    yield simulator
    simulator.stop()


@pytest.fixture
def paymob_secret(aws: AwsStack) -> Iterator[str]:
    client = boto3.client("secretsmanager", region_name=REGION)
    client.create_secret(Name=SECRET_NAME, SecretString=json.dumps(paymob_secret_value()))
    parameters.clear_caches()
    yield SECRET_NAME
    parameters.clear_caches()


def reset_wiring() -> None:
    """Forget every per-container object, as a new container would."""
    for value in vars(wiring).values():
        cache_clear = getattr(value, "cache_clear", None)
        if callable(cache_clear):
            cache_clear()


def load_handler(function_logical_id: str) -> ModuleType:
    """The handler module, imported afresh (its resolver and routes built again)."""
    directory, module_name, _ = _HANDLERS[function_logical_id]
    path = ROOT / directory / f"{module_name}.py"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


@dataclass
class Function:
    """One deployed function: its handler module and the context Lambda would pass."""

    module: ModuleType
    context: LambdaContext
    environment: dict[str, str]

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        response: dict[str, Any] = self.module.lambda_handler(event, self.context)
        return response


@pytest.fixture
def function(
    aws: AwsStack,
    lambda_environment: Callable[..., dict[str, str]],
    paymob: PaymobSimulator,
    paymob_secret: str,
) -> Iterator[Callable[..., Function]]:
    def start(function_logical_id: str, **overrides: str) -> Function:
        environment = lambda_environment(
            function_logical_id, **{"PAYMOB_BASE_URL": paymob.url, **overrides}
        )
        reset_wiring()
        _, _, name = _HANDLERS[function_logical_id]
        return Function(load_handler(function_logical_id), lambda_context(name), environment)

    yield start
    reset_wiring()


def pay(paymob: PaymobSimulator, checkout_url: str, card: str = CARD) -> tuple[dict[str, Any], str]:
    """Pay a checkout on the simulator as the student's browser would; the transaction and the
    signed redirect's raw query string."""
    client_secret = dict(part.split("=", 1) for part in urlsplit(checkout_url).query.split("&"))[
        "clientSecret"
    ]
    transaction, redirect_url = paymob.pay(
        client_secret, CardPayment(card, "Test Account", "01/39", "123")
    )
    assert redirect_url is not None
    return transaction, urlsplit(redirect_url).query


STUDENT = "student-7f3c"


def checkout_event(
    course_id: str, student: str = STUDENT, key: str | None = None
) -> dict[str, Any]:
    """POST /api/courses/{courseId}/checkout by a signed-in student."""
    return http_event(
        "POST",
        f"/api/courses/{course_id}/checkout",
        headers={"Idempotency-Key": key} if key is not None else {},
        claims=student_claims(student),
        path_parameters={"courseId": course_id},
        route_key="POST /api/courses/{courseId}/checkout",
    )


def status_event(payment_id: str, claims: dict[str, Any] | None) -> dict[str, Any]:
    """GET /api/payments/{paymentId}/status."""
    return http_event(
        "GET",
        f"/api/payments/{payment_id}/status",
        claims=claims,
        path_parameters={"paymentId": payment_id},
        route_key="GET /api/payments/{paymentId}/status",
    )


def result_event(
    course_id: str, raw_query: str, accept_language: str | None = None
) -> dict[str, Any]:
    """The browser's GET of the result page, PayMob's redirect query kept byte for byte."""
    headers = {"accept": "text/html,application/xhtml+xml"}
    if accept_language is not None:
        headers["accept-language"] = accept_language
    return http_event(
        "GET",
        f"/courses/{course_id}/payment/result",
        headers=headers,
        query=raw_query,
        path_parameters={"courseId": course_id},
        route_key="GET /courses/{courseId}/payment/result",
    )


def backdate(aws: AwsStack, payment_id: str, by: timedelta) -> None:
    """Move a stored payment's times into the past, as if it had been waiting that long."""
    item = aws.dynamodb.get_item(
        TableName=aws.payments_table, Key={"payment_id": {"S": payment_id}}
    )["Item"]
    shifted: dict[str, Any] = {}
    for name in ("created_at", "updated_at", "expires_at", "last_checked_at"):
        if name in item:
            moment = datetime.fromisoformat(item[name]["S"]) - by
            shifted[name] = {"S": moment.isoformat(timespec="microseconds")}
    names = {f"#a{i}": name for i, name in enumerate(shifted)}
    values = {f":v{i}": value for i, value in enumerate(shifted.values())}
    aws.dynamodb.update_item(
        TableName=aws.payments_table,
        Key={"payment_id": {"S": payment_id}},
        UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(shifted))),
        ExpressionAttributeNames=names,
        ExpressionAttributeValues=values,
    )
