"""The Payments table's stream: payment changes from a record, and records read back by sequence.

Lambda's on-failure destination for a stream mapping receives where the failed records were
(shard and sequence numbers), not the records: `PaymentStreamReader` reads them back while
the stream still holds them (24 hours).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from functools import cache
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from coursepay.domain.payment import Payment
from coursepay.storage.errors import StorageError, TransientStorageError
from coursepay.storage.serialization import payment_from_item

type PaymentChange = tuple[Payment | None, Payment | None]  # (before, after)

# GetRecords may answer an open shard with no records a few times before it reaches them.
_MAX_EMPTY_READS = 5
_RECORDS_PER_READ = 100

_TRANSIENT_CODES = frozenset(
    {
        "LimitExceededException",
        "ThrottlingException",
        "InternalServerError",
        "ExpiredIteratorException",
        "RequestLimitExceeded",
    }
)
# The records are gone (older than the stream's 24 hours) or so is the stream: no retry helps.
_GONE_CODES = frozenset({"TrimmedDataAccessException", "ResourceNotFoundException"})

_CONFIG = Config(
    retries={"mode": "standard", "max_attempts": 3},
    connect_timeout=2,
    read_timeout=5,
    # The regional endpoint rather than the account-based one botocore derives from the
    # stream ARN: the same service, and the one emulators (moto) answer.
    account_id_endpoint_mode="disabled",
)


@cache
def _default_client() -> Any:
    return boto3.client("dynamodbstreams", config=_CONFIG)


class StreamRecordsUnavailable(StorageError):
    """The stream no longer holds these records: the payments must be reconciled another way."""


def payment_change(record: Mapping[str, Any]) -> PaymentChange:
    """The payment before and after a stream record (Lambda's shape, or GetRecords')."""
    change = record.get("dynamodb") or {}
    old, new = change.get("OldImage"), change.get("NewImage")
    return (
        payment_from_item(old) if old else None,
        payment_from_item(new) if new else None,
    )


def lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record in the shape Lambda delivers it (epoch seconds, eventSourceARN).

    Emulators return ApproximateCreationDateTime as a datetime and leave out the ARN.
    """
    shaped = dict(record)
    change = dict(shaped.get("dynamodb") or {})
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = created.timestamp()
    shaped["dynamodb"] = change
    shaped.setdefault("eventSourceARN", stream_arn)
    return shaped


class PaymentStreamReader:
    def __init__(self, client: Any = None) -> None:
        self._client = client

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = _default_client()
        return self._client

    def read(
        self, stream_arn: str, shard_id: str, first_sequence: str, last_sequence: str
    ) -> list[dict[str, Any]]:
        """The records of one shard from `first_sequence` to `last_sequence`, inclusive, in order.

        Raises StreamRecordsUnavailable when the stream has dropped them, TransientStorageError
        when reading can be tried again.
        """
        last = int(last_sequence)
        iterator = self._call(
            "get_shard_iterator",
            StreamArn=stream_arn,
            ShardId=shard_id,
            ShardIteratorType="AT_SEQUENCE_NUMBER",
            SequenceNumber=first_sequence,
        ).get("ShardIterator")
        records: list[dict[str, Any]] = []
        empty_reads = 0
        while iterator:
            if empty_reads >= _MAX_EMPTY_READS:
                # An open shard may answer empty pages before later records: the range is
                # not read to its end yet, so this is "try again", never a short answer.
                raise TransientStorageError(
                    f"records {first_sequence}..{last_sequence} of {shard_id} not reached yet"
                )
            response = self._call("get_records", ShardIterator=iterator, Limit=_RECORDS_PER_READ)
            batch = response.get("Records", [])
            empty_reads = 0 if batch else empty_reads + 1
            for record in batch:
                if int(record["dynamodb"]["SequenceNumber"]) > last:
                    return records
                records.append(lambda_record(record, stream_arn))
                if int(record["dynamodb"]["SequenceNumber"]) == last:
                    return records
            iterator = response.get("NextShardIterator")
        if not records:
            raise StreamRecordsUnavailable(
                f"no records {first_sequence}..{last_sequence} in {shard_id} of {stream_arn}"
            )
        return records

    def read_changes(
        self, stream_arn: str, shard_id: str, first_sequence: str, last_sequence: str
    ) -> list[PaymentChange]:
        """The same records as payment changes, (before, after), in stream order."""
        return [
            payment_change(record)
            for record in self.read(stream_arn, shard_id, first_sequence, last_sequence)
        ]

    def _call(self, operation: str, **params: Any) -> dict[str, Any]:
        try:
            response: dict[str, Any] = getattr(self.client, operation)(**params)
        except ClientError as err:
            code = err.response.get("Error", {}).get("Code", "")
            if code in _GONE_CODES:
                raise StreamRecordsUnavailable(f"DynamoDB Streams {code}: {err}") from err
            if code in _TRANSIENT_CODES:
                raise TransientStorageError(f"DynamoDB Streams {code}: {err}") from err
            raise StorageError(f"DynamoDB Streams {code}: {err}") from err
        except (BotoConnectionError, HTTPClientError) as err:
            raise TransientStorageError(f"DynamoDB Streams unreachable: {err}") from err
        return response
