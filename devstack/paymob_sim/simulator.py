"""PaymobSimulator: the app on a threaded loopback server, embeddable in tests or standalone."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import urlencode

from werkzeug.serving import WSGIRequestHandler

from devstack.paymob_sim.account import MerchantAccount
from devstack.paymob_sim.app import SimulatorApp
from devstack.paymob_sim.callbacks import CallbackDispatcher
from devstack.paymob_sim.config import SimulatorConfig, SwitchBoard
from devstack.paymob_sim.intentions import Json
from devstack.paymob_sim.transactions import CardPayment, WalletPayment
from devstack.servers import QuietRequestHandler, ServerThread


def _utc_now() -> datetime:
    return datetime.now(UTC)


class PaymobSimulator:
    """PayMob for the local stack and the tests.

    `start()` binds 127.0.0.1 (port 0 picks a free one) and serves from a daemon thread;
    `stop()` ends the server and cancels pending callback timers. The properties give
    in-process tests the state behind the HTTP API.
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        clock: Callable[[], datetime] = _utc_now,
        log_requests: bool = False,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.switchboard = SwitchBoard(self.config)
        self._log_requests = log_requests
        self.account = MerchantAccount(self.config, clock)
        self.dispatcher = CallbackDispatcher(
            hmac_secret=self.config.hmac_secret,
            switches=self.switchboard,
            retries=self.config.callback_retries,
            backoff_seconds=self.config.retry_backoff_seconds,
            timeout_seconds=self.config.callback_timeout_seconds,
            now=self.account.now,
        )
        self.app = SimulatorApp(
            self.config, self.account, self.dispatcher, self.switchboard, lambda: self.url
        )
        self._server: ServerThread | None = None
        self._stopped = False

    # Lifecycle

    def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve in a daemon thread; returns the bound port. Raises OSError if it is taken."""
        if self._server is not None or self._stopped:
            raise RuntimeError("a simulator starts once; create a new one after stop()")
        handler = WSGIRequestHandler if self._log_requests else QuietRequestHandler
        self._server = ServerThread(
            self.app, name="paymob-sim", host=host, port=port, request_handler=handler
        )
        return self._server.port

    def stop(self) -> None:
        """Stop serving and cancel delayed or held callbacks; safe to call twice."""
        self._stopped = True
        self.dispatcher.close()
        if self._server is not None:
            self._server.stop()

    def __enter__(self) -> PaymobSimulator:
        if self._server is None:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the simulator has not been started")
        return self._server.port

    @property
    def url(self) -> str:
        """config.base_url if set, else http://<host>:<port> of the running server."""
        if self.config.base_url:
            return self.config.base_url.rstrip("/")
        if self._server is None:
            raise RuntimeError("the simulator has not been started")
        return self._server.url

    def checkout_url(self, client_secret: str) -> str:
        query = urlencode({"publicKey": self.config.public_key, "clientSecret": client_secret})
        return f"{self.url}/unifiedcheckout/?{query}"

    # In-process access for tests

    @property
    def intentions(self) -> list[Json]:
        """Every intention: its create response plus the current status and transactions."""
        return [
            {
                **self.app.intention_json(intention),
                "notification_url": intention.request.notification_url,
                "redirection_url": intention.request.redirection_url,
                "transaction_ids": list(intention.transaction_ids),
            }
            for intention in self.account.intentions()
        ]

    @property
    def transactions(self) -> list[Json]:
        """Every transaction object, payments and refund/void children, in creation order."""
        return self.account.transactions()

    @property
    def callbacks(self) -> list[Json]:
        """The delivery log: each callback, its status and every attempt."""
        return self.dispatcher.records()

    def wait_for_callbacks(self, count: int, timeout: float = 5.0) -> list[Json]:
        """The delivery log once `count` callbacks have settled (or the timeout passed)."""
        return self.dispatcher.wait_settled(count, timeout)

    @property
    def switches(self) -> Json:
        return self.switchboard.current.to_json()

    def set_switches(self, **changes: Any) -> Json:
        """callback_mode, delay_seconds, inquiry_mode; raises ConfigError for a bad value."""
        return self.switchboard.update(changes).to_json()

    def pay(
        self, client_secret: str, payment: CardPayment | WalletPayment
    ) -> tuple[Json, str | None]:
        """Exactly what the checkout form does; returns the transaction and the redirect URL."""
        return self.app.pay(client_secret, payment)

    def reset(self) -> None:
        """Forget intentions, transactions, tokens and callbacks; switches back to the config."""
        self.app.reset()
