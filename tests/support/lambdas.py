"""The template's functions for handler tests: real handler modules, real Lambda contexts."""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any

from devstack.lambdas import FunctionSpec, LambdaContext, LocalFunction, function_specs
from tests.support.aws import PARAMETERS, REGION, STAGE, stack_template
from tests.support.http import ACCOUNT_ID

ROOT = Path(__file__).resolve().parents[2]


@cache
def _specs() -> dict[str, FunctionSpec]:
    return function_specs(
        stack_template(), ROOT, stack_name=f"course-payments-{STAGE}", parameters=PARAMETERS
    )


class Function:
    """One function's handler, callable concurrently (as many warm containers would be)."""

    def __init__(self, logical_id: str) -> None:
        self.spec = _specs()[logical_id]
        local = LocalFunction(self.spec, region=REGION, account_id=ACCOUNT_ID)
        if not local.load():
            raise RuntimeError(f"{logical_id} failed to load: {local.load_error}")
        module = sys.modules[self.spec.module_name]
        self.handler: Callable[[Any, Any], Any] = getattr(module, self.spec.handler_attribute)

    def __call__(self, event: dict[str, Any]) -> Any:
        context = LambdaContext(self.spec, region=REGION, account_id=ACCOUNT_ID)
        return self.handler(event, context)
