"""The simulated merchant account: intentions, orders, transactions and API tokens."""

from __future__ import annotations

import copy
import secrets
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from devstack.paymob_sim.config import SimulatorConfig
from devstack.paymob_sim.intentions import ApiError, Intention, IntentionRequest, Json
from devstack.paymob_sim.transactions import (
    CardPayment,
    WalletPayment,
    card_outcome,
    major_units,
    payment_transaction,
    reversal_child,
    wallet_outcome,
)

TOKEN_LIFETIME = timedelta(hours=1)


class MerchantAccount:
    """All state behind one lock; every read hands out copies.

    Order and transaction ids only ever grow, even across a reset, so a backend that
    outlives a reset never sees an id mean two different things.
    """

    def __init__(self, config: SimulatorConfig, clock: Callable[[], datetime]) -> None:
        self._config = config
        self._clock = clock
        self._lock = threading.Lock()
        self._next_order_id = config.first_order_id
        self._next_transaction_id = config.first_transaction_id
        self._intentions: dict[str, Intention] = {}  # by client_secret
        self._orders: dict[int, Intention] = {}
        self._references: dict[str, Intention] = {}
        self._transactions: dict[int, Json] = {}
        self._tokens: dict[str, datetime] = {}

    def now(self) -> str:
        return self._config.render_time(self._clock())

    def reset(self) -> None:
        with self._lock:
            self._intentions.clear()
            self._orders.clear()
            self._references.clear()
            self._transactions.clear()
            self._tokens.clear()

    # Intentions

    def create_intention(self, request: IntentionRequest) -> Intention:
        config = self._config
        with self._lock:
            reference = request.special_reference
            if reference is not None and reference in self._references:
                raise ApiError(
                    400, {"special_reference": ["An intention with this reference exists."]}
                )
            created_at = self._clock()
            order_id = self._next_order_id
            self._next_order_id += 1
            redirection_url = request.redirection_url or config.default_redirection_url
            intention = Intention(
                id=f"pi_test_{secrets.token_hex(16)}",
                client_secret=f"sim_csk_test_{secrets.token_hex(16)}",
                order_id=order_id,
                request=request,
                created_at=created_at,
                created=config.render_time(created_at),
                expires_at=created_at
                + timedelta(seconds=request.expiration or config.default_expiration_seconds),
                payment_keys=[
                    {
                        "integration": integration,
                        "key": secrets.token_urlsafe(48),
                        "gateway_type": "VPC"
                        if integration == config.card_integration_id
                        else "WALLET",
                        "iframe_id": None,
                        "order_id": order_id,
                        "redirection_url": redirection_url,
                        "save_card": False,
                    }
                    for integration in request.payment_methods
                ],
            )
            self._intentions[intention.client_secret] = intention
            self._orders[order_id] = intention
            if reference is not None:
                self._references[reference] = intention
            return intention

    def intention(self, client_secret: str) -> Intention | None:
        with self._lock:
            return self._intentions.get(client_secret)

    def intention_status(self, intention: Intention) -> str:
        with self._lock:
            return intention.status(self._clock())

    def intentions(self) -> list[Intention]:
        with self._lock:
            return list(self._intentions.values())

    # Payments

    def pay(
        self, client_secret: str, payment: CardPayment | WalletPayment
    ) -> tuple[Json, Intention]:
        """Run one attempt on the checkout; a decline leaves the intention payable."""
        config = self._config
        is_card = isinstance(payment, CardPayment)
        integration_id = config.card_integration_id if is_card else config.wallet_integration_id
        with self._lock:
            intention = self._intentions.get(client_secret)
            if intention is None:
                raise ApiError(404, {"detail": "Payment intention not found."})
            status = intention.status(self._clock())
            if status == "paid":
                raise ApiError(409, {"detail": "This payment has already been completed."})
            if status == "expired":
                raise ApiError(410, {"detail": "This payment link has expired."})
            if integration_id not in intention.request.payment_methods:
                method = "Card" if is_card else "Wallet"
                message = f"{method} payments are not enabled for this order."
                raise ApiError(400, {"detail": message})
            if isinstance(payment, CardPayment):
                outcome = card_outcome(payment)
            else:
                outcome = wallet_outcome(payment)
            transaction_id = self._next_transaction_id
            self._next_transaction_id += 1
            obj = payment_transaction(
                transaction_id=transaction_id,
                intention=intention,
                payment=payment,
                outcome=outcome,
                integration_id=integration_id,
                now=config.render_time(self._clock()),
                merchant_id=config.merchant_id,
                profile_id=config.profile_id,
            )
            self._transactions[transaction_id] = obj
            intention.transaction_ids.append(transaction_id)
            if outcome.approved:
                intention.paid_transaction_id = transaction_id
            return copy.deepcopy(obj), intention

    # Inquiry

    def issue_token(self, api_key: object) -> str:
        if not isinstance(api_key, str) or not secrets.compare_digest(
            api_key.encode(), self._config.api_key.encode()
        ):
            raise ApiError(401, {"detail": "Incorrect credentials."})
        token = secrets.token_urlsafe(48)
        with self._lock:
            self._tokens[token] = self._clock() + TOKEN_LIFETIME
        return token

    def token_valid(self, token: str) -> bool:
        with self._lock:
            expires = self._tokens.get(token)
            return expires is not None and self._clock() < expires

    def transaction(self, transaction_id: int) -> Json | None:
        with self._lock:
            obj = self._transactions.get(transaction_id)
            return copy.deepcopy(obj) if obj is not None else None

    def transactions(self) -> list[Json]:
        with self._lock:
            return copy.deepcopy(list(self._transactions.values()))

    def latest_payment(
        self, *, order_id: int | None = None, merchant_order_id: str | None = None
    ) -> Json | None:
        """The order's latest payment attempt (not a refund or void child), as it stands now.

        A refund shows on this transaction (is_refunded, refunded_amount_cents), which is
        what reconciliation needs to see.
        """
        with self._lock:
            if order_id is not None:
                intention = self._orders.get(order_id)
            else:
                intention = self._references.get(merchant_order_id or "")
            if intention is None:
                return None
            for transaction_id in reversed(intention.transaction_ids):
                obj = self._transactions[transaction_id]
                if not obj["has_parent_transaction"]:
                    return copy.deepcopy(obj)
            return None

    # Refunds and voids

    def refund(self, transaction_id: int, amount_cents: int) -> tuple[Json, Json]:
        """A refund child and the updated parent; a refund over what is left is refused."""
        with self._lock:
            parent = self._reversible(transaction_id)
            if parent["is_voided"]:
                raise ApiError(400, {"detail": "A voided transaction cannot be refunded."})
            refunded = parent["refunded_amount_cents"] or 0
            remaining = parent["amount_cents"] - refunded
            if amount_cents > remaining:
                raise ApiError(
                    400,
                    {
                        "detail": f"Refund amount {amount_cents} exceeds the refundable amount "
                        f"{remaining}."
                    },
                )
            child = self._reversal(parent, amount_cents, "refund")
            parent["is_refunded"] = True
            parent["refunded_amount_cents"] = refunded + amount_cents
            parent["data"]["refunded_amount"] = major_units(
                refunded + amount_cents, parent["currency"]
            )
            parent["updated_at"] = child["created_at"]
            return copy.deepcopy(child), copy.deepcopy(parent)

    def void(self, transaction_id: int) -> tuple[Json, Json]:
        with self._lock:
            parent = self._reversible(transaction_id)
            if parent["is_voided"]:
                raise ApiError(400, {"detail": "This transaction is already voided."})
            if parent["refunded_amount_cents"]:
                raise ApiError(400, {"detail": "A refunded transaction cannot be voided."})
            child = self._reversal(parent, parent["amount_cents"], "void")
            parent["is_voided"] = True
            parent["updated_at"] = child["created_at"]
            return copy.deepcopy(child), copy.deepcopy(parent)

    def _reversible(self, transaction_id: int) -> Json:
        parent = self._transactions.get(transaction_id)
        if parent is None:
            raise ApiError(404, {"detail": "Transaction not found."})
        if parent["has_parent_transaction"]:
            raise ApiError(400, {"detail": "A refund or void cannot itself be reversed."})
        if not parent["success"] or parent["pending"]:
            raise ApiError(400, {"detail": "Only a successful payment can be reversed."})
        return parent

    def _reversal(self, parent: Json, amount_cents: int, kind: str) -> Json:
        transaction_id = self._next_transaction_id
        self._next_transaction_id += 1
        child = reversal_child(
            parent,
            transaction_id=transaction_id,
            amount_cents=amount_cents,
            kind=kind,
            now=self._config.render_time(self._clock()),
        )
        self._transactions[transaction_id] = child
        self._orders[parent["order"]["id"]].transaction_ids.append(transaction_id)
        return child

    def order_intention(self, order_id: int) -> Intention | None:
        with self._lock:
            return self._orders.get(order_id)
