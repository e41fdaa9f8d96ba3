"""Event pumps: what Lambda's event source mappings and EventBridge schedules do, locally.

moto runs no function code without Docker (and its mappings with the stub Lambda swallow
SQS messages), so these threads read the emulator and invoke the handlers themselves, with
the event shapes and failure rules of the real services:

- StreamPump (DynamoDB stream -> function): polls GetRecords about every 200 ms, converts
  moto's records to Lambda's shape (ApproximateCreationDateTime as epoch seconds,
  eventSourceARN, awsRegion, eventVersion "1.1"), drops records the mapping's
  FilterCriteria reject, batches by BatchSize, and on a function error or
  batchItemFailures retries from the first failed record, bisecting when the mapping says
  so, up to MaximumRetryAttempts; then it sends Lambda's on-failure record
  (DDBStreamBatchInfo) to the destination queue and moves on. Records older than
  MaximumRecordAgeInSeconds go to the destination without an invocation.
- SqsPump (queue -> function): receives up to BatchSize messages, builds SQS event records
  (attributes.ApproximateReceiveCount included), and deletes only the messages that
  succeeded (per batchItemFailures when ReportBatchItemFailures is on). Failed messages
  come back after their visibility timeout, and the queue's redrive policy moves them to
  the DLQ after maxReceiveCount, as SQS itself does.
- SchedulePump (Schedule/ScheduleV2 -> function): a scheduled event every period (the
  template's rate, or DEV_SCHEDULE_SECONDS locally), and `run_now()` for one on demand.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Protocol

from devstack.filters import matches_any
from devstack.lambdas import Invocation

logger = logging.getLogger("devstack.pumps")

POLL_INTERVAL_SECONDS = 0.2
# A pump that has not finished a poll for this long is not answering.
STALE_AFTER_SECONDS = 10.0
# Longest wait between polls after failures (say, the emulator was reset under the pump).
MAX_BACKOFF_SECONDS = 5.0


class Invoker(Protocol):
    def invoke(self, event: Any) -> Invocation: ...

    @property
    def arn(self) -> str: ...


class Pump:
    """A daemon thread running `poll_once` until stopped; `healthy` once it has polled."""

    interval = POLL_INTERVAL_SECONDS

    def __init__(self, name: str) -> None:
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_poll: float | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"pump-{self.name}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.warning("pump %s did not stop within %.0f s", self.name, timeout)

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @property
    def healthy(self) -> bool:
        return (
            self._thread is not None
            and self._thread.is_alive()
            and self._last_poll is not None
            and time.monotonic() - self._last_poll < max(STALE_AFTER_SECONDS, 3 * self.interval)
        )

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                busy = self.poll_once()
            except Exception:
                # The emulator reset or restarting, a bug: log it, back off, keep pumping.
                failures += 1
                logger.exception("pump %s failed a poll (%d in a row)", self.name, failures)
                self.forget_position()
                self._stop.wait(min(MAX_BACKOFF_SECONDS, self.interval * 2**failures))
                continue
            failures = 0
            self._last_poll = time.monotonic()
            if not busy:
                self._stop.wait(self.interval)

    def forget_position(self) -> None:
        """After a failed poll: start over from what the emulator says now."""

    def poll_once(self) -> bool:
        """Do one round of work; True if there may be more right away."""
        return False


# --- DynamoDB stream ---------------------------------------------------------------------


def attribute_value_to_json(value: Mapping[str, Any]) -> dict[str, Any]:
    """A boto3 AttributeValue as the stream's JSON carries it (binary as base64 text)."""
    ((kind, content),) = value.items()
    if kind == "B":
        return {"B": base64.b64encode(content).decode("ascii")}
    if kind == "BS":
        return {"BS": [base64.b64encode(item).decode("ascii") for item in content]}
    if kind == "M":
        return {"M": {k: attribute_value_to_json(v) for k, v in content.items()}}
    if kind == "L":
        return {"L": [attribute_value_to_json(item) for item in content]}
    return {kind: content}


def _image_to_json(image: Mapping[str, Any]) -> dict[str, Any]:
    return {name: attribute_value_to_json(value) for name, value in image.items()}


def lambda_stream_record(
    record: Mapping[str, Any], *, stream_arn: str, region: str
) -> dict[str, Any]:
    """A GetRecords record (as boto3 parses moto's answer) in the shape Lambda delivers."""
    change = record["dynamodb"]
    converted_change: dict[str, Any] = {}
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        converted_change["ApproximateCreationDateTime"] = int(created.timestamp())
    elif created is not None:
        converted_change["ApproximateCreationDateTime"] = int(created)
    for key in ("Keys", "NewImage", "OldImage"):
        if key in change:
            converted_change[key] = _image_to_json(change[key])
    for key in ("SequenceNumber", "SizeBytes", "StreamViewType"):
        if key in change:
            converted_change[key] = change[key]
    converted: dict[str, Any] = {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        # moto answers us-east-1 whatever the table's region.
        "awsRegion": region,
        "dynamodb": converted_change,
        "eventSourceARN": stream_arn,
    }
    if "userIdentity" in record:
        converted["userIdentity"] = record["userIdentity"]
    return converted


