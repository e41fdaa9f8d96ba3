"""The domain event bus (EventBridge): publishes the services' events, up to ten a request."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import cache
from typing import Any, Protocol

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from coursepay.storage.errors import StorageError, TransientStorageError

SOURCE = "course-payments"
MAX_ENTRIES_PER_REQUEST = 10  # PutEvents' limit

# Error codes of a whole PutEvents request, or of one entry, that a later attempt can fix.
_TRANSIENT_CODES = frozenset(
    {
        "ThrottlingException",
        "InternalException",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
    }
)

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    tcp_keepalive=True,
)


@cache
def _default_client() -> Any:
    return boto3.client("events", config=_CONFIG)


class BusEvent(Protocol):
    """What the bus needs of an event: its type (EventBridge DetailType) and its detail."""

    @property
    def detail_type(self) -> str: ...

    @property
    def detail(self) -> Mapping[str, Any]: ...


class EventPublishFailed(TransientStorageError):
    """EventBridge refused some entries; `failed` names them (detail type, error code)."""

    def __init__(self, failed: list[tuple[str, str]]) -> None:
        summary = ", ".join(f"{detail_type}: {code}" for detail_type, code in failed)
        super().__init__(f"{len(failed)} domain event(s) not published ({summary})")
        self.failed = failed


class EventBridgePublisher:
    """Puts events on one bus, Source "course-payments", DetailType the event's name.

    One PutEvents request per ten events. Entries EventBridge refuses are not retried here:
    the caller's retry re-publishes the whole set, which consumers see as a repeat of the
    same `detail.event_id` (delivery is at least once).
    """

    def __init__(self, bus_name: str, client: Any = None, source: str = SOURCE) -> None:
        self.bus_name = bus_name
        self.source = source
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _default_client()
        return self._client

    def publish(self, events: Sequence[BusEvent]) -> None:
        """Publish `events` in order; raises EventPublishFailed or a storage error."""
        failed: list[tuple[str, str]] = []
        for start in range(0, len(events), MAX_ENTRIES_PER_REQUEST):
            batch = events[start : start + MAX_ENTRIES_PER_REQUEST]
            failed.extend(self._put(batch))
        if failed:
            raise EventPublishFailed(failed)

    def entry(self, event: BusEvent) -> dict[str, Any]:
        return {
            "EventBusName": self.bus_name,
            "Source": self.source,
            "DetailType": event.detail_type,
            "Detail": json.dumps(event.detail, separators=(",", ":"), sort_keys=True),
        }

    def _put(self, batch: Sequence[BusEvent]) -> list[tuple[str, str]]:
        try:
            response = self.client.put_events(Entries=[self.entry(e) for e in batch])
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in _TRANSIENT_CODES:
                raise TransientStorageError(f"EventBridge {code}: {err}") from err
            raise StorageError(f"EventBridge {code}: {err}") from err
        except (BotoConnectionError, HTTPClientError) as err:
            raise TransientStorageError(f"EventBridge unreachable: {err}") from err
        if not response.get("FailedEntryCount"):
            return []
        # Results line up with the request's entries; a failed one has an ErrorCode.
        return [
            (event.detail_type, str(result.get("ErrorCode")))
            for event, result in zip(batch, response.get("Entries", []), strict=False)
            if result.get("ErrorCode")
        ]
