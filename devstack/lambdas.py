"""The template's functions, loaded from their files and invoked as Lambda would invoke them.

Each AWS::Serverless::Function becomes a LocalFunction: its handler module is imported by
file path (CodeUri + Handler, e.g. functions/webhook/handle_webhook.py as `handle_webhook`),
and every invocation gets a Lambda context with the function's name, memory, request id and
a deadline from its Timeout. A handler that raises, or runs past its timeout, is a function
error, reported the way Lambda reports one (errorType, errorMessage, stackTrace).

All functions share one process, so they share os.environ: the stack sets the union of their
variables once, and `merge_environments` refuses two functions that disagree on a value.

Each function behaves as one warm container: its invocations run one at a time (handler
modules keep per-container state, such as powertools' BatchProcessor, that is not
thread-safe), while different functions run concurrently.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

logger = logging.getLogger("devstack.lambdas")

FUNCTION = "AWS::Serverless::Function"
# Lambda's defaults when neither the function nor Globals sets them.
DEFAULT_TIMEOUT_SECONDS = 3
DEFAULT_MEMORY_MB = 128


class FunctionConfigError(ValueError):
    """The template describes a function the local stack cannot run as written."""


class EnvironmentConflict(ValueError):
    """Two functions need different values for one variable, but share one os.environ."""


@dataclass(frozen=True)
class FunctionSpec:
    """What the template says about one function."""

    logical_id: str
    function_name: str
    code_dir: Path
    handler: str  # "handle_webhook.lambda_handler"
    timeout_seconds: int
    memory_mb: int
    events: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)

    @property
    def module_name(self) -> str:
        return self.handler.rsplit(".", 1)[0]

    @property
    def handler_attribute(self) -> str:
        return self.handler.rsplit(".", 1)[1]

    @property
    def module_path(self) -> Path:
        return self.code_dir.joinpath(*self.module_name.split(".")).with_suffix(".py")

    def events_of_type(self, *types: str) -> dict[str, Mapping[str, Any]]:
        return {
            name: event.get("Properties") or {}
            for name, event in self.events.items()
            if event.get("Type") in types
        }


def function_specs(
    template: Mapping[str, Any],
    root: Path,
    *,
    stack_name: str,
    parameters: Mapping[str, Any],
) -> dict[str, FunctionSpec]:
    """Every AWS::Serverless::Function of the template, with Globals applied."""
    defaults = (template.get("Globals") or {}).get("Function") or {}
    specs: dict[str, FunctionSpec] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if resource.get("Type") != FUNCTION:
            continue
        properties = {**defaults, **(resource.get("Properties") or {})}
        code_uri = properties.get("CodeUri")
        handler = properties.get("Handler")
        if not isinstance(code_uri, str) or not isinstance(handler, str) or "." not in handler:
            raise FunctionConfigError(
                f"{logical_id}: CodeUri must be a local path and Handler module.function"
            )
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            function_name=_function_name(
                properties.get("FunctionName"), logical_id, stack_name, parameters
            ),
            code_dir=(root / code_uri).resolve(),
            handler=handler,
            timeout_seconds=int(properties.get("Timeout", DEFAULT_TIMEOUT_SECONDS)),
            memory_mb=int(properties.get("MemorySize", DEFAULT_MEMORY_MB)),
            events=properties.get("Events") or {},
        )
    return specs


def _function_name(
    declared: Any, logical_id: str, stack_name: str, parameters: Mapping[str, Any]
) -> str:
    # Names are `!Sub course-payments-${Stage}-webhook` style; CloudFormation's default is
    # <stack>-<LogicalId>-<random>, without the random part here so runs are repeatable.
    if isinstance(declared, str):
        return declared
    if isinstance(declared, Mapping) and isinstance(declared.get("Fn::Sub"), str):
        text: str = declared["Fn::Sub"]
        values = {"AWS::StackName": stack_name, **{k: str(v) for k, v in parameters.items()}}
        for name, value in values.items():
            text = text.replace("${" + name + "}", value)
        if "${" not in text:
            return text
    return f"{stack_name}-{logical_id}"


def merge_environments(environments: Mapping[str, Mapping[str, str]]) -> dict[str, str]:
    """The union of every function's variables; a variable two functions set differently
    is an EnvironmentConflict naming both, since one process has one os.environ."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    conflicts: list[str] = []
    for function, environment in environments.items():
        for name, value in environment.items():
            if name in merged and merged[name] != value:
                conflicts.append(
                    f"{name}: {owner[name]} has {merged[name]!r}, {function} has {value!r}"
                )
                continue
            merged.setdefault(name, value)
            owner.setdefault(name, function)
    if conflicts:
        raise EnvironmentConflict(
            "functions disagree on environment variables, which one local process cannot "
            "honour (give them distinct names in template.yaml): " + "; ".join(conflicts)
        )
    return merged


