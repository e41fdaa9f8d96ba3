"""Payments and their event history in DynamoDB: conditional, single-request writes only."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from coursepay.domain.payment import Payment, PaymentStatus
from coursepay.domain.records import PaymentEvent
from coursepay.domain.state_machine import Decision
from coursepay.storage._requests import (
    ConditionFailed,
    Expression,
    TransactionCanceled,
    request,
)
from coursepay.storage.clients import dynamodb_client
from coursepay.storage.errors import (
    AmbiguousPaymobOrder,
    DuplicateEvent,
    InvalidCursor,
    PaymentAlreadyExists,
    StalePayment,
    StorageError,
    TransactionClaimedElsewhere,
    TransientStorageError,
)
from coursepay.storage.pagination import Page, decode_cursor, encode_cursor
from coursepay.storage.serialization import (
    ORPHAN_BUCKET,
    STATUS_SHARDS,
    Item,
    attribute_value,
    event_from_item,
    event_to_item,
    from_item,
    payment_attributes,
    payment_from_item,
    payment_to_item,
)

BY_STUDENT = "by-student"
BY_STATUS = "by-status"
BY_PAYMOB_ORDER = "by-paymob-order"
ORPHANS = "orphans"

# A PayMob transaction id settles at most one payment: a claim item in the events table,
# written in the same transaction as the payment it settles.
CLAIM_PREFIX = "TXN#"
CLAIM_KEY = "CLAIM"

_DONE = "done"  # a status shard a cursor has read to its end


class PaymentRepository:
    """The Payments table and the PaymentWebhooks table (events, audits, transaction claims)."""

    def __init__(self, payments_table: str, events_table: str, client: Any = None) -> None:
        self._payments = payments_table
        self._events = events_table
        self._client = client if client is not None else dynamodb_client()

    # --- payments -------------------------------------------------------------------

    def create(self, payment: Payment) -> None:
        try:
            request(
                self._client.put_item,
                TableName=self._payments,
                Item=payment_to_item(payment),
                ConditionExpression="attribute_not_exists(payment_id)",
            )
        except ConditionFailed:
            raise PaymentAlreadyExists(payment.payment_id) from None

    def get(self, payment_id: str, consistent: bool = True) -> Payment | None:
        response = request(
            self._client.get_item,
            TableName=self._payments,
            Key={"payment_id": {"S": payment_id}},
            ConsistentRead=consistent,
        )
        item = response.get("Item")
        return payment_from_item(item) if item else None

    def find_by_paymob_order(self, order_id: str) -> Payment | None:
        """The payment of a (signed) PayMob order id, read from the index in one request.

        The index is eventually consistent; a stale copy is harmless because every write
        is conditioned on the version it was decided from.
        """
        response = request(
            self._client.query,
            TableName=self._payments,
            IndexName=BY_PAYMOB_ORDER,
            KeyConditionExpression="paymob_order_id = :order",
            ExpressionAttributeValues={":order": {"S": order_id}},
            Limit=2,
        )
        items = response.get("Items", [])
        if len(items) > 1:
            raise AmbiguousPaymobOrder(order_id)
        if items and "student_id" not in items[0]:
            raise StorageError(f"index {BY_PAYMOB_ORDER} must project ALL attributes, not keys")
        return payment_from_item(items[0]) if items else None

    def save(
        self,
        decision: Decision,
        event: PaymentEvent | None = None,
        claim_transaction_id: str | None = None,
    ) -> None:
        """Persist a decision and the event that caused it, in one request.

        A change is one transaction: the event (deduplicated by its key), the claim of the
        PayMob transaction id, and the payment update conditioned on the version decided
        from. A no-op records only the event. The claim only matters when the payment
        changes, so it is ignored for a no-op.
        Raises DuplicateEvent, StalePayment, TransactionClaimedElsewhere or
        TransientStorageError, checked in that order when several conditions fail.
        """
        if not decision.changed:
            if event is not None:
                self._put_event(event)
            return
        before, after = decision.before, decision.after
        if before.payment_id != after.payment_id:
            raise ValueError("a decision cannot change a payment's id")
        items: list[dict[str, Any]] = []
        event_at = claim_at = None
        if event is not None:
            event_at = len(items)
            items.append({"Put": self._event_put(event)})
        if claim_transaction_id is not None:
            claim_at = len(items)
            items.append({"Put": self._claim_put(claim_transaction_id, after)})
        payment_at = len(items)
        items.append({"Update": self._payment_update(before, after)})
        try:
            request(self._client.transact_write_items, TransactItems=items)
        except TransactionCanceled as canceled:
            if event is not None and event_at is not None:
                reason = canceled.reason(event_at)
                if reason.condition_failed:
                    existing = event_from_item(reason.item) if reason.item else None
                    raise DuplicateEvent(event.partition, event.event_key, existing) from None
            reason = canceled.reason(payment_at)
            if reason.condition_failed:
                current = payment_from_item(reason.item) if reason.item else None
                raise StalePayment(before.payment_id, before.version, current) from None
            if claim_transaction_id is not None and claim_at is not None:
                reason = canceled.reason(claim_at)
                if reason.condition_failed:
                    claimed_by = from_item(reason.item).get("claimed_by") if reason.item else None
                    raise TransactionClaimedElsewhere(
                        claim_transaction_id, before.payment_id, claimed_by
                    ) from None
            raise canceled.as_storage_error() from canceled

    def transaction_claimant(self, transaction_id: str) -> str | None:
        """The payment a PayMob transaction id settles, if any."""
        response = request(
            self._client.get_item,
            TableName=self._events,
            Key=_claim_key(transaction_id),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return str(from_item(item)["claimed_by"]) if item else None

    # --- events ---------------------------------------------------------------------

    # --- one open checkout per student and course --------------------------------------

    def claim_open_checkout(
        self,
        student_id: str,
        course_id: str,
        payment_id: str,
        open_until: str,
        now: str,
        *,
        replacing: str | None = None,
    ) -> str | None:
        """Make `payment_id` the student's one open checkout of the course.

        One conditional write, so of two simultaneous checkouts exactly one opens a PayMob
        page. Succeeds (None) where no checkout is open, the open one has lapsed, or it is
        `replacing` (a payment the caller saw settle); otherwise answers the payment that
        holds the claim.
        """
        key = {
            "payment_id": {"S": f"CHECKOUT#{student_id}#{course_id}"},
            "event_key": {"S": "OPEN"},
        }
        condition = "attribute_not_exists(event_key) OR open_until < :now"
        values: dict[str, Any] = {":now": {"S": now}}
        if replacing is not None:
            condition += " OR holder = :replacing"
            values[":replacing"] = {"S": replacing}
        try:
            request(
                self._client.put_item,
                TableName=self._events,
                Item={**key, "holder": {"S": payment_id}, "open_until": {"S": open_until}},
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
            )
        except ConditionFailed:
            held = request(
                self._client.get_item, TableName=self._events, Key=key, ConsistentRead=True
            )
            holder = held.get("Item", {}).get("holder", {}).get("S")
            if not holder:
                raise TransientStorageError("the open checkout changed while it was read") from None
            return str(holder)
        return None

    # --- Idempotency-Keys answered with a payment the key did not create ----------------

    def bind_idempotency_key(self, keyed_id: str, payment_id: str) -> str:
        """Bind a key (by its derived payment id) to the payment that answered it; the first
        binding wins, and is what this returns."""
        key = self._binding_key(keyed_id)
        try:
            request(
                self._client.put_item,
                TableName=self._events,
                Item={**key, "holder": {"S": payment_id}},
                ConditionExpression="attribute_not_exists(event_key)",
            )
        except ConditionFailed:
            bound = self.idempotency_binding(keyed_id)
            if bound is None:
                raise TransientStorageError("the key's binding changed while it was read") from None
            return bound
        return payment_id

    def idempotency_binding(self, keyed_id: str) -> str | None:
        held = request(
            self._client.get_item,
            TableName=self._events,
            Key=self._binding_key(keyed_id),
            ConsistentRead=True,
        )
        holder = held.get("Item", {}).get("holder", {}).get("S")
        return str(holder) if holder else None

    @staticmethod
    def _binding_key(keyed_id: str) -> dict[str, Any]:
        return {"payment_id": {"S": f"IDEMPOTENCY#{keyed_id}"}, "event_key": {"S": "BOUND"}}

    def record_event(self, event: PaymentEvent) -> bool:
        """Record an orphan, token, audit or other event; False if it was already recorded."""
        try:
            self._put_event(event)
        except DuplicateEvent:
            return False
        return True

    def events_for(self, partition: str) -> list[PaymentEvent]:
        """A payment's whole history (or an orphan partition's), oldest first."""
        events: list[PaymentEvent] = []
        params: dict[str, Any] = {
            "TableName": self._events,
            "KeyConditionExpression": "payment_id = :partition",
            "ExpressionAttributeValues": {":partition": {"S": partition}},
            "ConsistentRead": True,
        }
        while True:
            response = request(self._client.query, **params)
            events.extend(event_from_item(item) for item in response.get("Items", []))
            if "LastEvaluatedKey" not in response:
                break
            params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
        return sorted(events, key=lambda e: (e.received_at, e.event_key))

    def orphans_for_order(self, order_id: str) -> list[PaymentEvent]:
        """Callbacks kept for a PayMob order before its payment was known."""
        return self.events_for(f"ORPHAN#{order_id}")

    def list_orphans(self, *, limit: int = 50, cursor: str | None = None) -> Page[PaymentEvent]:
        """Every orphan callback, newest first (the sparse `orphans` index)."""
        listing, scope = "orphans", dict[str, Any]()
        start = decode_cursor(cursor, listing=listing, scope=scope).get("key") if cursor else None
        items, next_key = _query_page(
            self._client,
            {
                "TableName": self._events,
                "IndexName": ORPHANS,
                "KeyConditionExpression": "orphan_bucket = :bucket",
                "ExpressionAttributeValues": {":bucket": {"S": ORPHAN_BUCKET}},
                "ScanIndexForward": False,
            },
            limit=limit,
            start_key=start,
            key_names=("orphan_bucket", "received_at", "payment_id", "event_key"),
            partition=("orphan_bucket", ORPHAN_BUCKET),
        )
        return Page(
            [event_from_item(item) for item in items],
            _cursor(listing, scope, next_key),
        )

    # --- listings -------------------------------------------------------------------

    def list_by_student(
        self,
        student_id: str,
        *,
        limit: int = 20,
        cursor: str | None = None,
        newest_first: bool = True,
        status: PaymentStatus | None = None,
    ) -> Page[Payment]:
        """A student's payments by creation time, optionally of one status."""
        listing = "by-student"
        scope = {
            "student_id": student_id,
            "newest_first": newest_first,
            "status": None if status is None else str(status),
        }
        start = decode_cursor(cursor, listing=listing, scope=scope).get("key") if cursor else None
        expression = Expression(attribute_value)
        params: dict[str, Any] = {
            "TableName": self._payments,
            "IndexName": BY_STUDENT,
            "KeyConditionExpression": f"{expression.name('student_id')} = "
            f"{expression.value(student_id)}",
            "ScanIndexForward": not newest_first,
        }
        if status is not None:
            params["FilterExpression"] = (
                f"{expression.name('status')} = {expression.value(str(status))}"
            )
        params.update(expression.params())
        items, next_key = _query_page(
            self._client,
            params,
            limit=limit,
            start_key=start,
            key_names=("student_id", "created_at", "payment_id"),
            partition=("student_id", student_id),
        )
        return Page([payment_from_item(item) for item in items], _cursor(listing, scope, next_key))

    def list_by_status(
        self,
        status: PaymentStatus,
        *,
        updated_before: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[Payment]:
        """Payments of one status, most recently updated first, across the 16 index shards.

        Each shard is queried for up to `limit` items and the results merged by
        `updated_at`; the cursor keeps a position per shard, so every payment is listed
        exactly once across pages (as long as it keeps its status and `updated_at`).
        """
        if limit < 1:
            raise ValueError("limit must be positive")
        listing = "by-status"
        scope = {"status": str(status), "updated_before": updated_before}
        positions = (
            decode_cursor(cursor, listing=listing, scope=scope).get("shards") if cursor else {}
        )
        if not isinstance(positions, dict):
            raise InvalidCursor("the cursor does not hold shard positions")
        shards = [n for n in range(STATUS_SHARDS) if positions.get(str(n)) != _DONE]
        with ThreadPoolExecutor(max_workers=len(shards) or 1) as pool:
            fetched = dict(
                zip(
                    shards,
                    pool.map(
                        lambda n: self._status_shard_page(
                            status, n, updated_before, limit, positions.get(str(n))
                        ),
                        shards,
                    ),
                    strict=True,
                )
            )
        buffers = {n: deque(items) for n, (items, _) in fetched.items()}
        more = {n: next_key is not None for n, (_, next_key) in fetched.items()}
        taken: dict[int, Item] = {}
        page: list[Item] = []
        while len(page) < limit:
            # A shard read to the end of its batch with more behind it could hold something
            # newer than every head: stop here and let the next page continue from it.
            if any(more[n] and not buffers[n] for n in shards):
                break
            heads = [n for n in shards if buffers[n]]
            if not heads:
                break
            # Only ever take a shard's head, so each shard is consumed in its own order
            # (ties on updated_at included) and its position stays exact.
            n = max(heads, key=lambda shard: _recency(buffers[shard][0]))
            taken[n] = buffers[n].popleft()
            page.append(taken[n])
        next_positions = {k: v for k, v in positions.items() if v == _DONE}
        for n in shards:
            if not buffers[n] and not more[n]:
                next_positions[str(n)] = _DONE
            elif n in taken:
                next_positions[str(n)] = _key_of(taken[n], _STATUS_KEY)
            elif positions.get(str(n)) is not None:
                next_positions[str(n)] = positions[str(n)]
        next_cursor = (
            None
            if all(next_positions.get(str(n)) == _DONE for n in range(STATUS_SHARDS))
            else encode_cursor({"listing": listing, "scope": scope, "shards": next_positions})
        )
        return Page([payment_from_item(item) for item in page], next_cursor)

    # --- request builders -----------------------------------------------------------

    def _status_shard_page(
        self,
        status: PaymentStatus,
        shard: int,
        updated_before: str | None,
        limit: int,
        start_key: dict[str, Any] | None,
    ) -> tuple[list[Item], dict[str, Any] | None]:
        condition = "status_shard = :shard"
        values: dict[str, Any] = {":shard": {"S": f"{status}#{shard}"}}
        if updated_before is not None:
            condition += " AND updated_at < :before"
            values[":before"] = {"S": updated_before}
        return _query_page(
            self._client,
            {
                "TableName": self._payments,
                "IndexName": BY_STATUS,
                "KeyConditionExpression": condition,
                "ExpressionAttributeValues": values,
                "ScanIndexForward": False,
            },
            limit=limit,
            start_key=start_key,
            key_names=_STATUS_KEY,
            partition=("status_shard", f"{status}#{shard}"),
        )

    def _put_event(self, event: PaymentEvent) -> None:
        try:
            request(self._client.put_item, **self._event_put(event))
        except ConditionFailed as failed:
            existing = event_from_item(failed.item) if failed.item else None
            raise DuplicateEvent(event.partition, event.event_key, existing) from None

    def _event_put(self, event: PaymentEvent) -> dict[str, Any]:
        return {
            "TableName": self._events,
            "Item": event_to_item(event),
            "ConditionExpression": "attribute_not_exists(event_key)",
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _claim_put(self, transaction_id: str, payment: Payment) -> dict[str, Any]:
        return {
            "TableName": self._events,
            "Item": {
                **_claim_key(transaction_id),
                "claimed_by": {"S": payment.payment_id},
                "claimed_at": {"S": payment.updated_at},
            },
            # Re-claiming for the same payment (a retried request) is allowed.
            "ConditionExpression": "attribute_not_exists(event_key) OR claimed_by = :payment",
            "ExpressionAttributeValues": {":payment": {"S": payment.payment_id}},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }

    def _payment_update(self, before: Payment, after: Payment) -> dict[str, Any]:
        """SET what changed and REMOVE what became empty, if the stored version is `before`'s."""
        old, new = payment_attributes(before), payment_attributes(after)
        expression = Expression(attribute_value)
        assignments = [
            f"{expression.name(name)} = {expression.value(value)}"
            for name, value in new.items()
            if name != "payment_id" and old.get(name) != value
        ]
        removals = [expression.name(name) for name in old if name not in new]
        update = "SET " + ", ".join(assignments)
        if removals:
            update += " REMOVE " + ", ".join(removals)
        condition = f"{expression.name('version')} = {expression.value(before.version)}"
        return {
            "TableName": self._payments,
            "Key": {"payment_id": {"S": before.payment_id}},
            "UpdateExpression": update,
            "ConditionExpression": condition,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **expression.params(),
        }


_STATUS_KEY = ("status_shard", "updated_at", "payment_id")


def _claim_key(transaction_id: str) -> Item:
    return {"payment_id": {"S": CLAIM_PREFIX + transaction_id}, "event_key": {"S": CLAIM_KEY}}


def _recency(item: Item) -> tuple[str, str]:
    return (item["updated_at"]["S"], item["payment_id"]["S"])


def _key_of(item: Item, key_names: tuple[str, ...]) -> dict[str, Any]:
    return {name: item[name] for name in key_names}


def _cursor(listing: str, scope: dict[str, Any], key: dict[str, Any] | None) -> str | None:
    return None if key is None else encode_cursor({"listing": listing, "scope": scope, "key": key})


def _query_page(
    client: Any,
    params: Mapping[str, Any],
    *,
    limit: int,
    start_key: Any,
    key_names: tuple[str, ...],
    partition: tuple[str, str],
) -> tuple[list[Item], dict[str, Any] | None]:
    """Up to `limit` items of a query (filters may need several requests) and where to resume.

    The resume key is built from the last item returned, not DynamoDB's last evaluated
    key, so items read past the limit are not skipped.
    """
    if limit < 1:
        raise ValueError("limit must be positive")
    if start_key is not None and (
        not isinstance(start_key, dict)
        or set(start_key) != set(key_names)
        or start_key[partition[0]] != {"S": partition[1]}
    ):
        raise InvalidCursor("the cursor does not hold a position of this listing")
    items: list[Item] = []
    next_key = start_key
    while True:
        query = dict(params, Limit=limit - len(items))
        if next_key is not None:
            query["ExclusiveStartKey"] = next_key
        response = request(client.query, **query)
        items.extend(response.get("Items", []))
        next_key = response.get("LastEvaluatedKey")
        if next_key is None or len(items) >= limit:
            break
    if len(items) >= limit and next_key is not None:
        next_key = _key_of(items[-1], key_names)
    return items, next_key
