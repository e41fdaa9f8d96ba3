"""The local stack end to end: callback-to-enrolment latency, and webhook throughput against
the emulator's own rates, in one run of `devstack.stack.LocalStack` on free ports.

1. Callback to enrolment: students check out through the gateway with the stack's JWTs and
   pay on the PayMob simulator (normal mode delivers the callback before the pay call
   returns); the enrolment is visible once GET /api/me/enrollments lists it, polled about
   every 20 ms. In between: the webhook, the Payments stream, its pump (which polls every
   200 ms), the enroll function.
2. Webhooks per second: signed success callbacks POSTed to /api/payments/webhook from a
   few client threads, each settling a PENDING payment, against two baselines on the same
   emulator: raw PutItems of those very payments (the item checkout writes), and the
   floor, the exact two requests (Query, TransactWriteItems) the webhook's code builds
   for a callback, sent directly.

The stack runs in a child interpreter: it has process-wide state (one stack per process,
the handlers' per-container caches, which another benchmark run first in the same process
would have filled), and its function logs are kept out of the table. Servers listen on
127.0.0.1 only; every wait is bounded.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import requests

from bench.report import Section, ms, percentile, write_section

ROOT = Path(__file__).resolve().parent.parent
STUDENTS = 30  # timed checkouts (one more, untimed, warms every function first)
POLL_SECONDS = 0.02
VISIBLE_WITHIN_SECONDS = 15.0  # a student not enrolled by then fails the run
CALLBACKS = 60  # through the gateway, and as many by hand; each raw run writes twice that
BLOCK = 10  # callbacks of one kind in a row (see _webhook_throughput)
THREADS = 4
DRAIN_WITHIN_SECONDS = 30.0  # a block's enrolments take about a second
CHILD_TIMEOUT_SECONDS = 300
MASTERCARD = "5123456789012346"
# The webhook's success path: a Query on by-paymob-order, one TransactWriteItems.
WEBHOOK_REQUESTS = 2
# Callback ids far from the simulator's own (orders from 400000001, transactions 500000001).
ORDER_BASE, TRANSACTION_BASE = 760_000_000, 860_000_000
# The functions log only warnings and flush no metrics (dev logs at DEBUG otherwise).
QUIET = {"POWERTOOLS_LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}


# --- in the child: the measurements -------------------------------------------------------


class RequestCounter:
    """Wraps the emulator's WSGI app to count requests by operation (X-Amz-Target), and
    the ones it answered with an error, by status (`TransactWriteItems 400`)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        operation = environ.get("HTTP_X_AMZ_TARGET") or (
            f"{environ.get('REQUEST_METHOD')} {environ.get('PATH_INFO')}"
        )
        with self._lock:
            self._counts[operation] += 1

        def answer(status: str, headers: Any, *rest: Any) -> Any:
            if not status.startswith("2"):
                with self._lock:
                    self._counts[f"{operation} {status[:3]}"] += 1
            return start_response(status, headers, *rest)

        return self.app(environ, answer)

    def take(self) -> Counter[str]:
        with self._lock:
            taken, self._counts = self._counts, Counter()
        return taken


def _timed_parallel(
    calls: list[Callable[[], None]], threads: int = THREADS
) -> tuple[float, list[float]]:
    """Run the calls on `threads` threads: wall time of the whole run, and each call's time."""

    def one(call: Callable[[], None]) -> float:
        started = time.perf_counter()
        call()
        return time.perf_counter() - started

    started = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        each = list(pool.map(one, calls))
    return time.perf_counter() - started, each


def _summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "p50": percentile(samples, 50),
        "p95": percentile(samples, 95),
        "max": max(samples),
    }


def _operations(counts: Counter[str]) -> dict[str, int]:
    """Emulator requests by short operation name (DynamoDB_20120810.Query -> Query)."""
    named: Counter[str] = Counter()
    for target, number in counts.items():
        service, _, operation = target.rpartition(".")
        short = {"DynamoDBStreams_20120810": "streams "}.get(service, "")
        named[short + operation if service else target] += number
    return dict(named.most_common())


