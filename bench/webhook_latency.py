"""The webhook handler's own time per callback against a bare parse-and-verify baseline.

Both run in this process against in-process moto with the stack provisioned from
template.yaml. The baseline does what no correct webhook can skip (JSON parse, field
validation, HMAC check); the handler adds the event handling, one DynamoDB query and one
transaction (in moto, which dominates: compare the ratio, not the milliseconds, with AWS).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from bench.report import Section, ms, percentile

ROOT = Path(__file__).resolve().parent.parent
CALLBACKS = 300
SECRET = "BENCH0HMAC0SECRET0000000000000000"  # noqa: S105 - a benchmark-only key
PARAMETERS = {
    "JwtIssuer": "https://auth.bench.example",
    "JwtAudience": "bench",
    "PaymobIntegrationIds": "4097558",
    "CourseUrlTemplate": "https://learn.bench.example/courses/{course_id}",
    "SupportContact": "support@bench.example",
}


def _callback(order_id: int, transaction_id: int) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(
        (ROOT / "tests" / "events" / "transaction_processed_callback.json").read_text()
    )
    body["obj"]["id"] = transaction_id
    body["obj"]["order"]["id"] = order_id
    return body


def _event(body: bytes, hmac: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "POST /api/payments/webhook",
        "rawPath": "/api/payments/webhook",
        "rawQueryString": f"hmac={hmac}",
        "queryStringParameters": {"hmac": hmac},
        "headers": {"content-type": "application/json"},
        "requestContext": {"http": {"method": "POST", "sourceIp": "41.33.0.10"}},
        "body": body.decode(),
        "isBase64Encoded": False,
    }


class _Context:
    function_name = "bench-webhook"
    memory_limit_in_mb = "512"
    invoked_function_arn = "arn:aws:lambda:eu-west-1:123456789012:function:bench-webhook"
    aws_request_id = "bench"


class _EmulatorClock:
    """Time spent inside moto's request handling, to subtract from the handler's time."""

    def __init__(self) -> None:
        self.spent = 0.0
        self.requests = 0

    def install(self) -> None:
        from moto.core.botocore_stubber import BotocoreStubber

        process = BotocoreStubber.process_request

        def timed(stub: Any, request: Any) -> Any:
            started = time.perf_counter()
            try:
                return process(stub, request)
            finally:
                self.spent += time.perf_counter() - started
                self.requests += 1

        BotocoreStubber.process_request = timed  # type: ignore[method-assign,assignment]


EMULATOR = _EmulatorClock()


def _timed(calls: list[Callable[[], object]]) -> tuple[list[float], list[float], float]:
    """Per call: total time and own time (total less the emulator's), and requests per call."""
    total, own = [], []
    requests_before = EMULATOR.requests
    for call in calls:
        emulator_before = EMULATOR.spent
        started = time.perf_counter()
        call()
        elapsed = time.perf_counter() - started
        total.append(elapsed)
        own.append(elapsed - (EMULATOR.spent - emulator_before))
    return total, own, (EMULATOR.requests - requests_before) / len(calls)


def run() -> Section:
    os.environ.update(
        AWS_DEFAULT_REGION="eu-west-1",
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",  # noqa: S106 - moto's fake credentials
    )
    os.environ.pop("AWS_ENDPOINT_URL", None)
    sys.path[:0] = [str(ROOT / "functions" / "webhook"), str(ROOT / "layers" / "coursepay")]
    with mock_aws():
        EMULATOR.install()
        from coursepay.domain.payment import Payment
        from coursepay.domain.signature import (
            HmacSecrets,
            check_transaction_obj,
            sign_transaction_obj,
        )
        from coursepay.paymob.transactions import parse_transaction
        from coursepay.storage.payments import PaymentRepository
        from devstack.provision import function_environment, provision
        from devstack.template import load_template

        template = load_template(ROOT / "template.yaml")
        resources = provision(template, stage="dev", parameters=PARAMETERS)
        environment = function_environment(template, "WebhookFunction", resources)
        environment.pop("RETRY_QUEUE_URL", None)
        os.environ.update(environment)
        # Quiet logs and no metric flushes, and no limiter: the forged path is timed, not
        # throttled (one source address sends them all).
        os.environ.update(
            POWERTOOLS_LOG_LEVEL="WARNING",
            POWERTOOLS_METRICS_DISABLED="true",
            BAD_SIGNATURE_LIMIT=str(10 * CALLBACKS),
        )
        boto3.client("secretsmanager").create_secret(
            Name=environment["PAYMOB_SECRET_NAME"], SecretString=json.dumps({"hmac_secret": SECRET})
        )
        repository = PaymentRepository(environment["PAYMENTS_TABLE"], environment["WEBHOOKS_TABLE"])
        bodies = []
        for n in range(2 * CALLBACKS):
            order_id, transaction_id = 900_000_000 + n, 800_000_000 + n
            repository.create(
                Payment(
                    payment_id=f"bench-{n}",
                    student_id="bench-student",
                    course_id="bench-course",
                    amount_cents=100000,
                    currency="EGP",
                    created_at="2026-01-01T00:00:00+00:00",
                    updated_at="2026-01-01T00:00:00+00:00",
                    integration_ids=(4097558,),
                    paymob_order_id=str(order_id),
                )
            )
            body = _callback(order_id, transaction_id)
            bodies.append((json.dumps(body).encode(), sign_transaction_obj(body["obj"], SECRET)))

        handle_webhook = importlib.import_module("handle_webhook")

        secrets = HmacSecrets(SECRET)

        def bare(raw: bytes, hmac: str) -> None:
            obj = json.loads(raw)["obj"]
            parse_transaction(obj)
            check_transaction_obj(obj, hmac, secrets)

        client = boto3.client("dynamodb")
        table, events_table = environment["PAYMENTS_TABLE"], environment["WEBHOOKS_TABLE"]

        def emulator_floor(n: int) -> None:
            # The two requests of the success path, made directly: what moto itself costs.
            client.query(
                TableName=table,
                IndexName="by-paymob-order",
                KeyConditionExpression="paymob_order_id = :o",
                ExpressionAttributeValues={":o": {"S": str(900_000_000 + n)}},
            )
            key = {"payment_id": {"S": f"bench-{n}"}}
            client.transact_write_items(
                TransactItems=[
                    {
                        "Put": {
                            "TableName": events_table,
                            "Item": {**key, "event_key": {"S": "floor"}},
                            "ConditionExpression": "attribute_not_exists(event_key)",
                        }
                    },
                    {
                        "Update": {
                            "TableName": table,
                            "Key": key,
                            "UpdateExpression": "SET version = version + :one",
                            "ExpressionAttributeValues": {":one": {"N": "1"}},
                        }
                    },
                ]
            )

        handle_webhook.lambda_handler(
            _event(*bodies[0]), _Context()
        )  # a warm container: secret and clients cached
        ours = bodies[1:CALLBACKS]
        rows = []
        handler = handle_webhook.lambda_handler
        context = _Context()

        def deliver(raw: bytes, hmac: str) -> None:
            handler(_event(raw, hmac), context)

        baseline = _timed([partial(bare, r, h) for r, h in ours])
        floor = _timed([partial(emulator_floor, n) for n in range(CALLBACKS + 1, 2 * CALLBACKS)])
        new = _timed([partial(deliver, r, h) for r, h in ours])
        dup = _timed([partial(deliver, r, h) for r, h in ours])
        forged = _timed([partial(deliver, r, "ab" * 64) for r, _ in ours])
        base50 = percentile(baseline[1], 50)
        for label, (total, own, requests) in [
            ("baseline: parse, validate, verify HMAC", baseline),
            ("emulator floor: the success path's two requests, by hand", floor),
            ("handler: success", new),
            ("handler: duplicate", dup),
            ("handler: bad signature", forged),
        ]:
            p50, p99 = percentile(own, 50), percentile(own, 99)
            rows.append(
                [
                    label,
                    f"{requests:.0f}",
                    ms(p50),
                    ms(p99),
                    f"{p50 / base50:.1f}",
                    ms(percentile(total, 50)),
                ]
            )
    return Section(
        key="webhook-latency",
        title="Webhook handler time per callback",
        command="make bench (bench/webhook_latency.py)",
        headers=[
            "path",
            "AWS requests",
            "own p50 (ms)",
            "own p99 (ms)",
            "own p50 / baseline",
            "with emulator p50 (ms)",
        ],
        rows=rows,
        notes=[
            f"{CALLBACKS - 1} callbacks per path in one warm container, in-process moto "
            "provisioned from template.yaml. *Own* time is the call's time less the time "
            "spent inside moto's request handling (botocore's request building and response "
            "parsing stay in it); moto's transactions slow down as tables grow, so the "
            "with-emulator column measures moto, not the handler.",
            "AWS requests per path (asserted by tests/integration/test_webhook.py): success 2 "
            "(Query on by-paymob-order, TransactWriteItems), duplicate 2, unknown order 2 "
            "(Query, PutItem), bad signature 0.",
        ],
    )
