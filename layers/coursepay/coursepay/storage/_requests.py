"""Runs DynamoDB requests and turns SDK errors into condition failures or typed storage errors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from coursepay.storage.errors import StorageError, TransientStorageError

# Error codes of a whole request that retrying can fix. TransactionConflictException is
# what a plain write gets when it touches an item an ongoing transaction holds.
TRANSIENT_ERROR_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "InternalServerError",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
    }
)

# Cancellation reasons of one transaction item that retrying can fix. Real DynamoDB cancels
# contended transactions with TransactionConflict; moto never does.
TRANSIENT_REASON_CODES = frozenset(
    {
        "TransactionConflict",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "RequestLimitExceeded",
        "InternalServerError",
    }
)

CONDITION_FAILED = "ConditionalCheckFailed"


class ConditionFailed(Exception):
    """A single-item write whose condition did not hold; `item` is the stored item, if asked."""

    def __init__(self, item: dict[str, Any] | None) -> None:
        super().__init__("conditional check failed")
        self.item = item


@dataclass(frozen=True, slots=True)
class CancellationReason:
    code: str
    item: dict[str, Any] | None = None

    @property
    def condition_failed(self) -> bool:
        return self.code == CONDITION_FAILED


class TransactionCanceled(Exception):
    """A transaction refused; `reasons` line up with the request's items, by position."""

    def __init__(self, reasons: list[CancellationReason]) -> None:
        super().__init__("transaction canceled: " + ", ".join(r.code for r in reasons))
        self.reasons = reasons

    def reason(self, position: int) -> CancellationReason:
        if position < len(self.reasons):
            return self.reasons[position]
        return CancellationReason("None")

    def as_storage_error(self) -> StorageError:
        """What to raise when no condition failure explains the cancellation."""
        codes = {r.code for r in self.reasons} - {"None"}
        if codes and codes <= TRANSIENT_REASON_CODES:
            return TransientStorageError(str(self))
        return StorageError(str(self))


def request(operation: Callable[..., Any], **params: Any) -> Any:
    """Call one client operation; raise ConditionFailed, TransactionCanceled or a storage error."""
    try:
        return operation(**params)
    except ClientError as err:
        code = err.response.get("Error", {}).get("Code", "")
        if code == "ConditionalCheckFailedException":
            raise ConditionFailed(err.response.get("Item")) from err
        if code == "TransactionCanceledException":
            reasons = [
                CancellationReason(str(r.get("Code") or "None"), r.get("Item"))
                for r in err.response.get("CancellationReasons", [])
            ]
            raise TransactionCanceled(reasons) from err
        if code in TRANSIENT_ERROR_CODES:
            raise TransientStorageError(f"DynamoDB {code}: {err}") from err
        raise StorageError(f"DynamoDB {code}: {err}") from err
    except (BotoConnectionError, HTTPClientError) as err:
        # Timeouts and dropped connections: the write may or may not have happened, which
        # the conditions make safe to find out by retrying.
        raise TransientStorageError(f"DynamoDB unreachable: {err}") from err


class Expression:
    """Placeholders for attribute names and values, so reserved words (status) never bite."""

    def __init__(self, serialize: Callable[[Any], dict[str, Any]]) -> None:
        self._serialize = serialize
        self.names: dict[str, str] = {}
        self.values: dict[str, dict[str, Any]] = {}

    def name(self, attribute: str) -> str:
        for placeholder, known in self.names.items():
            if known == attribute:
                return placeholder
        placeholder = f"#n{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, python_value: Any) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = self._serialize(python_value)
        return placeholder

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if self.names:
            params["ExpressionAttributeNames"] = self.names
        if self.values:
            params["ExpressionAttributeValues"] = self.values
        return params