def _measure() -> dict[str, Any]:
    from devstack.stack import LocalStack

    phases: dict[str, float] = {}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-devstack-") as state:
        with LocalStack(
            ports={"api": 0, "paymob": 0, "aws": 0},
            env={"DEV_SCHEDULE_SECONDS": "0"},  # no reconciler runs in the middle
            function_env=QUIET,
            state_dir=Path(state),
        ) as stack:
            phases["start"] = time.perf_counter() - started
            _progress(f"stack ready in {phases['start']:.1f} s")
            assert stack._aws_server is not None
            counter = RequestCounter(stack._aws_server.app)
            stack._aws_server.app = counter
            mark = time.perf_counter()
            latency = _callback_to_enrolment(stack)
            phases["latency"] = time.perf_counter() - mark
            _progress(f"callback to enrolment done in {phases['latency']:.1f} s")
            mark = time.perf_counter()
            throughput = _webhook_throughput(stack, counter)
            phases["throughput"] = time.perf_counter() - mark
            mark = time.perf_counter()
        phases["stop"] = time.perf_counter() - mark
    phases["total"] = time.perf_counter() - started
    _progress(f"stack stopped in {phases['stop']:.1f} s; {phases['total']:.0f} s in all")
    return {"latency": latency, "throughput": throughput, "phases": phases}


def _course(stack: Any, label: str) -> Any:
    from coursepay.domain.records import Course
    from coursepay.storage.catalog import CourseRepository

    course = Course(
        course_id=f"bench-{label}-{uuid.uuid4().hex[:8]}",
        title=f"Benchmark course {label}",
        price_cents=150_000,
        currency="EGP",
    )
    return CourseRepository(stack.resources["CoursesTable"]).put(course)


def _callback_to_enrolment(stack: Any) -> dict[str, Any]:
    """Checkout, pay, and poll the student's enrolments until the course is listed."""
    from devstack.paymob_sim import SANDBOX_CVV, SANDBOX_EXPIRY, CardPayment

    simulator = stack.simulator
    course = _course(stack, "latency")
    http = requests.Session()
    enrolments_url = f"{stack.api_url}/api/me/enrollments"
    from_sent: list[float] = []
    from_answered: list[float] = []
    polls: list[float] = []
    for number in range(STUDENTS + 1):  # the first warms every function
        student = f"bench-student-{uuid.uuid4().hex[:10]}"
        headers = {"Authorization": f"Bearer {stack.token(student)}"}
        started = http.post(
            f"{stack.api_url}/api/courses/{course.course_id}/checkout",
            headers={**headers, "Content-Type": "application/json"},
            data="{}",
            timeout=20,
        )
        if started.status_code != 201:
            raise RuntimeError(f"checkout answered {started.status_code}: {started.text[:300]}")
        client_secret = parse_qs(urlsplit(started.json()["checkout_url"]).query)["clientSecret"][0]
        card = CardPayment(MASTERCARD, "Bench Student", SANDBOX_EXPIRY, SANDBOX_CVV)
        transaction, _ = simulator.pay(client_secret, card)
        answered = time.time()  # normal mode: the callback was answered before pay returned
        if not transaction["success"]:
            raise RuntimeError(f"the simulator declined the sandbox card: {transaction}")
        (delivery,) = [
            d for d in simulator.callbacks if d["order_id"] == transaction["order"]["id"]
        ]
        if delivery["status"] != "delivered" or delivery["attempts"][-1].get("status_code") != 200:
            raise RuntimeError(f"the callback was not accepted: {delivery['attempts']}")
        sent = _epoch(delivery["delivered_at"])  # when its (first successful) POST began

        deadline = time.monotonic() + VISIBLE_WITHIN_SECONDS
        next_poll = time.monotonic()
        while True:
            asked = time.perf_counter()
            listed = http.get(enrolments_url, headers=headers, timeout=20)
            seen = time.time()
            polls.append(time.perf_counter() - asked)
            if listed.status_code != 200:
                raise RuntimeError(f"enrolments answered {listed.status_code}: {listed.text[:300]}")
            if any(
                e["course_id"] == course.course_id and e["status"] == "ACTIVE"
                for e in listed.json()["enrollments"]
            ):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{student} not enrolled {VISIBLE_WITHIN_SECONDS:.0f} s after paying"
                )
            next_poll += POLL_SECONDS
            time.sleep(max(0.0, next_poll - time.monotonic()))
        if number > 0:
            from_sent.append(seen - sent)
            from_answered.append(seen - answered)
    return {
        "from_sent": _summary(from_sent),
        "from_answered": _summary(from_answered),
        "poll": _summary(polls),
    }


