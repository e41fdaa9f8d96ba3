"""Logger and metrics, created once per container: structured JSON logs and EMF metrics.

No Tracer: the X-Ray SDK costs about 0.6 s of cold start; Lambda's active tracing still
records each invocation without it.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "course-payments")
NAMESPACE = os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "CoursePayments")

# An invocation that counted nothing (a status read, say) is normal here, not a warning.
warnings.filterwarnings("ignore", message="No application metrics to publish")

logger = Logger(service=SERVICE)
metrics = Metrics(namespace=NAMESPACE, service=SERVICE)


def count(name: str, value: int = 1) -> None:
    """Add to a counter metric; EMF metrics leave in the log line, never as an AWS request."""
    metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)


def security_event(event: str, **details: Any) -> None:
    """Log a security incident in one recognisable shape and count it, for alarms."""
    logger.warning("security event", security_event=event, **details)
    count("SecurityEvent")
    count(f"SecurityEvent.{event}")
