"""PayMob's HTTP APIs (intention, inquiry, refund, void): timeouts, retries and typed errors."""

from __future__ import annotations

import random
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any
from urllib.parse import quote

import requests

from coursepay.observability import count, logger

CONNECT_TIMEOUT_SECONDS = 3.0
READ_TIMEOUT_SECONDS = 10.0
MAX_ATTEMPTS = 3
BACKOFF_BASE_SECONDS = 0.5
# With a time budget: a retry starts only if, after its longest back-off, a full connect
# timeout and this much reading still fit; and no attempt starts with less than
# MIN_ATTEMPT_SECONDS left (PayMob cannot answer in less, and the caller must answer).
MIN_READ_TIMEOUT_SECONDS = 1.0
MIN_ATTEMPT_SECONDS = 1.0
# PayMob's auth tokens live one hour; renewing five minutes early means a token is never
# sent in its last seconds, when a slow request could outlive it.
TOKEN_LIFETIME_SECONDS = 3600.0
TOKEN_REFRESH_MARGIN_SECONDS = 300.0
USER_AGENT = "course-payments/1.0"
_MAX_DETAIL_CHARS = 500
REDACTED = "<redacted>"
# Request fields that carry the student's personal data (names, email, phone).
_PERSONAL_KEYS = frozenset({"billing_data", "customer"})


class PaymobError(Exception):
    """PayMob did not do what was asked."""


class PaymobUnavailable(PaymobError):
    """PayMob could not be reached, timed out, failed (5xx) or throttled us: try again later."""


class PaymobRejected(PaymobError):
    """PayMob answered and refused (4xx): retrying the same request will not help."""

    def __init__(self, status: int, details: Any) -> None:
        super().__init__(f"PayMob refused the request (HTTP {status})")
        self.status = status
        self.details = details


@dataclass(frozen=True, slots=True)
class PaymobKeys:
    """What the client authenticates with. The secret and API keys never leave the server."""

    secret_key: str
    api_key: str
    public_key: str

    def __repr__(self) -> str:
        return "PaymobKeys(<redacted>)"


class _Retry(Enum):
    # Safe to repeat: reads, the inquiry, and intention creation (its special_reference is
    # unique, so a repeat cannot create a second payable order).
    IDEMPOTENT = "idempotent"
    # Moves money (refund, void): repeated only when the request never reached PayMob.
    UNSENT_ONLY = "unsent_only"


@dataclass(frozen=True, slots=True)
class Intention:
    """What checkout keeps of PayMob's answer to a new intention."""

    intention_id: str
    order_id: str
    client_secret: str