def _enrolled(courses: Any, course_id: str) -> int:
    stored = courses.get(course_id, consistent=True)
    return 0 if stored is None else int(stored.enrollment_count)


def _epoch(stamp: str) -> float:
    moment = datetime.fromisoformat(stamp)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class _Recorder:
    """A DynamoDB client that answers the webhook's Query with one payment and keeps the
    requests it is given: the webhook's own code then says what it would send."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.item = item
        self.sent: list[tuple[str, dict[str, Any]]] = []

    def query(self, **params: Any) -> dict[str, Any]:
        self.sent.append(("query", params))
        return {"Items": [self.item], "Count": 1}

    def transact_write_items(self, **params: Any) -> dict[str, Any]:
        self.sent.append(("transact_write_items", params))
        return {}


def _webhook_throughput(stack: Any, counter: RequestCounter) -> dict[str, Any]:
    import boto3
    from botocore.config import Config

    from coursepay.domain.payment import Payment
    from coursepay.domain.signature import HmacSecrets, sign_transaction_obj
    from coursepay.services.abuse import BadSignatureLimiter
    from coursepay.services.callbacks import CallbackService
    from coursepay.services.checkout import new_payment_id
    from coursepay.services.inquiry import iso
    from coursepay.storage.catalog import CourseRepository
    from coursepay.storage.payments import PaymentRepository
    from coursepay.storage.serialization import payment_to_item

    settings = stack.settings
    payments_table = stack.resources["PaymentsTable"]
    events_table = stack.resources["PaymentWebhooksTable"]
    course = _course(stack, "throughput")
    dynamodb = boto3.client(
        "dynamodb",
        region_name=settings.region,
        endpoint_url=stack.aws_url,
        # The functions' retry mode, but a long read timeout: an emulator pause must show
        # in the time, not turn into a retry that finds its own write (see the notes).
        config=Config(
            retries={"mode": "standard", "total_max_attempts": 2},
            read_timeout=30,
            max_pool_connections=2 * THREADS,
        ),
    )
    next_order = iter(range(ORDER_BASE, ORDER_BASE + 10 * CALLBACKS))

    def opened_payment() -> Payment:
        """A PENDING payment as checkout leaves it once PayMob opened the intention."""
        now = datetime.now(UTC)
        return Payment(
            payment_id=new_payment_id(now, os.urandom(10)),
            student_id=f"bench-student-{uuid.uuid4().hex[:10]}",
            course_id=course.course_id,
            amount_cents=course.price_cents,
            currency=course.currency,
            created_at=iso(now),
            updated_at=iso(now),
            version=2,  # created, then PayMob's references recorded
            integration_ids=(settings.integration_id,),
            paymob_order_id=str(next(next_order)),
            paymob_intention_id=f"pi_test_{uuid.uuid4().hex}",
            checkout_url=stack.simulator.checkout_url(f"sim_csk_test_{uuid.uuid4().hex}"),
            expires_at=iso(now + timedelta(hours=1)),
        )

    def put(payment: Payment) -> Callable[[], None]:
        item = payment_to_item(payment)
        return lambda: dynamodb.put_item(
            TableName=payments_table,
            Item=item,
            ConditionExpression="attribute_not_exists(payment_id)",
        )

    def raw_run(count: int) -> tuple[list[Payment], dict[str, Any]]:
        payments = [opened_payment() for _ in range(count)]
        counter.take()
        took, each = _timed_parallel([put(p) for p in payments])
        return payments, _rate(count, took, each, counter.take())

    sample = json.loads(
        (ROOT / "tests" / "events" / "transaction_processed_callback.json").read_text()
    )

    def signed_callback(payment: Payment, transaction_id: int) -> tuple[bytes, str]:
        body: dict[str, Any] = copy.deepcopy(sample)
        obj = body["obj"]
        obj.update(
            id=transaction_id,
            amount_cents=payment.amount_cents,
            currency=payment.currency,
            integration_id=settings.integration_id,
            created_at=datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds"),
        )
        obj["order"].update(
            id=int(payment.paymob_order_id or 0),
            amount_cents=payment.amount_cents,
            currency=payment.currency,
            merchant_order_id=payment.payment_id,  # PayMob echoes the special_reference
        )
        return json.dumps(body).encode(), sign_transaction_obj(obj, settings.hmac_secret)

    http_local = threading.local()
    webhook = f"{stack.api_url}/api/payments/webhook"
    answers: Counter[str] = Counter()
    answers_lock = threading.Lock()

    def through_gateway(raw: bytes, hmac: str) -> Callable[[], None]:
        def deliver() -> None:
            session = getattr(http_local, "session", None)
            if session is None:
                session = http_local.session = requests.Session()
            answer = session.post(
                f"{webhook}?hmac={hmac}",
                data=raw,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            status = answer.json().get("status") if answer.status_code == 200 else None
            with answers_lock:
                answers[f"{answer.status_code} {status}"] += 1

        return deliver

    secrets = HmacSecrets(settings.hmac_secret)

    def by_hand(payment: Payment, raw: bytes, hmac: str) -> Callable[[], None]:
        """The two requests the webhook would make for this callback, made directly."""
        recorder = _Recorder(payment_to_item(payment))
        service = CallbackService(
            payments=PaymentRepository(payments_table, events_table, client=recorder),
            retry_queue=None,
            secrets=lambda: secrets,
            limiter=BadSignatureLimiter(20, 60),
        )
        outcome = service.receive(raw, hmac, "127.0.0.1")
        if str(outcome.result) != "accepted" or [n for n, _ in recorder.sent] != [
            "query",
            "transact_write_items",
        ]:
            raise RuntimeError(f"unexpected success path: {outcome}, {recorder.sent}")
        (_, query), (_, transaction) = recorder.sent

        def send() -> None:
            dynamodb.query(**query)
            dynamodb.transact_write_items(**transaction)

        return send

    before_payments, before = raw_run(2 * CALLBACKS)
    _progress(f"raw PutItem run: {before['per_second']:.0f}/s")
    callbacks = [signed_callback(p, TRANSACTION_BASE + n) for n, p in enumerate(before_payments)]
    floor_calls = [
        by_hand(p, *cb) for p, cb in zip(before_payments[::2], callbacks[::2], strict=True)
    ]
    ours_calls = [through_gateway(*cb) for cb in callbacks[1::2]]

    # moto copies every table a transaction touches, stream included, so transactions slow
    # down as the tables grow: the two kinds run in alternating blocks (ABBA) on the same
    # tables. Between blocks, untimed, the enrol pump finishes the block's enrolments, so
    # no block inherits another's backlog.
    courses = CourseRepository(stack.resources["CoursesTable"])
    settled = 0

    def drain() -> float:
        started = time.perf_counter()
        deadline = time.monotonic() + DRAIN_WITHIN_SECONDS
        while (enrolled := _enrolled(courses, course.course_id)) < settled:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"{settled - enrolled} of {settled} enrolments not done after "
                    f"{DRAIN_WITHIN_SECONDS:.0f} s; webhook answers {dict(answers)}; emulator "
                    f"requests (with error statuses) so far {dict(seen + counter.take())}. A "
                    f"cancelled TransactWriteItems makes moto swap in its copy of the table, "
                    f"and the stream pump's iterator then sees no new record."
                )
            time.sleep(0.05)
        return time.perf_counter() - started

    spent = {"floor": 0.0, "ours": 0.0, "drain": 0.0}
    each: dict[str, list[float]] = {"floor": [], "ours": []}
    emulator: dict[str, Counter[str]] = {"floor": Counter(), "ours": Counter()}
    seen: Counter[str] = Counter()
    for number, start in enumerate(range(0, CALLBACKS, BLOCK)):
        order = ("floor", "ours") if number % 2 == 0 else ("ours", "floor")
        for kind in order:
            calls = (floor_calls if kind == "floor" else ours_calls)[start : start + BLOCK]
            counter.take()
            # By hand, one callback at a time: the webhook's one warm container sends its
            # requests that way (and moto fails concurrent transactions on one table).
            took, times = _timed_parallel(calls, 1 if kind == "floor" else THREADS)
            spent[kind] += took
            each[kind] += times
            block = counter.take()
            emulator[kind] += block
            seen += block
            settled += len(calls)
            spent["drain"] += drain()
    if answers != Counter({"200 accepted": CALLBACKS}):
        raise RuntimeError(f"callbacks were not all accepted: {dict(answers)}")
    floor = _rate(CALLBACKS, spent["floor"], each["floor"], emulator["floor"])
    ours = _rate(CALLBACKS, spent["ours"], each["ours"], emulator["ours"])
    _progress(f"callbacks: floor {floor['per_second']:.1f}/s, ours {ours['per_second']:.1f}/s")

    counter.take()
    _, after = raw_run(2 * CALLBACKS)
    _progress(f"raw PutItem run again: {after['per_second']:.0f}/s")
    return {
        "before": before,
        "floor": floor,
        "ours": ours,
        "after": after,
        "drain_seconds": spent["drain"],
        "payments_stream_records": _stream_records(stack, payments_table),
    }


def _rate(count: int, took: float, each: list[float], emulator: Counter[str]) -> dict[str, Any]:
    return {
        "seconds": took,
        "per_second": count / took,
        "calls": _summary(each),
        "emulator": _operations(emulator),
    }


def _stream_records(stack: Any, table: str) -> int:
    """How many records the Payments stream holds (what moto copies in every transaction)."""
    import boto3

    streams = boto3.client(
        "dynamodbstreams", region_name=stack.settings.region, endpoint_url=stack.aws_url
    )
    arn = boto3.client(
        "dynamodb", region_name=stack.settings.region, endpoint_url=stack.aws_url
    ).describe_table(TableName=table)["Table"]["LatestStreamArn"]
    total = 0
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for _ in range(1000):  # bounded: 1000 records a page
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            total += len(page["Records"])
            iterator = page.get("NextShardIterator")
            if not page["Records"] or iterator is None:
                break
    return total


def _progress(message: str) -> None:
    print(f"bench.local_stack: {message}", file=sys.stderr, flush=True)


# --- in the parent: the section -----------------------------------------------------------


def _row(label: str, calls: dict[str, float] | None, *rates: str) -> list[str]:
    if calls is None:
        return [label, "", "", "", "", *rates]
    timed = [ms(calls[q]) for q in ("p50", "p95", "max")]
    return [label, f"{calls['n']:.0f}", *timed, *rates]


def _listed(operations: dict[str, int], limit: int = 6) -> str:
    return ", ".join(f"{name} {number}" for name, number in list(operations.items())[:limit])


def section(found: dict[str, Any]) -> Section:
    latency, runs, phases = found["latency"], found["throughput"], found["phases"]
    before, after, floor, ours = runs["before"], runs["after"], runs["floor"], runs["ours"]
    writes = before["calls"]["n"] + after["calls"]["n"]
    raw = writes / (before["seconds"] + after["seconds"])
    ours_rate, floor_rate = ours["per_second"], floor["per_second"]
    per_request = WEBHOOK_REQUESTS * ours_rate

    failed = any(name[-3:].isdigit() for run in (ours, floor) for name in run["emulator"])
    errors = " (a status after an operation: the answers with that error status)"
    errors = errors if failed else ""

    def rates(rate: float, to_floor: bool = True) -> tuple[str, str, str]:
        return f"{rate:.1f}", f"{rate / raw:.2f}", f"{rate / floor_rate:.2f}" if to_floor else ""

    rows = [
        _row("callback sent → enrolment listed", latency["from_sent"], "", "", ""),
        _row("callback answered 200 → enrolment listed", latency["from_answered"], "", "", ""),
        _row(
            "raw: PutItem of a PENDING payment, before",
            before["calls"],
            *rates(before["per_second"], False),
        ),
        _row(
            "raw: PutItem of a PENDING payment, after",
            after["calls"],
            *rates(after["per_second"], False),
        ),
        _row(
            "floor: the webhook's Query + TransactWriteItems, by hand",
            floor["calls"],
            *rates(floor_rate),
        ),
        _row(
            "ours: signed success callbacks through the gateway", ours["calls"], *rates(ours_rate)
        ),
        _row(
            f"ours, per DynamoDB request ({WEBHOOK_REQUESTS} a callback)",
            None,
            f"{per_request:.1f}",
            f"{per_request / raw:.2f}",
            "",
        ),
    ]
    return Section(
        key="local-stack",
        title="Local stack: callback to enrolment, and webhooks per second",
        command="make bench (bench/local_stack.py)",
        headers=[
            "measure",
            "n",
            "p50 (ms)",
            "p95 (ms)",
            "max (ms)",
            "per second",
            "÷ raw PutItem/s",
            "÷ floor/s",
        ],
        rows=rows,
        notes=[
            f"One run of devstack's LocalStack on free 127.0.0.1 ports (moto server, gateway, "
            f"pumps, PayMob simulator and all functions in one process, in a child "
            f"interpreter), function logs at WARNING, schedules off; started in "
            f"{phases['start']:.1f} s, {phases['total']:.0f} s in all. Compare rows with each "
            f"other, not with AWS.",
            f"Latency: {STUDENTS} students one at a time (after one untimed): checkout through "
            f"the gateway with the stack's JWT, then the simulator's pay call, whose normal "
            f"mode delivers the callback before it returns. *Sent*: the delivery log's time "
            f"of the callback's POST; *answered*: the pay call's return; *listed*: the answer "
            f"of the first GET /api/me/enrollments showing the course, polled every "
            f"{POLL_SECONDS * 1000:.0f} ms (a poll took {ms(latency['poll']['p50'])} ms at "
            f"p50). In between: the Payments stream, its pump (polls every 200 ms), the "
            f"enroll function.",
            f"Rates, the per-call columns each call's time: raw is boto3 PutItem "
            f"(conditional, as checkout's) of the item checkout leaves, from {THREADS} "
            f"threads, {before['calls']['n']} before (the payments the callbacks then settle) "
            f"and {after['calls']['n']} after; the ratio columns divide by both runs together "
            f"({raw:.1f}/s). Ours: {CALLBACKS} signed success callbacks POSTed to "
            f"/api/payments/webhook from {THREADS} threads, all answered 200 accepted. Floor: "
            f"for {CALLBACKS} other payments, the exact Query and TransactWriteItems the "
            f"webhook's code builds for their callbacks, sent directly one callback at a "
            f"time, as the webhook's one warm container sends them. Floor and ours alternate "
            f"in blocks of {BLOCK}.",
            f"moto deep-copies each table a TransactWriteItems touches, its stream records "
            f"included ({runs['payments_stream_records']} in the Payments stream at the end), "
            f"so transactions slow down as the run goes on while PutItem does not: the "
            f"floor, not PutItem, is what the webhook's requests cost in this emulator. moto "
            f"also keeps every such copy (it tracks all its model instances), so the process "
            f"grows and pauses to collect garbage, most likely the long maxima. The "
            f"webhook function serves one invocation at a time, as one warm container. The "
            f"enroll pump settles the PAID payments meanwhile; emulator requests during "
            f"ours: {_listed(ours['emulator'])}; during the floor: "
            f"{_listed(floor['emulator'])}{errors}. Waiting for the enrolments between "
            f"blocks took {runs['drain_seconds']:.1f} s in all, untimed.",
        ],
    )


_EMF = '{"_aws"'  # a metrics line of powertools (it prints them even when disabled)


def run() -> Section:
    """Measure in a fresh interpreter (see the module's docstring) and build the section."""
    with tempfile.TemporaryDirectory(prefix="bench-local-stack-") as scratch:
        out = Path(scratch) / "found.json"
        child = subprocess.run(
            [
                sys.executable,
                "-W",
                "ignore:No application metrics to publish:UserWarning",
                "-m",
                "bench.local_stack",
                "--measure",
                str(out),
            ],
            cwd=ROOT,
            # The stack sets what it needs; a benchmark run before in this process may have
            # left its own AWS and Powertools settings here (webhook_latency does).
            env={
                name: value
                for name, value in os.environ.items()
                if not name.startswith(("AWS_", "POWERTOOLS_", "PAYMOB_", "DEV_"))
            },
            stdout=subprocess.PIPE,
            text=True,
            timeout=CHILD_TIMEOUT_SECONDS,
            check=False,
        )
        # The functions' own lines (warnings and errors only, at this log level).
        logged = [line for line in child.stdout.splitlines() if not line.startswith(_EMF)]
        for line in logged[-20:]:
            print(f"  function log: {line[:400]}", file=sys.stderr)
        if child.returncode != 0:
            raise RuntimeError(f"the measuring process failed ({child.returncode})")
        return section(json.loads(out.read_text()))


def _main(arguments: list[str]) -> None:
    if arguments[:1] == ["--measure"]:
        Path(arguments[1]).write_text(json.dumps(_measure()))
        sys.stdout.flush()
        sys.stderr.flush()
        # The stack has stopped and the results are written: skip tearing down the
        # emulator's objects, which moto keeps (every transaction's table copy) and which
        # take seconds to free.
        os._exit(0)
    found = run()
    print(found.table())
    write_section(found)


if __name__ == "__main__":
    _main(sys.argv[1:])