class StreamPump(Pump):
    """One DynamoDB stream event source mapping."""

    def __init__(
        self,
        *,
        name: str,
        function: Invoker,
        stream_arn: str,
        region: str,
        streams_client: Any,
        batch_size: int = 100,
        starting_position: str = "TRIM_HORIZON",
        filters: Sequence[Mapping[str, Any]] = (),
        maximum_retry_attempts: int = -1,
        bisect_on_error: bool = False,
        maximum_record_age_seconds: int = -1,
        report_batch_item_failures: bool = False,
        on_failure: Callable[[dict[str, Any]], None] | None = None,
        retry_delay_seconds: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(name)
        self.function = function
        self.stream_arn = stream_arn
        self.region = region
        self._client = streams_client
        self.batch_size = batch_size
        self.starting_position = starting_position
        self.filters = list(filters)
        self.maximum_retry_attempts = maximum_retry_attempts
        self.bisect_on_error = bisect_on_error
        self.maximum_record_age_seconds = maximum_record_age_seconds
        self.report_batch_item_failures = report_batch_item_failures
        self.on_failure = on_failure
        self.retry_delay_seconds = retry_delay_seconds
        self._clock = clock
        self._iterators: dict[str, str | None] = {}
        # The last sequence number handled per shard, to resume after a failed poll.
        self._checkpoints: dict[str, str] = {}
        self.delivered = 0
        self.filtered_out = 0

    def poll_once(self) -> bool:
        # A fresh iterator from the checkpoint on every poll. moto swaps in a copy of the
        # table when it cancels a transaction; an iterator opened before then reads the
        # discarded copy: the cancelled write as a phantom record, then nothing new, ever.
        # (Lambda's poller has no such problem with DynamoDB; this costs one request a poll.)
        self.forget_position()
        self._open_shards()
        busy = False
        for shard_id in list(self._iterators):
            iterator = self._iterators[shard_id]
            if iterator is None:
                continue  # a closed shard, read to its end
            response = self._client.get_records(ShardIterator=iterator, Limit=1000)
            self._iterators[shard_id] = response.get("NextShardIterator")
            records = [
                lambda_stream_record(r, stream_arn=self.stream_arn, region=self.region)
                for r in response.get("Records", [])
            ]
            if records:
                busy = True
                self._deliver(shard_id, records)
                if not self.stopping:
                    self._checkpoints[shard_id] = records[-1]["dynamodb"]["SequenceNumber"]
        return busy and not self.stopping

    def forget_position(self) -> None:
        # Iterators may have expired, or the emulator was reset: describe the stream again
        # and resume after the last record handled (a new shard starts at the beginning).
        self._iterators.clear()

    def _open_shards(self) -> None:
        description = self._client.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]
        for shard in description.get("Shards", []):
            shard_id = shard["ShardId"]
            position: dict[str, str] = {"ShardIteratorType": self.starting_position}
            if shard_id in self._checkpoints:
                position = {
                    "ShardIteratorType": "AFTER_SEQUENCE_NUMBER",
                    "SequenceNumber": self._checkpoints[shard_id],
                }
            self._iterators[shard_id] = self._client.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard_id, **position
            )["ShardIterator"]

    def _deliver(self, shard_id: str, records: list[dict[str, Any]]) -> None:
        # Filtering happens before batching; a record no filter takes is simply consumed.
        wanted = [record for record in records if matches_any(self.filters, record)]
        self.filtered_out += len(records) - len(wanted)
        expired, fresh = self._split_by_age(wanted)
        if expired:
            self._send_to_destination(shard_id, expired, "RecordAgeExceeded", None, 0)
        for start in range(0, len(fresh), self.batch_size):
            if self.stopping:
                return
            self._process(shard_id, fresh[start : start + self.batch_size], attempt=0)

    def _split_by_age(
        self, records: list[dict[str, Any]]
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if self.maximum_record_age_seconds < 0:
            return [], records
        cutoff = self._clock() - self.maximum_record_age_seconds
        expired = [r for r in records if _created(r) < cutoff]
        return expired, [r for r in records if _created(r) >= cutoff]

    def _process(self, shard_id: str, batch: list[dict[str, Any]], attempt: int) -> None:
        """Invoke with `batch`, retrying its failed tail until it succeeds or runs out."""
        while batch and not self.stopping:
            invocation = self.function.invoke({"Records": batch})
            failed_from = self._first_failure(batch, invocation)
            if failed_from is None:
                self.delivered += len(batch)
                return
            self.delivered += failed_from
            batch = batch[failed_from:]
            if self.maximum_retry_attempts >= 0 and attempt >= self.maximum_retry_attempts:
                self._send_to_destination(
                    shard_id, batch, "RetryAttemptsExhausted", invocation, attempt + 1
                )
                return
            attempt += 1
            self._stop.wait(self.retry_delay_seconds)
            if self.bisect_on_error and len(batch) > 1:
                middle = len(batch) // 2
                self._process(shard_id, batch[:middle], attempt)
                self._process(shard_id, batch[middle:], attempt)
                return

    def _first_failure(self, batch: list[dict[str, Any]], invocation: Invocation) -> int | None:
        """Index of the first record to retry, or None when the whole batch succeeded."""
        if not invocation.ok:
            return 0
        if not self.report_batch_item_failures:
            return None
        payload = invocation.payload
        failures = payload.get("batchItemFailures") if isinstance(payload, Mapping) else None
        if not failures:
            return None
        positions = {r["dynamodb"]["SequenceNumber"]: i for i, r in enumerate(batch)}
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
            if identifier not in positions:
                # Lambda treats an unusable identifier as a failure of the whole batch.
                logger.warning("%s: batchItemFailures names %r", self.name, identifier)
                return 0
            indexes.append(positions[identifier])
        # Lambda checkpoints before the lowest failed sequence number.
        return min(indexes)

    def _send_to_destination(
        self,
        shard_id: str,
        records: list[dict[str, Any]],
        condition: str,
        invocation: Invocation | None,
        invoke_count: int,
    ) -> None:
        message = ddb_stream_batch_info(
            records,
            shard_id=shard_id,
            stream_arn=self.stream_arn,
            function_arn=self.function.arn,
            condition=condition,
            invocation=invocation,
            invoke_count=invoke_count,
        )
        logger.warning(
            "%s: %d records failed (%s), to the on-failure destination: %s",
            self.name,
            len(records),
            condition,
            "yes" if self.on_failure else "none configured, dropped",
        )
        if self.on_failure is not None:
            self.on_failure(message)


def _created(record: Mapping[str, Any]) -> float:
    return float(record["dynamodb"].get("ApproximateCreationDateTime", 0))


def _iso_seconds(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def ddb_stream_batch_info(
    records: Sequence[Mapping[str, Any]],
    *,
    shard_id: str,
    stream_arn: str,
    function_arn: str,
    condition: str,
    invocation: Invocation | None,
    invoke_count: int,
) -> dict[str, Any]:
    """Lambda's on-failure invocation record for a stream batch: where, not what."""
    response_context: dict[str, Any] = {"statusCode": 200, "executedVersion": "$LATEST"}
    if invocation is not None and not invocation.ok:
        response_context["functionError"] = "Unhandled"
    return {
        "requestContext": {
            "requestId": invocation.request_id if invocation else str(uuid.uuid4()),
            "functionArn": function_arn,
            "condition": condition,
            "approximateInvokeCount": invoke_count,
        },
        "responseContext": response_context,
        "version": "1.0",
        "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "DDBStreamBatchInfo": {
            "shardId": shard_id,
            "startSequenceNumber": records[0]["dynamodb"]["SequenceNumber"],
            "endSequenceNumber": records[-1]["dynamodb"]["SequenceNumber"],
            "approximateArrivalOfFirstRecord": _iso_seconds(_created(records[0])),
            "approximateArrivalOfLastRecord": _iso_seconds(_created(records[-1])),
            "batchSize": len(records),
            "streamArn": stream_arn,
        },
    }


def sqs_destination(sqs_client: Any, queue_url: str) -> Callable[[dict[str, Any]], None]:
    """An on-failure destination that sends the invocation record to an SQS queue."""

    def send(message: dict[str, Any]) -> None:
        sqs_client.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))

    return send


