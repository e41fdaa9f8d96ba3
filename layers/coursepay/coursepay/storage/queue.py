"""The retry queue (SQS): verified callbacks and failed enrolments wait here to be applied again."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

import boto3

from coursepay.storage.clients import CONFIG


@cache
def _default_client() -> Any:
    return boto3.client("sqs", config=CONFIG)


class SqsRetryQueue:
    def __init__(self, queue_url: str, client: Any = None) -> None:
        self.queue_url = queue_url
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _default_client()
        return self._client

    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> None:
        self.client.send_message(
            QueueUrl=self.queue_url,
            MessageBody=json.dumps(message, separators=(",", ":")),
            DelaySeconds=delay_seconds,
        )

    def delay_redelivery(self, receipt_handle: str, seconds: int) -> None:
        """Push a failed message's next delivery out (exponential backoff by receive count)."""
        self.client.change_message_visibility(
            QueueUrl=self.queue_url, ReceiptHandle=receipt_handle, VisibilityTimeout=seconds
        )
