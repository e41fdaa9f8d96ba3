"""Delivery of signed transaction callbacks, with the duplicate/delay/reorder/drop switches."""

from __future__ import annotations

import copy
import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import requests

from coursepay.domain.signature import sign_transaction_obj
from devstack.paymob_sim.config import SwitchBoard
from devstack.paymob_sim.intentions import Json

logger = logging.getLogger("devstack.paymob_sim")

# A delivery in one of these states will not change again (until a reset clears the log).
SETTLED = frozenset({"delivered", "rejected", "failed", "dropped", "cancelled", "no_url"})
# A 4xx says the receiver refused this callback; sending it again cannot change that,
# except for a timeout or a rate limit.
_RETRYABLE_4XX = frozenset({408, 429})


@dataclass
class Delivery:
    """One callback as the log shows it; `copy` is 2 for the second send in duplicate mode."""

    id: int
    transaction_id: int
    order_id: int
    url: str | None
    hmac: str
    payload: Json
    mode: str
    copy: int
    created_at: str
    status: str = "pending"
    attempts: list[Json] = field(default_factory=list)
    delivered_at: str | None = None
    generation: int = 0  # a reset starts a new one; older deliveries stop retrying

    def to_json(self) -> Json:
        return {
            "id": self.id,
            "transaction_id": self.transaction_id,
            "order_id": self.order_id,
            "url": self.url,
            "hmac": self.hmac,
            "mode": self.mode,
            "copy": self.copy,
            "status": self.status,
            "created_at": self.created_at,
            "delivered_at": self.delivered_at,
            "attempts": copy.deepcopy(self.attempts),
            "payload": copy.deepcopy(self.payload),
        }


