"""What the use cases need from the outside world, as protocols the adapters (and fakes) satisfy."""

from __future__ import annotations

from typing import Any, Protocol

from coursepay.domain.payment import Payment
from coursepay.domain.records import PaymentEvent
from coursepay.domain.signature import HmacSecrets
from coursepay.domain.state_machine import Decision


class PaymentWriter(Protocol):
    """Persists a state machine decision (and its history entry) in one conditional write."""

    def save(
        self,
        decision: Decision,
        event: PaymentEvent | None,
        claim_transaction_id: str | None = None,
    ) -> None: ...


class PaymentStore(PaymentWriter, Protocol):
    def get(self, payment_id: str, consistent: bool = True) -> Payment | None: ...

    def find_by_paymob_order(self, order_id: str) -> Payment | None: ...

    def record_event(self, event: PaymentEvent) -> bool: ...


class RetryQueue(Protocol):
    def send(self, message: dict[str, Any], delay_seconds: int = 0) -> None: ...


class SecretsSource(Protocol):
    def __call__(self) -> HmacSecrets: ...
