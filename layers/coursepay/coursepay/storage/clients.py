"""The boto3 clients of a container: created once, on first use, and shared by every adapter."""

from __future__ import annotations

from functools import cache
from typing import Any

import boto3
from botocore.config import Config

# Short timeouts and one retry: DynamoDB answers in milliseconds, so a call that takes
# seconds is a brown-out, and the webhook is better off queueing the callback for the retry
# function (and answering PayMob) than waiting out its Lambda timeout. Worst case per call:
# two attempts of 1 s connect + 2 s read, plus the standard mode's backoff.
CONFIG = Config(
    retries={"mode": "standard", "total_max_attempts": 2},
    connect_timeout=1,
    read_timeout=2,
    tcp_keepalive=True,
)


@cache
def dynamodb_client() -> Any:
    """The container's DynamoDB client; boto3 itself honours AWS_ENDPOINT_URL (the emulator)."""
    return boto3.client("dynamodb", config=CONFIG)