def _with_hmac(url: str, digest: str) -> str:
    parts = urlsplit(url)
    query = urlencode([*parse_qsl(parts.query, keep_blank_values=True), ("hmac", digest)])
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class CallbackDispatcher:
    """Signs and sends callbacks; never raises into the request that caused them.

    In `normal` and `duplicate` modes the first attempt happens before `send` returns, so
    a test that paid can look at its receiver at once; retries and the `delay` and
    `reorder` modes run on daemon timers, which `close` and `reset` cancel.
    """

    def __init__(
        self,
        *,
        hmac_secret: str,
        switches: SwitchBoard,
        retries: int,
        backoff_seconds: float,
        timeout_seconds: float,
        now: Callable[[], str],
    ) -> None:
        self._hmac_secret = hmac_secret
        self._switches = switches
        self._retries = retries
        self._backoff = backoff_seconds
        self._timeout = timeout_seconds
        self._now = now
        self._lock = threading.Condition()
        self._log: list[Delivery] = []
        self._next_id = 1
        self._timers: set[threading.Timer] = set()
        self._held: tuple[Delivery, threading.Timer] | None = None
        self._generation = 0
        self._closed = False

    def send(self, url: str | None, obj: Json) -> list[Delivery]:
        """Queue one callback for this transaction state, honouring the current switches."""
        switches = self._switches.current
        mode = switches.callback_mode
        digest = sign_transaction_obj(obj, self._hmac_secret)
        payload = {
            "type": "TRANSACTION",
            "obj": copy.deepcopy(obj),
            "issuer_bank": None,
            "transaction_processed_callback_responses": "",
        }
        target = None if url is None else _with_hmac(url, digest)
        copies = 2 if mode == "duplicate" else 1
        with self._lock:
            deliveries = []
            for number in range(1, copies + 1):
                delivery = Delivery(
                    id=self._next_id,
                    transaction_id=obj["id"],
                    order_id=obj["order"]["id"],
                    url=target,
                    hmac=digest,
                    payload=payload,
                    mode=mode,
                    copy=number,
                    created_at=self._now(),
                    generation=self._generation,
                )
                self._next_id += 1
                self._log.append(delivery)
                deliveries.append(delivery)
        if target is None:
            self._settle(deliveries, "no_url")
        elif mode == "drop":
            self._settle(deliveries, "dropped")
        elif mode == "delay":
            self._settle(deliveries, "scheduled")
            self._later(switches.delay_seconds, lambda: self._attempt_all(deliveries))
        elif mode == "reorder":
            self._reorder(deliveries[0], switches.delay_seconds)
        else:
            self._attempt_all(deliveries)
        return deliveries

    def _reorder(self, delivery: Delivery, delay_seconds: float) -> None:
        # Consecutive callbacks swap places: the first is held, and goes out right after
        # the next one (for any order), or alone once delay_seconds pass.
        with self._lock:
            held, self._held = self._held, None
            if held is None:
                delivery.status = "held"
                timer = self._make_timer(delay_seconds, lambda: self._release(delivery))
                if timer is not None:
                    self._held = (delivery, timer)
                    timer.start()
                return
            held[1].cancel()
            self._timers.discard(held[1])
        self._attempt(delivery)
        self._attempt(held[0])

    def _release(self, delivery: Delivery) -> None:
        with self._lock:
            if self._held is None or self._held[0] is not delivery:
                return  # the next callback already took it out
            self._held = None
        self._attempt(delivery)

    def _settle(self, deliveries: list[Delivery], status: str) -> None:
        with self._lock:
            for delivery in deliveries:
                delivery.status = status
            self._lock.notify_all()

    def _attempt_all(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            self._attempt(delivery)

    def _attempt(self, delivery: Delivery) -> None:
        assert delivery.url is not None
        with self._lock:
            if delivery.generation != self._generation or self._closed:
                return
        started = self._now()
        outcome: Json = {"at": started}
        try:
            response = requests.post(
                delivery.url,
                data=json.dumps(delivery.payload).encode(),
                headers={"Content-Type": "application/json", "User-Agent": "PayMob-Simulator"},
                timeout=self._timeout,
                allow_redirects=False,
            )
            outcome["status_code"] = response.status_code
            code: int | None = response.status_code
        except Exception as exc:  # a broken receiver must never break the simulator
            outcome["error"] = f"{type(exc).__name__}: {exc}"
            code = None
        with self._lock:
            delivery.attempts.append(outcome)
            tries = len(delivery.attempts)
            if code is not None and 200 <= code < 300:
                delivery.status = "delivered"
                delivery.delivered_at = started
            elif code is not None and code < 500 and code not in _RETRYABLE_4XX:
                delivery.status = "rejected"
            elif tries <= self._retries:
                delivery.status = "retrying"
            else:
                delivery.status = "failed"
            status = delivery.status
            self._lock.notify_all()
        if status == "retrying":
            self._later(self._backoff * 2 ** (tries - 1), lambda: self._attempt(delivery))
        elif status in ("rejected", "failed"):
            logger.warning(
                "callback not delivered",
                extra={"delivery": delivery.id, "status": status, "outcome": outcome},
            )

    def _make_timer(self, delay: float, action: Callable[[], None]) -> threading.Timer | None:
        """A daemon timer tied to this generation of the log; call with the lock held."""
        if self._closed:
            return None
        generation = self._generation

        def fire() -> None:
            with self._lock:
                self._timers.discard(timer)
                if generation != self._generation or self._closed:
                    return
            try:
                action()
            except Exception:  # a timer thread has no one to report to but the log
                logger.exception("callback timer failed")

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        self._timers.add(timer)
        return timer

    def _later(self, delay: float, action: Callable[[], None]) -> None:
        with self._lock:
            timer = self._make_timer(delay, action)
        if timer is not None:
            timer.start()

    def records(self) -> list[Json]:
        with self._lock:
            return [delivery.to_json() for delivery in self._log]

    def wait_settled(self, count: int, timeout: float) -> list[Json]:
        """Wait until at least `count` deliveries are settled; returns the whole log."""
        with self._lock:
            self._lock.wait_for(
                lambda: sum(d.status in SETTLED for d in self._log) >= count, timeout
            )
            return [delivery.to_json() for delivery in self._log]

    def _cancel_pending(self) -> None:
        # Called with the lock held.
        self._generation += 1
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()
        self._held = None
        for delivery in self._log:
            if delivery.status not in SETTLED:
                delivery.status = "cancelled"
        self._lock.notify_all()

    def reset(self) -> None:
        with self._lock:
            self._cancel_pending()
            self._log.clear()

    def close(self) -> None:
        with self._lock:
            self._cancel_pending()
            self._closed = True
