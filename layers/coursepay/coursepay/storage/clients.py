"""The boto3 clients of a container: created once, on first use, and shared by every adapter."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Standard retry mode backs off on throttling; short timeouts leave a webhook call time to
# queue a retry instead of running into the Lambda timeout.
_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    tcp_keepalive=True,
)


@cache
def dynamodb_client() -> Any:
    """The container's DynamoDB client; boto3 itself honours AWS_ENDPOINT_URL (the emulator)."""
    return boto3.client("dynamodb", config=_CONFIG)