class LambdaContext:
    """The context object of the Python runtime (awslambdaric's LambdaContext), locally."""

    def __init__(self, spec: FunctionSpec, *, region: str, account_id: str) -> None:
        self.function_name = spec.function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:{account_id}:function:{spec.function_name}"
        )
        # The runtime reads this from AWS_LAMBDA_FUNCTION_MEMORY_SIZE: it is a string there.
        self.memory_limit_in_mb = str(spec.memory_mb)
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.function_name}"
        self.log_stream_name = time.strftime("%Y/%m/%d/[$LATEST]") + uuid.uuid4().hex
        self.identity = None
        self.client_context = None
        self.tenant_id = None
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@dataclass(frozen=True)
class Invocation:
    """One invocation's outcome: the handler's return value, or Lambda's error payload."""

    request_id: str
    payload: Any = None
    error: Mapping[str, Any] | None = None
    duration_ms: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None


class LocalFunction:
    """One function: its handler module, imported once, invoked one request at a time."""

    def __init__(self, spec: FunctionSpec, *, region: str, account_id: str) -> None:
        self.spec = spec
        self.region = region
        self.account_id = account_id
        self._lock = threading.Lock()
        self._handler: Callable[[Any, Any], Any] | None = None
        self._load_error: Mapping[str, Any] | None = None

    @property
    def logical_id(self) -> str:
        return self.spec.logical_id

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{self.region}:{self.account_id}:function:{self.spec.function_name}"

    @property
    def exists(self) -> bool:
        """Whether the handler's file is there (a function being written may not be yet)."""
        return self.spec.module_path.is_file()

    @property
    def load_error(self) -> Mapping[str, Any] | None:
        return self._load_error

    def load(self) -> bool:
        """Import the handler module (Lambda's init phase); False, with the error kept, if
        it fails. Invocations then fail with that error, as Lambda's would."""
        with self._lock:
            return self._load_locked()

    def _load_locked(self) -> bool:
        if self._handler is not None:
            return True
        spec = self.spec
        if str(spec.code_dir) not in sys.path:
            # The code directory is /var/task in Lambda: sibling modules import by name.
            sys.path.insert(0, str(spec.code_dir))
        try:
            module = _import_from_path(spec.module_name, spec.module_path)
            handler = getattr(module, spec.handler_attribute, None)
            if not callable(handler):
                raise AttributeError(
                    f"Handler '{spec.handler_attribute}' missing on module '{spec.module_name}'"
                )
        except Exception as exc:
            error_type = (
                "Runtime.HandlerNotFound"
                if isinstance(exc, AttributeError)
                else "Runtime.ImportModuleError"
            )
            self._load_error = _error_payload(exc, error_type=error_type)
            logger.error(
                "function %s failed to load: %s: %s", self.logical_id, type(exc).__name__, exc
            )
            return False
        self._handler = handler
        self._load_error = None
        return True

    def invoke(self, event: Any) -> Invocation:
        """Run the handler on `event` with a fresh context; never raises."""
        with self._lock:
            if self._handler is None and not self._load_locked():
                return Invocation(request_id=str(uuid.uuid4()), error=self._load_error)
            assert self._handler is not None
            context = LambdaContext(self.spec, region=self.region, account_id=self.account_id)
            started = time.monotonic()
            try:
                payload = self._handler(event, context)
            except Exception as exc:
                duration = (time.monotonic() - started) * 1000
                logger.error(
                    "function %s failed (request %s): %s: %s",
                    self.logical_id,
                    context.aws_request_id,
                    type(exc).__name__,
                    exc,
                    exc_info=True,
                )
                return Invocation(
                    context.aws_request_id, error=_error_payload(exc), duration_ms=duration
                )
            duration = (time.monotonic() - started) * 1000
        if duration > self.spec.timeout_seconds * 1000:
            # Lambda would have stopped the handler at its timeout; a thread cannot be
            # stopped, so the late result is discarded instead, and the caller sees what
            # Lambda's caller would.
            message = f"Task timed out after {self.spec.timeout_seconds:.2f} seconds"
            logger.error("function %s: %s", self.logical_id, message)
            return Invocation(
                context.aws_request_id,
                error={"errorType": "Sandbox.Timedout", "errorMessage": message},
                duration_ms=duration,
            )
        logger.debug("function %s answered in %.1f ms", self.logical_id, duration)
        return Invocation(context.aws_request_id, payload=payload, duration_ms=duration)


def _import_from_path(module_name: str, path: Path) -> ModuleType:
    existing = sys.modules.get(module_name)
    if existing is not None and Path(getattr(existing, "__file__", "") or "") == path:
        return existing
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    if module_spec is None or module_spec.loader is None:
        raise ImportError(f"Unable to import module '{module_name}': no file {path}")
    module = importlib.util.module_from_spec(module_spec)
    # Registered before running it, as a normal import does (dataclasses and pickling look
    # modules up by name); removed again if it fails, so a fixed file can be retried.
    sys.modules[module_name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(module_name, None)
        raise
    return module


def _error_payload(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    return {
        "errorType": error_type or type(exc).__name__,
        "errorMessage": str(exc),
        "stackTrace": traceback.format_exception(exc)[1:],
    }
