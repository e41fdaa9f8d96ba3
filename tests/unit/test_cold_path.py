"""The webhook's cold start carries only what the webhook uses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# What other functions need and the webhook must not pay for at cold start.
NOT_ON_THE_WEBHOOK_PATH = (
    "aws_lambda_powertools.event_handler",  # HTTP resolver: about 0.27 s
    "aws_xray_sdk",  # the X-Ray SDK behind powertools' Tracer: about 0.6 s
    "aws_lambda_powertools.utilities.batch",
    "aws_lambda_powertools.utilities.idempotency",
    "requests",
    "jwt",
    "coursepay.api",
    "coursepay.pages",
    "coursepay.paymob.client",
    "coursepay.services.checkout",
    "coursepay.services.enrollment",
    "coursepay.services.reconcile",
    "coursepay.storage.catalog",
    "devstack",
)


def modules_loaded_by(handler_dir: str, module: str) -> set[str]:
    probe = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            [str(ROOT / handler_dir), str(ROOT / "layers" / "coursepay")]
        ),
        "AWS_DEFAULT_REGION": "eu-west-1",
    }
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    return set(json.loads(out.stdout))


def test_the_webhook_imports_nothing_only_other_functions_need():
    loaded = modules_loaded_by("functions/webhook", "handle_webhook")

    heavy = sorted(
        name
        for name in loaded
        if any(
            name == banned or name.startswith(banned + ".") for banned in NOT_ON_THE_WEBHOOK_PATH
        )
    )
    assert heavy == []
