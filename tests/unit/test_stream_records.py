"""Reading a failed range back from the Payments stream: all of it, or a retry, never a part."""

from __future__ import annotations

from typing import Any

import pytest

from coursepay.storage.errors import TransientStorageError
from coursepay.storage.stream_records import PaymentStreamReader

STREAM = "arn:aws:dynamodb:eu-west-1:123456789012:table/payments/stream/2024-06-13T11:00:00.000"


def a_record(sequence: int) -> dict[str, Any]:
    return {
        "eventID": f"e{sequence}",
        "eventName": "MODIFY",
        "dynamodb": {
            "Keys": {"payment_id": {"S": f"pay-{sequence}"}},
            "SequenceNumber": str(sequence),
        },
    }


class OpenShard:
    """GetRecords on an open shard: the given pages, then empty pages, always a next iterator."""

    def __init__(self, *pages: list[int]) -> None:
        self.pages = [[a_record(n) for n in page] for page in pages]

    def get_shard_iterator(self, **params: Any) -> dict[str, Any]:
        return {"ShardIterator": "it-0"}

    def get_records(self, ShardIterator: str, Limit: int) -> dict[str, Any]:  # noqa: N803
        page = int(ShardIterator.split("-")[1])
        records = self.pages[page] if page < len(self.pages) else []
        return {"Records": records, "NextShardIterator": f"it-{page + 1}"}


def test_a_range_read_to_its_last_record_is_returned_whole():
    reader = PaymentStreamReader(client=OpenShard([100, 101], [], [102, 103]))

    records = reader.read(STREAM, "shard-1", "100", "102")

    assert [r["dynamodb"]["SequenceNumber"] for r in records] == ["100", "101", "102"]


def test_a_range_whose_end_is_not_reached_is_a_retry_not_a_short_answer():
    reader = PaymentStreamReader(client=OpenShard([100]))

    with pytest.raises(TransientStorageError):
        reader.read(STREAM, "shard-1", "100", "102")
