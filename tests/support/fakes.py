"""In-memory fakes of the services' ports, with the same conditional semantics as the adapters."""

from __future__ import annotations

import threading
from typing import Any

from coursepay.domain.payment import Payment
from coursepay.domain.records import PaymentEvent
from coursepay.domain.state_machine import Decision
from coursepay.storage.errors import (
    DuplicateEvent,
    StalePayment,
    TransactionClaimedElsewhere,
)


class InMemoryPaymentStore:
    """Payments, their events and transaction claims; `save` is all-or-nothing like the adapter."""

    def __init__(self, *payments: Payment) -> None:
        self.payments: dict[str, Payment] = {p.payment_id: p for p in payments}
        self.events: dict[tuple[str, str], PaymentEvent] = {}
        self.claims: dict[str, str] = {}
        self.failures: list[Exception] = []  # raised, in order, by the next writes
        self.writes = 0
        self._lock = threading.Lock()

    def fail_next_writes(self, *errors: Exception) -> None:
        self.failures.extend(errors)

    def get(self, payment_id: str, consistent: bool = True) -> Payment | None:
        return self.payments.get(payment_id)

    def find_by_paymob_order(self, order_id: str) -> Payment | None:
        return next((p for p in self.payments.values() if p.paymob_order_id == order_id), None)

    def save(
        self,
        decision: Decision,
        event: PaymentEvent | None,
        claim_transaction_id: str | None = None,
    ) -> None:
        with self._lock:
            self.writes += 1
            if self.failures:
                raise self.failures.pop(0)
            before, after = decision.before, decision.after
            if event is not None and (event.partition, event.event_key) in self.events:
                raise DuplicateEvent(event.partition, event.event_key, None)
            claimant = self.claims.get(claim_transaction_id or "")
            if claim_transaction_id and claimant not in (None, before.payment_id):
                raise TransactionClaimedElsewhere(claim_transaction_id, before.payment_id, claimant)
            current = self.payments.get(before.payment_id)
            if decision.changed and (current is None or current.version != before.version):
                raise StalePayment(before.payment_id, before.version, current)
            if event is not None:
                self.events[(event.partition, event.event_key)] = event
            if claim_transaction_id:
                self.claims[claim_transaction_id] = before.payment_id
            if decision.changed:
                self.payments[after.payment_id] = after

    def record_event(self, event: PaymentEvent) -> bool:
        with self._lock:
            self.writes += 1
            key = (event.partition, event.event_key)
            if key in self.events:
                return False
            self.events[key] = event
            return True

    def events_under(self, partition: str) -> list[PaymentEvent]:
        return [e for (p, _), e in sorted(self.events.items()) if p == partition]


class RecordingQueue:
    def __init__(self, broken: bool = False) -> None:
        self.messages: list[dict[str, Any]] = []
        self.broken = broken

    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> None:
        if self.broken:
            raise ConnectionError("queue unreachable")
        self.messages.append(message)