# --- SQS ---------------------------------------------------------------------------------


def _message_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    converted: dict[str, Any] = {}
    for name, attribute in attributes.items():
        value: dict[str, Any] = {
            "stringListValues": [],
            "binaryListValues": [],
            "dataType": attribute["DataType"],
        }
        if "StringValue" in attribute:
            value["stringValue"] = attribute["StringValue"]
        if "BinaryValue" in attribute:
            value["binaryValue"] = base64.b64encode(attribute["BinaryValue"]).decode("ascii")
        converted[name] = value
    return converted


def lambda_sqs_record(message: Mapping[str, Any], *, queue_arn: str, region: str) -> dict[str, Any]:
    """A ReceiveMessage message in the shape Lambda delivers it."""
    record: dict[str, Any] = {
        "messageId": message["MessageId"],
        "receiptHandle": message["ReceiptHandle"],
        "body": message["Body"],
        "attributes": dict(message.get("Attributes", {})),
        "messageAttributes": _message_attributes(message.get("MessageAttributes", {})),
        "md5OfBody": message["MD5OfBody"],
        "eventSource": "aws:sqs",
        "eventSourceARN": queue_arn,
        "awsRegion": region,
    }
    if "MD5OfMessageAttributes" in message:
        record["md5OfMessageAttributes"] = message["MD5OfMessageAttributes"]
    return record


