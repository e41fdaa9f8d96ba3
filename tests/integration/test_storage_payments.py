"""PaymentRepository against moto: round trips, conditional writes and their typed errors."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coursepay.domain.payment import CardSummary, Payment, PaymentFlag, PaymentStatus
from coursepay.domain.records import EventKind
from coursepay.domain.state_machine import Decision, DecisionReason, decide
from coursepay.storage.errors import (
    DuplicateEvent,
    InvalidCursor,
    PaymentAlreadyExists,
    StalePayment,
    StorageError,
    TransactionClaimedElsewhere,
    TransientStorageError,
)
from coursepay.storage.payments import PaymentRepository
from coursepay.storage.serialization import STATUS_SHARDS, status_shard_number
from tests.support.aws import AwsStack, FaultyClient, Store, an_event, client_error
from tests.support.builders import (
    NOW,
    OTHER_TRANSACTION_ID,
    PAYMENT_ID,
    PAYMOB_ORDER_ID,
    TRANSACTION_ID,
    a_payment,
    a_payment_in,
    success_fact,
)


def paid(payment: Payment, transaction_id: str = TRANSACTION_ID) -> Decision:
    """What a successful callback does to `payment` (through the real state machine)."""
    decision = decide(payment, success_fact(paymob_transaction_id=transaction_id), NOW)
    assert decision.changed
    return decision


def raw_item(aws: AwsStack, payment_id: str) -> dict[str, Any]:
    return dict(
        aws.dynamodb.get_item(TableName=aws.payments_table, Key={"payment_id": {"S": payment_id}})[
            "Item"
        ]
    )


def a_full_payment() -> Payment:
    """A payment with every optional field set, so a round trip has something to lose."""
    return a_payment_in(
        PaymentStatus.PARTIALLY_REFUNDED,
        flags=frozenset({PaymentFlag.LATE_SUCCESS, PaymentFlag.DOUBLE_CHARGE}),
        integration_ids=(4097558, 4097559),
        expires_at="2024-06-13T12:30:00+00:00",
        failure_reason=None,
        last_checked_at="2024-06-13T11:40:00+00:00",
        checkout_url="https://accept.paymob.com/unifiedcheckout/?publicKey=x&clientSecret=y",
        enrolled_at="2024-06-13T11:34:00+00:00",
        card=CardSummary(last4="2346", type="card", sub_type=None),
    )


# --- create and read ---------------------------------------------------------------------


def test_a_created_payment_reads_back_equal_with_its_index_keys(
    aws: AwsStack, payments: PaymentRepository
) -> None:
    # Given a payment with every optional field set
    payment = a_full_payment()

    # When it is created and read back
    payments.create(payment)
    stored = payments.get(payment.payment_id)

    # Then nothing is lost, and the item carries the shapes the indexes and streams rely on
    assert stored == payment
    item = raw_item(aws, payment.payment_id)
    shard = status_shard_number(payment.payment_id)
    assert item["status_shard"] == {"S": f"PARTIALLY_REFUNDED#{shard}"}
    assert 0 <= shard < STATUS_SHARDS
    assert item["paymob_order_id"] == {"S": PAYMOB_ORDER_ID}
    assert set(item["flags"]["SS"]) == {"LATE_SUCCESS", "DOUBLE_CHARGE"}
    assert item["integration_ids"] == {"L": [{"N": "4097558"}, {"N": "4097559"}]}
    assert item["refund_transactions"]["M"]
    assert item["card"] == {"M": {"last4": {"S": "2346"}, "type": {"S": "card"}}}
    assert "failure_reason" not in item  # absent, never null
    assert all("NULL" not in value for value in item.values())


def test_a_fresh_payment_stores_no_empty_collections(
    aws: AwsStack, payments: PaymentRepository
) -> None:
    # Given a payment without flags, refunds, integrations or card
    payment = a_payment(integration_ids=())

    # When it is created
    payments.create(payment)

    # Then the empty collections are left out (DynamoDB has no empty sets) and read back empty
    item = raw_item(aws, payment.payment_id)
    assert not {"flags", "refund_transactions", "integration_ids", "card"} & set(item)
    assert payments.get(payment.payment_id) == payment


def test_creating_a_payment_twice_is_refused(store: Store, payments: PaymentRepository) -> None:
    # Given a stored payment
    payment = store.payment()

    # When the same payment id is created again
    # Then it is refused and the stored one is kept
    with pytest.raises(PaymentAlreadyExists):
        payments.create(payment.model_copy(update={"amount_cents": 1}))
    assert payments.get(payment.payment_id) == payment


def test_an_unknown_payment_reads_as_none(payments: PaymentRepository) -> None:
    assert payments.get("pay_unknown") is None
    assert payments.get("pay_unknown", consistent=False) is None


def test_a_payment_is_found_by_its_paymob_order_in_one_query(
    store: Store, payments: PaymentRepository
) -> None:
    # Given a stored payment with PayMob order 217503754, and another payment
    payment = store.payment(a_full_payment())
    store.payment(payment_id="pay_other", paymob_order_id="999")

    # When a callback looks the order up
    # Then the whole payment comes from the index; an unknown order finds nothing
    assert payments.find_by_paymob_order(PAYMOB_ORDER_ID) == payment
    assert payments.find_by_paymob_order("1") is None


# --- save: transitions, events, claims ----------------------------------------------------


def test_saving_a_transition_updates_the_payment_and_records_event_and_claim(
    aws: AwsStack, store: Store, payments: PaymentRepository
) -> None:
    # Given a failed payment (it has a failure reason), and a late success decided on it
    payment = store.payment(a_payment_in(PaymentStatus.FAILED))
    decision = paid(payment)
    event = an_event(status_before="FAILED", status_after="PAID")

    # When the decision is saved with its event and its transaction claim
    payments.save(decision, event, claim_transaction_id=TRANSACTION_ID)

    # Then the stored payment is the decided one, moved to the PAID shard, failure removed
    assert payments.get(payment.payment_id) == decision.after
    item = raw_item(aws, payment.payment_id)
    assert item["status_shard"]["S"].startswith("PAID#")
    assert "failure_reason" not in item
    assert PaymentFlag.LATE_SUCCESS in decision.after.flags
    # And the event and the claim are recorded
    assert payments.events_for(payment.payment_id) == [event]
    assert payments.transaction_claimant(TRANSACTION_ID) == payment.payment_id


def test_a_decision_from_an_old_version_is_stale_and_carries_the_current_payment(
    store: Store, payments: PaymentRepository
) -> None:
    # Given a payment that moved on after a decision was made from it
    payment = store.payment()
    late = paid(payment)
    moved_on = paid(payment, transaction_id=OTHER_TRANSACTION_ID)
    payments.save(moved_on, an_event(event_key="CB#other"))

    # When the older decision is saved
    with pytest.raises(StalePayment) as stale:
        payments.save(late, an_event(event_key="CB#late"), claim_transaction_id=TRANSACTION_ID)

    # Then it is refused with the stored payment to decide again from; nothing else is written
    assert stale.value.current == moved_on.after
    assert stale.value.expected_version == payment.version
    assert [e.event_key for e in payments.events_for(payment.payment_id)] == ["CB#other"]
    assert payments.transaction_claimant(TRANSACTION_ID) is None


def test_a_duplicate_callback_is_one_failed_write_and_changes_nothing(
    store: Store, payments: PaymentRepository
) -> None:
    # Given a callback already recorded on a payment
    payment = store.payment()
    first = store.event()

    # When a transition is saved with the same event key again
    with pytest.raises(DuplicateEvent) as duplicate:
        payments.save(paid(payment), an_event(received_at=NOW))

    # Then it is reported as a duplicate (with what was stored) and the payment is unchanged
    assert duplicate.value.existing == first
    assert payments.get(payment.payment_id) == payment


def test_a_no_op_decision_records_only_its_event(
    aws: AwsStack, store: Store, payments: PaymentRepository
) -> None:
    # Given a paid payment and a duplicate success decided on it (a no-op)
    payment = store.payment(a_payment_in(PaymentStatus.PAID))
    decision = decide(payment, success_fact(), NOW)
    assert not decision.changed
    event = an_event(event_key="CB#192036465#PAID#again")

    # When the no-op is saved with its event, and then again
    payments.save(decision, event, claim_transaction_id=TRANSACTION_ID)
    with pytest.raises(DuplicateEvent):
        payments.save(decision, event)
    payments.save(decision, None)

    # Then the event is recorded once and the payment item is untouched
    assert payments.events_for(payment.payment_id) == [event]
    assert payments.get(payment.payment_id) == payment


def test_a_transaction_settles_one_payment_only(store: Store, payments: PaymentRepository) -> None:
    # Given transaction 192036465 already settles one payment
    first = store.payment()
    payments.save(paid(first), an_event(), claim_transaction_id=TRANSACTION_ID)
    second = store.payment(payment_id="pay_second", paymob_order_id="555")

    # When the same transaction id is claimed for another payment
    with pytest.raises(TransactionClaimedElsewhere) as claimed:
        payments.save(
            paid(second),
            an_event(partition="pay_second"),
            claim_transaction_id=TRANSACTION_ID,
        )

    # Then it is refused naming the payment it settles, and nothing of it is written
    assert claimed.value.claimed_by == first.payment_id
    assert claimed.value.payment_id == "pay_second"
    assert payments.get("pay_second") == second
    assert payments.events_for("pay_second") == []


def test_the_claiming_payment_may_claim_its_transaction_again(
    store: Store, payments: PaymentRepository
) -> None:
    # Given a payment that claimed its transaction when it was paid
    payment = store.payment()
    first = paid(payment)
    payments.save(first, an_event(), claim_transaction_id=TRANSACTION_ID)

    # When a later transition of the same payment claims it again (a refund of it, say)
    later = decide(first.after, success_fact(paymob_transaction_id=OTHER_TRANSACTION_ID), NOW)
    payments.save(later, an_event(event_key="CB#2"), claim_transaction_id=TRANSACTION_ID)

    # Then it goes through
    assert payments.get(payment.payment_id) == later.after


def test_thirty_concurrent_saves_from_one_version_let_exactly_one_win(
    store: Store, payments: PaymentRepository
) -> None:
    # Given thirty workers that each decided a transition from the same version
    payment = store.payment()
    decisions = [paid(payment, transaction_id=f"19203{n:04d}") for n in range(30)]
    start = threading.Barrier(len(decisions))

    def save(n: int) -> str:
        start.wait()
        try:
            payments.save(
                decisions[n],
                an_event(event_key=f"CB#{n}"),
                claim_transaction_id=decisions[n].after.paymob_transaction_id,
            )
        except StalePayment:
            return "stale"
        return "saved"

    # When they all save at once
    with ThreadPoolExecutor(max_workers=len(decisions)) as pool:
        outcomes = list(pool.map(save, range(len(decisions))))

    # Then exactly one wins, and the store holds exactly that one's payment, event and claim
    assert outcomes.count("saved") == 1
    assert outcomes.count("stale") == len(decisions) - 1
    winner = outcomes.index("saved")
    assert payments.get(payment.payment_id) == decisions[winner].after
    assert [e.event_key for e in payments.events_for(payment.payment_id)] == [f"CB#{winner}"]
    claimants = [payments.transaction_claimant(f"19203{n:04d}") for n in range(30)]
    assert [c for c in claimants if c is not None] == [payment.payment_id]


# --- transient failures (moto never produces these) ---------------------------------------


def stubbed_repository(aws: AwsStack) -> tuple[PaymentRepository, Stubber]:
    client = boto3.client("dynamodb", region_name=aws.resources.region)
    return PaymentRepository(aws.payments_table, aws.webhooks_table, client=client), Stubber(client)


@pytest.mark.parametrize(
    "reasons",
    [
        ["None", "None", "TransactionConflict"],
        ["ThrottlingError", "None", "None"],
        ["None", "ProvisionedThroughputExceeded", "None"],
    ],
)
def test_a_contended_or_throttled_transaction_is_transient(
    aws: AwsStack, store: Store, reasons: list[str]
) -> None:
    # Given DynamoDB cancels the transaction for contention or throttling (as parsed by botocore)
    payment = store.payment()
    repository, stubber = stubbed_repository(aws)
    stubber.add_client_error(
        "transact_write_items",
        service_error_code="TransactionCanceledException",
        service_message="Transaction cancelled",
        modeled_fields={
            "CancellationReasons": [
                {"Code": code} if code == "None" else {"Code": code, "Message": "busy"}
                for code in reasons
            ]
        },
    )

    # When a transition is saved
    # Then the caller is told to retry, not that the callback was a duplicate or stale
    with stubber, pytest.raises(TransientStorageError):
        repository.save(paid(payment), an_event(), claim_transaction_id=TRANSACTION_ID)


@pytest.mark.parametrize(
    "fault",
    [
        client_error("ProvisionedThroughputExceededException", operation="PutItem"),
        client_error("ThrottlingException", operation="PutItem"),
        client_error("InternalServerError", operation="PutItem"),
        client_error("TransactionConflictException", operation="PutItem"),
        ReadTimeoutError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com"),
        EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com"),
    ],
    ids=[
        "throughput",
        "throttling",
        "internal-error",
        "transaction-conflict",
        "read-timeout",
        "no-connection",
    ],
)
def test_throttling_faults_and_timeouts_on_a_single_write_are_transient(
    aws: AwsStack, fault: Exception
) -> None:
    # Given a client whose next PutItem fails with a retryable fault
    client = FaultyClient(aws.dynamodb).fail("put_item", fault)
    repository = PaymentRepository(aws.payments_table, aws.webhooks_table, client=client)

    # When an event is recorded, then retried
    with pytest.raises(TransientStorageError):
        repository.record_event(an_event())

    # Then the retry succeeds: the failed attempt left nothing behind
    assert repository.record_event(an_event()) is True


def test_a_transaction_canceled_for_a_validation_error_is_not_transient(
    aws: AwsStack, store: Store
) -> None:
    # Given DynamoDB refuses one item of the transaction as invalid
    payment = store.payment()
    client = FaultyClient(aws.dynamodb).fail(
        "transact_write_items",
        client_error("TransactionCanceledException", reasons=["None", "ValidationError"]),
    )
    repository = PaymentRepository(aws.payments_table, aws.webhooks_table, client=client)

    # When a transition is saved
    # Then the error is a plain storage error: retrying would not help
    with pytest.raises(StorageError, match="ValidationError") as failure:
        repository.save(paid(payment), an_event())
    assert not isinstance(failure.value, TransientStorageError)


# --- events ----------------------------------------------------------------------------------


def test_recording_an_event_twice_reports_the_duplicate(payments: PaymentRepository) -> None:
    # Given a token callback recorded once
    event = an_event(partition="UNLINKED#TOKEN", event_key="TOKEN#1#abc", kind=EventKind.TOKEN)

    # When it is recorded again
    # Then the first write reports new, the second a duplicate
    assert payments.record_event(event) is True
    assert payments.record_event(event) is False
    assert payments.events_for("UNLINKED#TOKEN") == [event]


def test_orphan_callbacks_are_kept_per_order_and_listed_newest_first(
    aws: AwsStack, payments: PaymentRepository
) -> None:
    # Given callbacks for two orders nobody knows, and one ordinary callback
    orphans = [
        an_event(
            partition=f"ORPHAN#{order}",
            event_key=f"CB#{order}#{n}",
            kind=EventKind.ORPHAN,
            received_at=f"2024-06-13T11:0{n}:00+00:00",
            paymob_order_id=order,
        )
        for n, order in enumerate(["700", "700", "800"])
    ]
    for event in orphans:
        assert payments.record_event(event)
    payments.record_event(an_event())

    # When the admin lists orphans one per page, and a callback handler looks an order up
    first = payments.list_orphans(limit=2)
    assert first.cursor is not None
    second = payments.list_orphans(limit=2, cursor=first.cursor)

    # Then every orphan is listed once, newest first, and only orphans carry the bucket
    assert first.items + second.items == orphans[::-1]
    assert second.cursor is None
    assert payments.orphans_for_order("700") == orphans[:2]
    item = aws.dynamodb.get_item(
        TableName=aws.webhooks_table,
        Key={"payment_id": {"S": PAYMENT_ID}, "event_key": {"S": an_event().event_key}},
    )["Item"]
    assert "orphan_bucket" not in item


def test_a_payments_whole_history_is_read_across_pages_oldest_first(
    store: Store, payments: PaymentRepository
) -> None:
    # Given a payment with more history than one 1 MB query page holds
    payment = store.payment()
    bulky = {"message": "x" * 300_000}
    recorded = [
        store.event(
            event_key=f"CB#{n}",
            received_at=f"2024-06-13T11:{59 - n:02d}:00+00:00",
            payload=bulky,
        )
        for n in range(6)
    ]

    # When its history is read
    history = payments.events_for(payment.payment_id)

    # Then every entry comes back, oldest first
    assert history == sorted(recorded, key=lambda e: e.received_at)


def test_a_payload_with_floats_and_nesting_round_trips(payments: PaymentRepository) -> None:
    # Given a received payload with a decimal amount, nulls, lists and nested objects
    payload = {
        "amount": 19.99,
        "count": 3,
        "pending": False,
        "source_data": {"pan": "2346", "tenure": None},
        "items": [{"name": "Python 101", "amount_cents": 1999}],
    }
    event = an_event(payload=payload)

    # When it is recorded and read back
    payments.record_event(event)

    # Then it is the same payload
    assert payments.events_for(event.partition)[0].payload == payload


# --- listings ------------------------------------------------------------------------------


def store_payments_by_status(store: Store) -> dict[str, list[Payment]]:
    """60 PAID payments (all 16 shards used) and 5 PENDING ones, each updated at its own minute."""
    stored: dict[str, list[Payment]] = {"PAID": [], "PENDING": []}
    for n in range(65):
        status = PaymentStatus.PAID if n < 60 else PaymentStatus.PENDING
        minute = f"2024-06-13T{10 + n // 60:02d}:{n % 60:02d}:00+00:00"
        payment = a_payment(
            payment_id=f"pay_{n:03d}",
            paymob_order_id=str(1000 + n),
            status=status,
            updated_at=minute,
        )
        stored[status.value].append(store.payment(payment))
    return stored


def test_listing_a_status_pages_through_every_shard_exactly_once_newest_first(
    store: Store, payments: PaymentRepository
) -> None:
    # Given 60 PAID payments spread over the 16 status shards, and some PENDING ones
    stored = store_payments_by_status(store)
    assert len({status_shard_number(p.payment_id) for p in stored["PAID"]}) == STATUS_SHARDS

    # When PAID payments are listed 7 per page until the cursor runs out
    listed: list[Payment] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = payments.list_by_status(PaymentStatus.PAID, limit=7, cursor=cursor)
        assert len(page.items) <= 7
        listed.extend(page.items)
        pages += 1
        cursor = page.cursor
        if cursor is None:
            break
        assert pages < 50, "the listing does not terminate"

    # Then every PAID payment is listed exactly once, most recently updated first
    assert [p.payment_id for p in listed] == [p.payment_id for p in stored["PAID"][::-1]]


@settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    minutes=st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=40),
    limit=st.integers(min_value=1, max_value=12),
)
def test_status_pages_list_each_payment_once_even_when_updated_at_ties(
    aws: AwsStack, payments: PaymentRepository, minutes: list[int], limit: int
) -> None:
    # Given PAID payments updated within a few minutes of each other (many share a timestamp)
    stored = {
        f"pay_{n:03d}": a_payment(
            payment_id=f"pay_{n:03d}",
            paymob_order_id=str(n),
            status=PaymentStatus.PAID,
            updated_at=f"2024-06-13T10:0{minute}:00+00:00",
        )
        for n, minute in enumerate(minutes)
    }
    for payment in stored.values():
        payments.create(payment)
    try:
        # When they are listed `limit` at a time
        listed: list[Payment] = []
        cursor: str | None = None
        for _ in range(len(stored) + 2):
            page = payments.list_by_status(PaymentStatus.PAID, limit=limit, cursor=cursor)
            listed.extend(page.items)
            cursor = page.cursor
            if cursor is None:
                break

        # Then each comes exactly once, in non-increasing updated_at order
        assert cursor is None
        assert sorted(p.payment_id for p in listed) == sorted(stored)
        assert [p.updated_at for p in listed] == sorted(
            (p.updated_at for p in listed), reverse=True
        )
    finally:
        for payment_id in stored:
            aws.dynamodb.delete_item(
                TableName=aws.payments_table, Key={"payment_id": {"S": payment_id}}
            )


def test_listing_a_status_honours_updated_before(store: Store, payments: PaymentRepository) -> None:
    # Given PAID payments updated at 10:00..10:59
    stored = store_payments_by_status(store)

    # When the ones updated before 10:05 are listed
    page = payments.list_by_status(
        PaymentStatus.PAID, updated_before="2024-06-13T10:05:00+00:00", limit=50
    )

    # Then exactly those five come back, and the listing is complete
    assert page.items == stored["PAID"][:5][::-1]
    assert page.cursor is None


def test_a_status_cursor_is_bound_to_its_filters(store: Store, payments: PaymentRepository) -> None:
    # Given a cursor of the PAID listing
    store_payments_by_status(store)
    cursor = payments.list_by_status(PaymentStatus.PAID, limit=3).cursor
    assert cursor is not None

    # When it is used for another status, another listing, or tampered with
    # Then it is refused as an invalid cursor
    with pytest.raises(InvalidCursor):
        payments.list_by_status(PaymentStatus.PENDING, limit=3, cursor=cursor)
    with pytest.raises(InvalidCursor):
        payments.list_by_student("student-7f3c", cursor=cursor)
    with pytest.raises(InvalidCursor):
        payments.list_by_status(PaymentStatus.PAID, cursor="not-a-cursor")


def test_a_students_payments_are_listed_newest_first_with_a_status_filter(
    store: Store, payments: PaymentRepository
) -> None:
    # Given a student with five payments (two failed) and another student's payment
    statuses = ["PAID", "FAILED", "PENDING", "FAILED", "EXPIRED"]
    mine = [
        store.payment(
            payment_id=f"pay_mine_{n}",
            paymob_order_id=str(2000 + n),
            status=PaymentStatus(status),
            created_at=f"2024-06-1{n}T09:00:00+00:00",
        )
        for n, status in enumerate(statuses)
    ]
    store.payment(payment_id="pay_theirs", student_id="someone-else", paymob_order_id="3000")

    # When the student pages through two at a time, and filters by FAILED one at a time
    first = payments.list_by_student("student-7f3c", limit=2)
    second = payments.list_by_student("student-7f3c", limit=2, cursor=first.cursor)
    third = payments.list_by_student("student-7f3c", limit=2, cursor=second.cursor)
    failed_first = payments.list_by_student("student-7f3c", limit=1, status=PaymentStatus.FAILED)
    failed_second = payments.list_by_student(
        "student-7f3c", limit=1, status=PaymentStatus.FAILED, cursor=failed_first.cursor
    )
    oldest_first = payments.list_by_student("student-7f3c", limit=10, newest_first=False)

    # Then they see their own payments only, newest first, each once
    assert first.items + second.items + third.items == mine[::-1]
    assert third.cursor is None
    assert failed_first.items + failed_second.items == [mine[3], mine[1]]
    assert oldest_first.items == mine
    # And a cursor cannot be replayed for another student
    with pytest.raises(InvalidCursor):
        payments.list_by_student("someone-else", limit=2, cursor=first.cursor)


def test_a_decision_reason_survives_in_the_event(payments: PaymentRepository) -> None:
    # Given an audit entry of an admin override
    event = an_event(
        event_key="AUDIT#2024-06-13T12:00:00+00:00#1",
        kind=EventKind.AUDIT,
        source="ADMIN",
        decision=DecisionReason.OVERRIDDEN.value,
        status_before="PAID",
        status_after="REFUNDED",
        actor="admin-1",
        reason="refunded by bank transfer",
        payload={},
        paymob_transaction_id=None,
    )

    # When it is recorded and read back
    payments.record_event(event)

    # Then every field is kept
    assert payments.events_for(event.partition) == [event]
