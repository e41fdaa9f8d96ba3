"""The whole system offline: AWS emulator, API gateway, event pumps and PayMob simulator.

    with LocalStack(ports={"api": 0, "paymob": 0, "aws": 0}) as stack:
        requests.get(stack.api_url + "/api/health")

`start()` brings up, in order: the AWS emulator (moto's server app on 127.0.0.1), the
template's tables, queues and bus (devstack.provision, from template.yaml), the PayMob
secret and demo courses, the PayMob simulator, the functions (their handlers imported, the
union of their environments set), the gateway, and the pumps. `wait_ready()` returns once
every part answers; `stop()` stops them all and restores the process environment.

All functions run in this process, so the process environment is theirs: AWS_ENDPOINT_URL
points every boto3 client at the emulator before any client exists, with dummy
credentials. One LocalStack runs per process at a time.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import boto3
import requests
from botocore.config import Config
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

from devstack import auth, demo
from devstack.filters import parse_filter_criteria
from devstack.gateway import DevRoute, Gateway, routes_from_template
from devstack.lambdas import (
    FunctionSpec,
    Invocation,
    LocalFunction,
    function_specs,
    merge_environments,
)
from devstack.paymob_sim import PaymobSimulator, SimulatorConfig
from devstack.provision import QUEUE, ProvisionedResources, function_environment, provision
from devstack.pumps import (
    Pump,
    SchedulePump,
    SqsPump,
    StreamPump,
    scheduled_event,
    sqs_destination,
)
from devstack.servers import ServerThread
from devstack.template import load_template

logger = logging.getLogger("devstack")

ROOT = Path(__file__).resolve().parent.parent
STAGE = "dev"
DEFAULT_PORTS = {"api": 3000, "paymob": 8090, "aws": 4566}
PORT_VARIABLES = {"api": "DEV_API_PORT", "paymob": "DEV_PAYMOB_PORT", "aws": "DEV_AWS_PORT"}
DEFAULT_REGION = "eu-west-1"
DEFAULT_SCHEDULE_SECONDS = 30.0
# The local API's id in requestContext.apiId (a real one is 10 lowercase characters).
API_ID = "devstack01"
# Template parameters without defaults that the deploy supplies; locally they are fixed.
# The URL ones must pass the template's https patterns; the functions get local URLs instead.
_PLACEHOLDER_COURSE_URL = "https://courses.devstack.localhost/courses/{course_id}"
_SUPPORT_CONTACT = "support@devstack.localhost"
# The credentials boto3 uses against the emulator (moto accepts any).
_DUMMY_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
# Variables that would send boto3 somewhere other than the emulator, or sign as someone.
_CLEARED_VARIABLES = ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")

_ONE_PER_PROCESS = threading.Lock()


@dataclass(frozen=True)
class Settings:
    """What `make dev` and the tests may change, with the documented defaults.

    PAYMOB_HMAC_SECRET           the simulator signs with it, the webhook verifies with it
                                 (default: the simulator's default secret)
    PAYMOB_HMAC_SECRET_PREVIOUS  also accepted by the backend, as during a rotation (none)
    PAYMOB_INTEGRATION_ID        the simulator's card integration, accepted by the backend
                                 (default: the simulator's, 4097558)
    DEV_API_PORT, DEV_PAYMOB_PORT, DEV_AWS_PORT   3000, 8090, 4566 (0 picks a free port)
    DEV_SCHEDULE_SECONDS         period of every scheduled function locally (30; 0: only on
                                 demand through POST /_dev/schedules/<FunctionId>/run)
    AWS_DEFAULT_REGION           eu-west-1
    """

    ports: Mapping[str, int]
    region: str
    hmac_secret: str
    hmac_secret_previous: str | None
    integration_id: int
    schedule_seconds: float

    @classmethod
    def from_env(cls, env: Mapping[str, str], ports: Mapping[str, int] | None = None) -> Settings:
        defaults = SimulatorConfig()
        chosen: dict[str, int] = {}
        for name, default in DEFAULT_PORTS.items():
            if ports is not None and name in ports:
                chosen[name] = int(ports[name])
            else:
                chosen[name] = _int_setting(env, PORT_VARIABLES[name], default)
            if not 0 <= chosen[name] <= 65535:
                raise ValueError(f"{PORT_VARIABLES[name]}={chosen[name]} is not a port")
        unknown = set(ports or {}) - set(DEFAULT_PORTS)
        if unknown:
            raise ValueError(f"unknown ports {sorted(unknown)}; use api, paymob and aws")
        schedule = float(env.get("DEV_SCHEDULE_SECONDS") or DEFAULT_SCHEDULE_SECONDS)
        if schedule < 0:
            raise ValueError("DEV_SCHEDULE_SECONDS must not be negative")
        return cls(
            ports=chosen,
            region=env.get("AWS_DEFAULT_REGION") or DEFAULT_REGION,
            hmac_secret=env.get("PAYMOB_HMAC_SECRET") or defaults.hmac_secret,
            hmac_secret_previous=env.get("PAYMOB_HMAC_SECRET_PREVIOUS") or None,
            integration_id=_int_setting(env, "PAYMOB_INTEGRATION_ID", defaults.card_integration_id),
            schedule_seconds=schedule,
        )


def _int_setting(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r} is not a whole number") from None


def _moto_server_parts() -> tuple[Any, type[WSGIRequestHandler]]:
    """moto's server app and request handler (it keeps header spellings S3 needs), quiet.

    Imported here: moto's server app costs most of a second to import, and only the stack
    (not `make token`, not the gateway) needs it.
    """
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )

    class QuietMotoRequestHandler(MotoRequestHandler):
        def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
            pass

    return DomainDispatcherApplication(create_backend_app), QuietMotoRequestHandler


class LocalStack:
    """Everything `make dev` runs, startable and stoppable from a test."""

    def __init__(
        self,
        *,
        ports: Mapping[str, int] | None = None,
        env: Mapping[str, str] | None = None,
        function_env: Mapping[str, str] | None = None,
        root: Path = ROOT,
        template_path: Path | None = None,
        state_dir: Path | None = None,
        seed: bool = True,
    ) -> None:
        """`ports` (api, paymob, aws) and `env` (see Settings) override os.environ;
        `function_env` overrides variables of every function (say, a shorter threshold)."""
        self.settings = Settings.from_env(os.environ if env is None else env, ports)
        self.root = root
        self.template_path = template_path or root / "template.yaml"
        self.state_dir = state_dir
        self.seed = seed
        self._function_env = dict(function_env or {})
        self._saved_env: dict[str, str | None] = {}
        self._aws_server: ServerThread | None = None
        self._gateway_server: ServerThread | None = None
        self._owns_process = False
        self.simulator: PaymobSimulator | None = None
        self.template: dict[str, Any] = {}
        self.resources: ProvisionedResources | None = None
        self.keys: auth.KeyPair | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.skipped_functions: dict[str, str] = {}
        self.function_environment: dict[str, str] = {}
        self.pumps: dict[str, Pump] = {}
        self.schedules: dict[str, list[SchedulePump]] = {}
        self.gateway: Gateway | None = None
        self.aws_url = self.api_url = self.paymob_url = ""

    # --- lifecycle ---------------------------------------------------------------

    def __enter__(self) -> LocalStack:
        self.start()
        try:
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> LocalStack:
        if not _ONE_PER_PROCESS.acquire(blocking=False):
            raise RuntimeError("a LocalStack is already running in this process")
        self._owns_process = True
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        logger.info("local stack started in %.1f s", time.monotonic() - started)
        return self

    def _start(self) -> None:
        settings = self.settings
        ports = settings.ports
        moto_app, moto_handler = _moto_server_parts()
        self._aws_server = ServerThread(
            moto_app, name="aws-emulator", port=ports["aws"], request_handler=moto_handler
        )
        self.aws_url = self._aws_server.url
        self._set_process_env(
            {
                "AWS_ENDPOINT_URL": self.aws_url,
                "AWS_DEFAULT_REGION": settings.region,
                "AWS_REGION": settings.region,
                **_DUMMY_CREDENTIALS,
            }
        )
        # A fresh emulator: moto's state is per process, and a previous stack here (or a
        # test's mock) may have left some.
        requests.post(f"{self.aws_url}/moto-api/reset", timeout=10).raise_for_status()

        self.template = load_template(self.template_path)
        self.resources = provision(
            self.template, stage=STAGE, parameters=self._template_parameters()
        )

        simulator = PaymobSimulator(
            SimulatorConfig(
                hmac_secret=settings.hmac_secret,
                card_integration_id=settings.integration_id,
                wallet_integration_id=_other_integration(settings.integration_id),
            )
        )
        simulator.start("127.0.0.1", ports["paymob"])
        self.simulator = simulator
        self.paymob_url = simulator.url

        # The gateway's socket is bound now so its URL (PUBLIC_BASE_URL) is known before
        # the functions' environment is set; requests wait in the backlog until it serves.
        self._gateway_server = ServerThread(_NotYet(), name="api-gateway", port=ports["api"])
        self.api_url = self._gateway_server.url

        self.keys = auth.load_or_create_key_pair(self.state_dir)
        specs = function_specs(
            self.template,
            self.root,
            stack_name=self.resources.stack_name,
            parameters=self.resources.parameters,
        )
        self._load_functions(specs)
        self._create_paymob_secret()
        if self.seed:
            from devstack.seed import seed_courses

            seed_courses(self.resources["CoursesTable"], client=self._client("dynamodb"))

        routes = routes_from_template(
            self.template,
            parameters=self.resources.parameters,
            authorizer_for=lambda issuer, audiences: auth.JwtAuthorizer(
                self._keys, issuer, audiences
            ),
            functions=list(self.functions),
        )
        self.gateway = Gateway(
            routes,
            self.functions,
            api_id=API_ID,
            account_id=self.resources.account_id,
            dev_routes=self._dev_routes(),
        )
        self._gateway_server.app = self.gateway

        for spec in specs.values():
            if spec.logical_id in self.functions:
                self._create_pumps(spec)
        for pump in self.pumps.values():
            pump.start()

    def _template_parameters(self) -> dict[str, str]:
        wanted = {
            "JwtIssuer": auth.ISSUER,
            "JwtAudience": auth.AUDIENCE,
            "PaymobIntegrationIds": str(self.settings.integration_id),
            "CourseUrlTemplate": _PLACEHOLDER_COURSE_URL,
            "SupportContact": _SUPPORT_CONTACT,
        }
        declared = self.template.get("Parameters") or {}
        return {name: value for name, value in wanted.items() if name in declared}

    def _load_functions(self, specs: Mapping[str, FunctionSpec]) -> None:
        assert self.resources is not None
        local = {
            "PUBLIC_BASE_URL": self.api_url,
            "PAYMOB_BASE_URL": self.paymob_url,
            "COURSE_URL_TEMPLATE": f"{self.api_url}/_dev/courses/{{course_id}}",
            # A failed payment's "try again" leads back to the demo page, course chosen.
            "RETRY_URL_TEMPLATE": f"{self.api_url}/?course={{course_id}}",
            **self._function_env,
        }
        environments: dict[str, dict[str, str]] = {}
        for logical_id, spec in specs.items():
            if not spec.module_path.is_file():
                # A function someone is still writing: no routes, no pumps, said loudly.
                self.skipped_functions[logical_id] = f"no handler file {spec.module_path}"
                logger.warning("%s skipped: no handler file %s", logical_id, spec.module_path)
                continue
            environments[logical_id] = function_environment(
                self.template, logical_id, self.resources, overrides=local
            )
        self.function_environment = merge_environments(environments)
        self._set_process_env(self.function_environment)
        for logical_id in environments:
            function = LocalFunction(
                specs[logical_id],
                region=self.resources.region,
                account_id=self.resources.account_id,
            )
            function.load()
            self.functions[logical_id] = function

    def _create_paymob_secret(self) -> None:
        name = self.function_environment.get("PAYMOB_SECRET_NAME")
        if not name:
            return  # no function reads PayMob credentials (yet)
        config = self._simulator.config
        secret = json.dumps(
            {
                "hmac_secret": self.settings.hmac_secret,
                "hmac_secret_previous": self.settings.hmac_secret_previous,
                "secret_key": config.secret_key,
                "public_key": config.public_key,
                "api_key": config.api_key,
            }
        )
        self._client("secretsmanager").create_secret(Name=name, SecretString=secret)

    def _create_pumps(self, spec: FunctionSpec) -> None:
        function = self.functions[spec.logical_id]
        resources = self._resources
        for event_name, props in spec.events_of_type("DynamoDB").items():
            if props.get("Enabled") is False:
                continue
            on_failure = None
            destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
                "Destination"
            )
            if destination is not None:
                on_failure = sqs_destination(
                    self._client("sqs"), self._queue_url(self._resolve(destination))
                )
            name = f"{spec.logical_id}.{event_name}"
            self.pumps[name] = StreamPump(
                name=name,
                function=function,
                stream_arn=self._resolve(props["Stream"]),
                region=resources.region,
                streams_client=self._client("dynamodbstreams"),
                batch_size=int(props.get("BatchSize", 100)),
                starting_position=str(props.get("StartingPosition", "TRIM_HORIZON")),
                filters=parse_filter_criteria(props.get("FilterCriteria")),
                maximum_retry_attempts=int(props.get("MaximumRetryAttempts", -1)),
                bisect_on_error=bool(props.get("BisectBatchOnFunctionError", False)),
                maximum_record_age_seconds=int(props.get("MaximumRecordAgeInSeconds", -1)),
                report_batch_item_failures="ReportBatchItemFailures"
                in (props.get("FunctionResponseTypes") or []),
                on_failure=on_failure,
            )
        for event_name, props in spec.events_of_type("SQS").items():
            if props.get("Enabled") is False:
                continue
            queue_arn = self._resolve(props["Queue"])
            name = f"{spec.logical_id}.{event_name}"
            self.pumps[name] = SqsPump(
                name=name,
                function=function,
                queue_url=self._queue_url(queue_arn),
                queue_arn=queue_arn,
                region=resources.region,
                sqs_client=self._client("sqs"),
                batch_size=int(props.get("BatchSize", 10)),
                report_batch_item_failures="ReportBatchItemFailures"
                in (props.get("FunctionResponseTypes") or []),
            )
        for event_name, props in spec.events_of_type("Schedule", "ScheduleV2").items():
            name = f"{spec.logical_id}.{event_name}"
            enabled = props.get("Enabled", True) is not False and props.get("State") != "DISABLED"
            period = self.settings.schedule_seconds or None
            self.pumps[name] = pump = SchedulePump(
                name=name,
                function=function,
                period_seconds=period if enabled else None,
                event_factory=self._schedule_event_factory(spec, event_name, props),
            )
            self.schedules.setdefault(spec.logical_id, []).append(pump)

    def _schedule_event_factory(
        self, spec: FunctionSpec, event_name: str, props: Mapping[str, Any]
    ) -> Callable[[], Any]:
        resources = self._resources
        if "Input" in props:
            # A target with Input receives exactly that constant JSON.
            given = props["Input"]
            constant = json.loads(given) if isinstance(given, str) else given
            return lambda: constant
        rule = props.get("Name") or f"{resources.stack_name}-{spec.logical_id}{event_name}"
        rule_arn = f"arn:aws:events:{resources.region}:{resources.account_id}:rule/{rule}"
        return lambda: scheduled_event(
            rule_arn=rule_arn, region=resources.region, account_id=resources.account_id
        )

    def stop(self) -> None:
        """Stop everything that started and restore the process environment; idempotent."""
        for pump in self.pumps.values():
            pump.stop()
        # The gateway first, then the simulator (whose callbacks target the gateway), then
        # the emulator everything else talks to.
        if self._gateway_server is not None:
            self._gateway_server.stop()
            self._gateway_server = None
        if self.simulator is not None:
            self.simulator.stop()
            self.simulator = None
        if self._aws_server is not None:
            self._aws_server.stop()
            self._aws_server = None
        self._restore_process_env()
        if self._owns_process:
            self._owns_process = False
            _ONE_PER_PROCESS.release()

    # --- readiness ---------------------------------------------------------------

    def readiness(self) -> dict[str, bool]:
        """Which parts answer right now: emulator, gateway, simulator, each pump."""
        state = {
            "aws": _answers(f"{self.aws_url}/moto-api/config"),
            "gateway": _answers(self.api_url + self._gateway_health_path()),
            "paymob": _answers(f"{self.paymob_url}/_sim/config"),
        }
        for name, pump in self.pumps.items():
            state[f"pump:{name}"] = pump.healthy
        return state

    def _gateway_health_path(self) -> str:
        # The application's own health route once the status function serves it.
        if self.gateway is not None and self.gateway.has_route("GET /api/health"):
            return "/api/health"
        return "/_dev/health"

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            state = self.readiness()
            if all(state.values()):
                return
            if time.monotonic() > deadline:
                silent = ", ".join(name for name, ok in state.items() if not ok)
                raise TimeoutError(f"the local stack is not ready after {timeout:.0f} s: {silent}")
            time.sleep(0.1)

    # --- what tests and the demo use ---------------------------------------------

    @property
    def demo_url(self) -> str:
        return f"{self.api_url}/"

    def token(self, sub: str, role: str = "student", **options: Any) -> str:
        """A JWT the gateway accepts (auth.issue_token's options: ttl_seconds, now, ...)."""
        return auth.issue_token(self._keys, sub, role=role, **options)

    def run_schedule(self, function_logical_id: str) -> list[Invocation]:
        """Run a function's scheduled events now, as POST /_dev/schedules/<id>/run does."""
        pumps = self.schedules.get(function_logical_id)
        if not pumps:
            raise KeyError(f"{function_logical_id} has no schedule")
        return [pump.run_now() for pump in pumps]

    # --- the gateway's local-only routes -----------------------------------------

    def _dev_routes(self) -> list[DevRoute]:
        return [
            DevRoute("GET", "/", self._demo),
            DevRoute("GET", "/_dev/health", self._health),
            DevRoute("GET", "/_dev/token", self._dev_token),
            DevRoute("GET", "/_dev/jwks.json", self._jwks),
            DevRoute("POST", "/_dev/schedules/{function}/run", self._run_schedule),
            DevRoute("GET", "/_dev/courses/{courseId}", self._course),
        ]

    def _demo(self, request: Request, params: Mapping[str, str]) -> Response:
        gateway = self.gateway
        # The student chosen with ?student= is remembered (a cookie), so a "try again" link
        # back to this page keeps the same student.
        student = (
            request.args.get("student")
            or request.cookies.get(demo.STUDENT_COOKIE)
            or demo.DEFAULT_STUDENT
        )
        page = demo.demo_page(
            student=student,
            history_url="/me/payments"
            if gateway is not None and gateway.has_route("GET /me/payments")
            else None,
            admin_url="/admin" if gateway is not None and gateway.has_route("GET /admin") else None,
        )
        response = Response(page, content_type="text/html; charset=utf-8")
        response.set_cookie(demo.STUDENT_COOKIE, student, httponly=True, samesite="Lax")
        return response

    def _health(self, request: Request, params: Mapping[str, str]) -> Response:
        body = {
            "status": "ok",
            "functions": {name: f.load_error is None for name, f in self.functions.items()},
            "skipped_functions": self.skipped_functions,
            "pumps": {name: pump.healthy for name, pump in self.pumps.items()},
        }
        return _json(200, body)

    def _dev_token(self, request: Request, params: Mapping[str, str]) -> Response:
        query = parse_qs(request.query_string.decode("utf-8", "replace"))
        sub = (query.get("sub") or [""])[0].strip()
        role = (query.get("role") or ["student"])[0]
        if not sub or len(sub) > 128 or role not in auth.ROLES:
            return _json(400, {"message": "give ?sub=<user id> and optionally role=student|admin"})
        return _json(200, {"token": self.token(sub, role), "sub": sub, "role": role})

    def _jwks(self, request: Request, params: Mapping[str, str]) -> Response:
        return _json(200, {"keys": [self._keys.jwk()]})

    def _run_schedule(self, request: Request, params: Mapping[str, str]) -> Response:
        function = params["function"]
        if function not in self.schedules:
            return _json(404, {"message": f"no scheduled function {function}"})
        runs = [
            {
                "ok": invocation.ok,
                "request_id": invocation.request_id,
                "result": invocation.payload if invocation.ok else invocation.error,
            }
            for invocation in self.run_schedule(function)
        ]
        status = 200 if all(run["ok"] for run in runs) else 502
        return _json(status, {"function": function, "runs": runs})

    def _course(self, request: Request, params: Mapping[str, str]) -> Response:
        from coursepay.storage.catalog import CourseRepository

        course = CourseRepository(
            self._resources["CoursesTable"], client=self._client("dynamodb")
        ).get(params["courseId"])
        page = demo.course_page(params["courseId"], course.title if course else None)
        return Response(
            page, status=200 if course else 404, content_type="text/html; charset=utf-8"
        )

    # --- helpers -----------------------------------------------------------------

    @property
    def _resources(self) -> ProvisionedResources:
        if self.resources is None:
            raise RuntimeError("the stack has not been provisioned")
        return self.resources

    @property
    def _keys(self) -> auth.KeyPair:
        if self.keys is None:
            raise RuntimeError("the stack has not been started")
        return self.keys

    @property
    def _simulator(self) -> PaymobSimulator:
        if self.simulator is None:
            raise RuntimeError("the simulator is not running")
        return self.simulator

    def _client(self, service: str) -> Any:
        return boto3.client(
            service,
            region_name=self.settings.region,
            endpoint_url=self.aws_url,
            config=Config(retries={"mode": "standard", "max_attempts": 3}),
        )

    def _resolve(self, value: Any) -> str:
        """A Ref or GetAtt of a provisioned resource, as the pumps need them."""
        if isinstance(value, str):
            return value
        if isinstance(value, Mapping) and "Ref" in value:
            return self._resources[value["Ref"]]
        if isinstance(value, Mapping) and "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            logical_id, attribute = target.split(".", 1) if isinstance(target, str) else target
            return self._resources.get_att(logical_id, attribute)
        raise ValueError(f"cannot resolve {value!r} locally")

    def _queue_url(self, queue_arn: str) -> str:
        for resource in self._resources.of_type(QUEUE).values():
            if resource.attributes.get("Arn") == queue_arn:
                return resource.ref
        raise ValueError(f"no provisioned queue has the ARN {queue_arn}")

    def _set_process_env(self, values: Mapping[str, str]) -> None:
        if not self._saved_env:
            for name in _CLEARED_VARIABLES:
                self._saved_env[name] = os.environ.pop(name, None)
            for name in [n for n in os.environ if n.startswith("AWS_ENDPOINT_URL_")]:
                self._saved_env[name] = os.environ.pop(name)
        for name, value in values.items():
            self._saved_env.setdefault(name, os.environ.get(name))
            os.environ[name] = value

    def _restore_process_env(self) -> None:
        for name, value in self._saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved_env.clear()


class _NotYet:
    """The gateway's app while the stack is still starting: 503, as an API not deployed."""

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        return _json(503, {"message": "Service Unavailable"})(environ, start_response)


def _other_integration(card_integration_id: int) -> int:
    # The simulator needs a distinct wallet integration; the backend is given the card one.
    return card_integration_id + 1


def _json(status: int, body: Any) -> Response:
    return Response(json.dumps(body), status=status, content_type="application/json")


def _answers(url: str) -> bool:
    try:
        return 200 <= requests.get(url, timeout=2).status_code < 300
    except requests.RequestException:
        return False