class PaymobClient:
    """One client per container: one HTTP session (kept-alive connections) and one auth token.

    `keys` is called on every request so a rotated secret is picked up from the caller's
    cache; the session, clock and sleep are injectable for tests.

    `call_budget_seconds` bounds one public call (create_intention, an inquiry, a refund...)
    from its start to its answer, so an API function answers before its own timeout (and
    API Gateway's 30 s) instead of being cut off mid-request. The call fixes one deadline
    and everything it does runs against it: fetching the auth token, renewing a token PayMob
    refused (401), every attempt and every back-off. Each request's connect and read
    timeouts are cut so that their sum fits in what is left; a retry starts only if its
    longest back-off plus a full connect timeout and a second of reading still fit; with less
    than MIN_ATTEMPT_SECONDS left nothing is sent and the call is PaymobUnavailable.
    (requests' read timeout bounds each wait for bytes, not the whole body: a server that
    trickles an answer could still outlast it. PayMob's answers are small.)
    """

    def __init__(
        self,
        base_url: str,
        keys: Callable[[], PaymobKeys],
        *,
        session: requests.Session | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base_seconds: float = BACKOFF_BASE_SECONDS,
        timeout: tuple[float, float] = (CONNECT_TIMEOUT_SECONDS, READ_TIMEOUT_SECONDS),
        call_budget_seconds: float | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.base_url = base_url.rstrip("/")
        self._keys = keys
        self._session = session if session is not None else requests.Session()
        self._session.headers.update({"User-Agent": USER_AGENT, "Accept": "application/json"})
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base_seconds
        self._timeout = timeout
        self._budget = call_budget_seconds
        self._monotonic = monotonic
        self._sleep = sleep
        self._jitter = jitter
        self._token: str | None = None
        self._token_expires = 0.0
        self._token_lock = threading.Lock()

    # --- the Intention API (Token auth) -----------------------------------------------

    def create_intention(self, body: Mapping[str, Any]) -> Intention:
        """POST /v1/intention/; the answer's `id`, `intention_order_id` and `client_secret`."""
        answer = self._call(
            "create_intention",
            "POST",
            "/v1/intention/",
            json=body,
            auth=self._token_auth,
            retry=_Retry.IDEMPOTENT,
            deadline=self._deadline(),
        )
        try:
            return Intention(
                intention_id=_required_text(answer, "id"),
                order_id=_required_text(answer, "intention_order_id"),
                client_secret=_required_text(answer, "client_secret"),
            )
        except KeyError as missing:
            raise PaymobUnavailable(f"intention answer lacks {missing}") from None

    def checkout_url(self, client_secret: str) -> str:
        """PayMob's hosted checkout page for an intention; the public key may reach a browser."""
        public_key = self._keys().public_key
        return (
            f"{self.base_url}/unifiedcheckout/?publicKey={quote(public_key, safe='')}"
            f"&clientSecret={quote(client_secret, safe='')}"
        )

    # --- inquiry (Bearer auth) ------------------------------------------------------------

    def inquire_by_merchant_order(self, merchant_order_id: str) -> dict[str, Any] | None:
        """The latest transaction of the order we created with this special_reference.

        None when PayMob knows no transaction for it (404): nobody has paid or tried to.
        """
        return self._inquire({"merchant_order_id": merchant_order_id})

    def inquire_by_order(self, order_id: str) -> dict[str, Any] | None:
        """The latest transaction of a PayMob order; None when it has none."""
        return self._inquire({"order_id": int(order_id)})

    def get_transaction(self, transaction_id: str) -> dict[str, Any] | None:
        try:
            return self._call(
                "get_transaction",
                "GET",
                f"/api/acceptance/transactions/{quote(transaction_id, safe='')}",
                auth=self._bearer_auth,
                retry=_Retry.IDEMPOTENT,
                deadline=self._deadline(),
            )
        except PaymobRejected as rejected:
            if rejected.status == 404:
                return None
            raise

    def _inquire(self, body: dict[str, Any]) -> dict[str, Any] | None:
        try:
            return self._call(
                "transaction_inquiry",
                "POST",
                "/api/ecommerce/orders/transaction_inquiry",
                json=body,
                auth=self._bearer_auth,
                retry=_Retry.IDEMPOTENT,
                deadline=self._deadline(),
            )
        except PaymobRejected as rejected:
            if rejected.status == 404:
                return None
            raise

    # --- refund and void (Token auth) -------------------------------------------------

    def refund(self, transaction_id: str, amount_cents: int) -> dict[str, Any]:
        return self._call(
            "refund",
            "POST",
            "/api/acceptance/void_refund/refund",
            json={"transaction_id": int(transaction_id), "amount_cents": amount_cents},
            auth=self._token_auth,
            retry=_Retry.UNSENT_ONLY,
            deadline=self._deadline(),
        )

    def void(self, transaction_id: str) -> dict[str, Any]:
        return self._call(
            "void",
            "POST",
            "/api/acceptance/void_refund/void",
            json={"transaction_id": int(transaction_id)},
            auth=self._token_auth,
            retry=_Retry.UNSENT_ONLY,
            deadline=self._deadline(),
        )

    # --- authentication -------------------------------------------------------------

    def _token_auth(self, renew: bool, deadline: float | None) -> str:
        return f"Token {self._keys().secret_key}"

    def _bearer_auth(self, renew: bool, deadline: float | None) -> str:
        return f"Bearer {self._auth_token(renew, deadline)}"

    def _auth_token(self, renew: bool, deadline: float | None) -> str:
        """The cached token, or a new one fetched within the caller's deadline."""
        wait = -1.0 if deadline is None else max(0.0, deadline - self._monotonic())
        if not self._token_lock.acquire(timeout=wait):
            count("PaymobUnavailable")
            raise PaymobUnavailable("auth_token: out of time waiting for another renewal")
        try:
            now = self._monotonic()
            if renew or self._token is None or now >= self._token_expires:
                answer = self._call(
                    "auth_token",
                    "POST",
                    "/api/auth/tokens",
                    json={"api_key": self._keys().api_key},
                    auth=None,
                    retry=_Retry.IDEMPOTENT,
                    deadline=deadline,
                )
                try:
                    self._token = _required_text(answer, "token")
                except KeyError:
                    raise PaymobUnavailable("auth answer lacks a token") from None
                self._token_expires = now + TOKEN_LIFETIME_SECONDS - TOKEN_REFRESH_MARGIN_SECONDS
                count("PaymobAuthTokenIssued")
            return self._token
        finally:
            self._token_lock.release()

    # --- the one request path -------------------------------------------------------

    def _call(
        self,
        operation: str,
        method: str,
        path: str,
        *,
        auth: Callable[[bool, float | None], str] | None,
        retry: _Retry,
        deadline: float | None,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send with retries on 5xx and connection errors (never on 4xx); parse the JSON object.

        A Bearer token PayMob no longer accepts (401) is renewed once, then the request is
        sent again; that retry is not counted against the attempts. Everything, the token
        included, runs against `deadline` (the public call's; None: no budget).
        """
        url = self.base_url + path
        renewed = False
        attempt = 0
        while True:
            attempt += 1
            headers = {} if auth is None else {"Authorization": auth(False, deadline)}
            timeout = self._timeouts(operation, deadline)
            try:
                response = self._session.request(
                    method, url, json=json, headers=headers, timeout=timeout
                )
            except requests.RequestException as exc:
                if _worth_retrying(exc, retry) and self._may_retry(deadline, attempt):
                    self._back_off(operation, attempt, error=type(exc).__name__)
                    continue
                count("PaymobUnavailable")
                logger.warning(
                    "paymob unreachable",
                    operation=operation,
                    attempts=attempt,
                    error=type(exc).__name__,
                )
                raise PaymobUnavailable(f"{operation}: {type(exc).__name__}") from None
            status = response.status_code
            if status == 401 and auth == self._bearer_auth and not renewed:
                renewed = True
                attempt -= 1
                self._auth_token(True, deadline)
                continue
            if status >= 500:
                if retry is _Retry.IDEMPOTENT and self._may_retry(deadline, attempt):
                    self._back_off(operation, attempt, status=status)
                    continue
                count("PaymobUnavailable")
                logger.warning(
                    "paymob failed", operation=operation, status=status, attempts=attempt
                )
                raise PaymobUnavailable(f"{operation}: HTTP {status}")
            if status == 429:
                # Throttled: PayMob is fine but busy; the caller's next run is the retry.
                count("PaymobThrottled")
                raise PaymobUnavailable(f"{operation}: throttled")
            if status >= 400:
                details = _details(response, json)
                if status != 404:
                    count("PaymobRejected")
                    logger.warning(
                        "paymob refused", operation=operation, status=status, details=details
                    )
                raise PaymobRejected(status, details)
            return _json_object(operation, response)

    def _deadline(self) -> float | None:
        """The deadline of a public call that starts now: one for everything it does."""
        return None if self._budget is None else self._monotonic() + self._budget

    def _timeouts(self, operation: str, deadline: float | None) -> tuple[float, float]:
        """Connect and read timeouts whose sum fits in what is left before the deadline.

        The read keeps at least MIN_READ_TIMEOUT_SECONDS while the connect can spare it;
        when even that does not fit, the two share what is left.
        """
        connect, read = self._timeout
        if deadline is None:
            return connect, read
        left = deadline - self._monotonic()
        if left < MIN_ATTEMPT_SECONDS:
            count("PaymobUnavailable")
            logger.warning("paymob call out of time", operation=operation, left=left)
            raise PaymobUnavailable(f"{operation}: the call's time budget is spent")
        connect = min(connect, max(left - MIN_READ_TIMEOUT_SECONDS, left / 2))
        return connect, min(read, left - connect)

    def _may_retry(self, deadline: float | None, attempt: int) -> bool:
        if attempt >= self._max_attempts:
            return False
        if deadline is None:
            return True
        # Room for the longest back-off and a connection, with a second of reading at least.
        worst_wait = self._backoff_base * 2.0 ** (attempt - 1) + self._timeout[0]
        return self._monotonic() + worst_wait + MIN_READ_TIMEOUT_SECONDS <= deadline

    def _back_off(self, operation: str, attempt: int, **why: Any) -> None:
        # Equal jitter: many containers retrying after one outage do not arrive together.
        delay = self._backoff_base * 2 ** (attempt - 1) * (0.5 + self._jitter() / 2)
        count("PaymobRetry")
        logger.info("paymob retry", operation=operation, attempt=attempt, delay=delay, **why)
        self._sleep(delay)


def _worth_retrying(exc: requests.RequestException, retry: _Retry) -> bool:
    if retry is _Retry.IDEMPOTENT:
        return isinstance(exc, requests.ConnectionError | requests.Timeout)
    # A connect timeout means no byte reached PayMob; anything later may have moved money.
    return isinstance(exc, requests.ConnectTimeout)


def _json_object(operation: str, response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        raise PaymobUnavailable(f"{operation}: the answer is not JSON") from None
    if not isinstance(body, dict):
        raise PaymobUnavailable(f"{operation}: the answer is not a JSON object")
    return body


def _details(response: requests.Response, sent: Mapping[str, Any] | None) -> Any:
    """PayMob's error body (per-field messages), bounded and without the student's personal
    data: it lands in logs and audit entries, and PayMob may echo what we sent."""
    try:
        body = response.json()
    except ValueError:
        return redact_personal_data(response.text, sent)[:_MAX_DETAIL_CHARS]
    body = redact_personal_data(body, sent)
    text = str(body)
    return body if len(text) <= _MAX_DETAIL_CHARS else text[:_MAX_DETAIL_CHARS]


# --- personal data in PayMob's error answers -------------------------------------------------

_EMAIL = re.compile(r"[^\s@'\"<>,;:()\[\]{}]+@[^\s@'\"<>,;:()\[\]{}]+")
_PHONE_LIKE = re.compile(r"\+?\d(?:[\s\-.]?\d){6,}")
_PHONE_CORE_DIGITS = 9  # a national number without its country or trunk prefix


def redact_personal_data(details: Any, sent: Mapping[str, Any] | None = None) -> Any:
    """PayMob's error details with what they may echo of the student's data blanked out.

    Kept: the structure, every key (PayMob's field names) and its messages. Blanked, as
    REDACTED: anywhere, an email address and any value we sent in `billing_data` or
    `customer` (word for word, any case; a phone number also by its last nine digits, which
    survive PayMob adding a country code); inside a `billing_data` or `customer` part of the
    answer (`billing_data.email` keys included), any bare value of a field (where an error
    holds a list of messages) and any run of seven digits or more. Idempotent; never raises.
    """
    patterns = _sent_patterns(sent)
    return _redact(details, patterns, personal=False)


def _redact(node: Any, patterns: list[re.Pattern[str]], *, personal: bool) -> Any:
    if isinstance(node, Mapping):
        redacted: dict[str, Any] = {}
        for key, value in node.items():
            name = str(key)
            inner = personal or _is_personal_key(name)
            if inner and name not in _PERSONAL_KEYS and _is_bare(value):
                # A field's value (an error would hold a list of messages about it). Under
                # `billing_data` itself a bare text can only be a message: it is scrubbed.
                redacted[_scrub(name, patterns, personal=inner)] = REDACTED
            else:
                redacted[_scrub(name, patterns, personal=inner)] = _redact(
                    value, patterns, personal=inner
                )
        return redacted
    if isinstance(node, list | tuple):
        return [_redact(item, patterns, personal=personal) for item in node]
    if isinstance(node, str):
        return _scrub(node, patterns, personal=personal)
    return node


def _is_bare(value: Any) -> bool:
    return value is not None and not isinstance(value, Mapping | list | tuple)


def _is_personal_key(name: str) -> bool:
    return name.split(".", 1)[0].split("[", 1)[0] in _PERSONAL_KEYS


def _scrub(text: str, patterns: list[re.Pattern[str]], *, personal: bool) -> str:
    for pattern in patterns:
        text = pattern.sub(REDACTED, text)
    text = _EMAIL.sub(REDACTED, text)
    if personal:
        text = _PHONE_LIKE.sub(REDACTED, text)
    return text


def _sent_patterns(sent: Mapping[str, Any] | None) -> list[re.Pattern[str]]:
    """Patterns for the personal values of a request body, longest first."""
    if not isinstance(sent, Mapping):
        return []
    values: set[str] = set()
    cores: set[str] = set()
    for key in _PERSONAL_KEYS:
        part = sent.get(key)
        if not isinstance(part, Mapping):
            continue
        for value in part.values():
            personal = isinstance(value, str | int) and not isinstance(value, bool)
            text = str(value).strip() if personal else ""
            if len(text) < 2 or text.upper() == "NA":
                continue
            values.add(text)
            digits = re.sub(r"\D", "", text)
            if len(digits) >= _PHONE_CORE_DIGITS and len(digits) >= len(text) - 4:
                cores.add(digits[-_PHONE_CORE_DIGITS:])
    patterns = [
        re.compile(rf"(?<!\w){re.escape(value)}(?!\w)", re.IGNORECASE)
        for value in sorted(values, key=len, reverse=True)
    ]
    # The whole digit run around a phone number's core: `+20` and a trunk `0` included.
    patterns.extend(re.compile(rf"\+?\d*{core}\d*") for core in sorted(cores))
    return patterns


def _required_text(answer: Mapping[str, Any], key: str) -> str:
    value = answer.get(key)
    if value is None or isinstance(value, bool) or str(value) == "":
        raise KeyError(key)
    return str(value)