class SqsPump(Pump):
    """One SQS event source mapping."""

    def __init__(
        self,
        *,
        name: str,
        function: Invoker,
        queue_url: str,
        queue_arn: str,
        region: str,
        sqs_client: Any,
        batch_size: int = 10,
        report_batch_item_failures: bool = False,
    ) -> None:
        super().__init__(name)
        self.function = function
        self.queue_url = queue_url
        self.queue_arn = queue_arn
        self.region = region
        self._client = sqs_client
        self.batch_size = batch_size
        self.report_batch_item_failures = report_batch_item_failures
        self.succeeded = 0
        self.failed = 0

    def poll_once(self) -> bool:
        messages: list[dict[str, Any]] = []
        while len(messages) < self.batch_size:
            response = self._client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=min(10, self.batch_size - len(messages)),
                MessageSystemAttributeNames=["All"],
                MessageAttributeNames=["All"],
                WaitTimeSeconds=0,
            )
            received = response.get("Messages", [])
            messages.extend(received)
            if not received:
                break
        if not messages:
            return False
        records = [
            lambda_sqs_record(m, queue_arn=self.queue_arn, region=self.region) for m in messages
        ]
        invocation = self.function.invoke({"Records": records})
        failed = self._failed_ids(records, invocation)
        done = [r for r in records if r["messageId"] not in failed]
        self.failed += len(failed)
        self.succeeded += len(done)
        if done:
            entries = [
                {"Id": str(i), "ReceiptHandle": r["receiptHandle"]} for i, r in enumerate(done)
            ]
            response = self._client.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
            for failure in response.get("Failed", []):
                logger.warning("%s: could not delete a message: %s", self.name, failure)
        return True

    def _failed_ids(self, records: list[dict[str, Any]], invocation: Invocation) -> set[str]:
        everything = {r["messageId"] for r in records}
        if not invocation.ok:
            return everything
        if not self.report_batch_item_failures:
            return set()
        payload = invocation.payload
        failures = payload.get("batchItemFailures") if isinstance(payload, Mapping) else None
        if not failures:
            return set()
        failed: set[str] = set()
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
            if identifier not in everything:
                # Lambda treats an unusable identifier as a failure of the whole batch.
                logger.warning("%s: batchItemFailures names %r", self.name, identifier)
                return everything
            failed.add(str(identifier))
        return failed


# --- schedules ---------------------------------------------------------------------------

_RATE = re.compile(r"^rate\((\d+)\s+(minute|minutes|hour|hours|day|days)\)$")
_UNIT_SECONDS = {"minute": 60, "hour": 3600, "day": 86400}


def rate_seconds(expression: str) -> int | None:
    """The period of `rate(N unit)` in seconds; None for cron() and anything else."""
    match = _RATE.match(expression.strip())
    if match is None:
        return None
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2).rstrip("s")]


def scheduled_event(*, rule_arn: str, region: str, account_id: str) -> dict[str, Any]:
    """The event EventBridge sends a rule's Lambda target on schedule."""
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": account_id,
        "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "region": region,
        "resources": [rule_arn],
        "detail": {},
    }


class SchedulePump(Pump):
    """One Schedule/ScheduleV2 event: runs every `period_seconds`, or on demand."""

    def __init__(
        self,
        *,
        name: str,
        function: Invoker,
        period_seconds: float | None,
        event_factory: Callable[[], Any],
    ) -> None:
        super().__init__(name)
        self.function = function
        self.period_seconds = period_seconds
        self._event_factory = event_factory
        # The first run comes one period after start, as a new rate rule's does.
        self._next_run = None if period_seconds is None else time.monotonic() + period_seconds
        self.runs = 0

    def poll_once(self) -> bool:
        if self._next_run is not None and time.monotonic() >= self._next_run:
            assert self.period_seconds is not None
            self._next_run = time.monotonic() + self.period_seconds
            self.run_now()
        return False

    def run_now(self) -> Invocation:
        """Invoke the function with a scheduled event now (the control endpoint's trigger)."""
        self.runs += 1
        invocation = self.function.invoke(self._event_factory())
        if not invocation.ok:
            logger.warning("%s: the scheduled run failed: %s", self.name, invocation.error)
        return invocation
