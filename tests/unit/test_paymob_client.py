"""The PayMob client over a scripted transport (no sockets): auth, timeouts, retries, errors."""

from __future__ import annotations

import contextlib
import json
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from hypothesis import given, settings
from hypothesis import strategies as st
from requests.adapters import BaseAdapter

from coursepay.paymob.client import (
    TOKEN_LIFETIME_SECONDS,
    TOKEN_REFRESH_MARGIN_SECONDS,
    Intention,
    PaymobClient,
    PaymobKeys,
    PaymobRejected,
    PaymobUnavailable,
    redact_personal_data,
)

BASE = "https://accept.paymob.test"
KEYS = PaymobKeys(secret_key="sk_test_secret", api_key="api_key_test", public_key="pk_test/+1")
INTENTION_ANSWER = {
    "id": "pi_test_abc",
    "intention_order_id": 400000001,
    "client_secret": "csk_test_xyz",
    "status": "intended",
}
TRANSACTION = {"id": 500000001, "success": True, "order": {"id": 400000001}}


@dataclass
class Sent:
    method: str
    url: str
    headers: Mapping[str, str]
    body: Any
    timeout: Any


@dataclass
class ScriptedTransport(BaseAdapter):
    """Answers each request with the next scripted reply: (status, body) or an exception."""

    replies: deque[tuple[int, Any] | Exception] = field(default_factory=deque)
    sent: list[Sent] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__init__()

    def reply(self, *replies: tuple[int, Any] | Exception) -> ScriptedTransport:
        self.replies.extend(replies)
        return self

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        body = json.loads(request.body) if request.body else None
        self.sent.append(
            Sent(
                str(request.method),
                str(request.url),
                dict(request.headers),
                body,
                kwargs.get("timeout"),
            )
        )
        reply = self.replies.popleft()
        if isinstance(reply, Exception):
            raise reply
        status, payload = reply
        response = requests.Response()
        response.status_code = status
        response.url = str(request.url)
        response.request = request
        response._content = (
            payload.encode() if isinstance(payload, str) else json.dumps(payload).encode()
        )
        return response

    def close(self) -> None:
        pass

    def paths(self) -> list[str]:
        return [sent.url.removeprefix(BASE) for sent in self.sent]


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def transport() -> ScriptedTransport:
    return ScriptedTransport()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def client(transport: ScriptedTransport, clock: Clock, sleeps: list[float]) -> PaymobClient:
    session = requests.Session()
    session.mount("https://", transport)
    return PaymobClient(
        BASE + "/",
        lambda: KEYS,
        session=session,
        monotonic=clock,
        sleep=sleeps.append,
        jitter=lambda: 1.0,
    )


# --- the Intention API ------------------------------------------------------------------


def test_an_intention_is_created_with_the_secret_key_and_both_timeouts(client, transport):
    transport.reply((201, INTENTION_ANSWER))

    intention = client.create_intention({"amount": 150_000, "currency": "EGP"})

    assert intention == Intention("pi_test_abc", "400000001", "csk_test_xyz")
    (sent,) = transport.sent
    assert (sent.method, sent.url) == ("POST", f"{BASE}/v1/intention/")
    assert sent.headers["Authorization"] == "Token sk_test_secret"
    assert sent.body == {"amount": 150_000, "currency": "EGP"}
    assert sent.timeout == (3.0, 10.0)


def test_a_server_error_is_retried_with_exponential_backoff(client, transport, sleeps):
    transport.reply((502, "bad gateway"), (503, {"detail": "busy"}), (201, INTENTION_ANSWER))

    intention = client.create_intention({"amount": 1})

    assert intention.intention_id == "pi_test_abc"
    assert len(transport.sent) == 3
    assert sleeps == [0.5, 1.0]


def test_a_connection_error_is_retried(client, transport):
    transport.reply(requests.ConnectionError("reset"), (201, INTENTION_ANSWER))

    assert client.create_intention({"amount": 1}).order_id == "400000001"
    assert len(transport.sent) == 2


def test_a_persistent_outage_ends_as_unavailable_after_three_attempts(client, transport, sleeps):
    transport.reply(
        requests.ConnectTimeout("no route"), requests.ReadTimeout("slow"), (500, "boom")
    )

    with pytest.raises(PaymobUnavailable):
        client.create_intention({"amount": 1})

    assert len(transport.sent) == 3
    assert len(sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_client_error_is_never_retried_and_keeps_paymobs_details(client, transport, status):
    transport.reply((status, {"amount": ["A positive integer is required."]}))

    with pytest.raises(PaymobRejected) as rejected:
        client.create_intention({"amount": -1})

    assert rejected.value.status == status
    assert rejected.value.details == {"amount": ["A positive integer is required."]}
    assert len(transport.sent) == 1


def test_throttling_is_unavailability_and_is_not_retried_at_once(client, transport, sleeps):
    transport.reply((429, {"detail": "slow down"}))

    with pytest.raises(PaymobUnavailable):
        client.create_intention({"amount": 1})

    assert (len(transport.sent), sleeps) == (1, [])


@pytest.mark.parametrize("body", ["<html>maintenance</html>", [1, 2]])
def test_an_answer_that_is_not_a_json_object_is_unavailability(client, transport, body):
    transport.reply((201, body))

    with pytest.raises(PaymobUnavailable):
        client.create_intention({"amount": 1})


def test_an_intention_answer_without_its_order_id_is_not_accepted(client, transport):
    transport.reply((201, {**INTENTION_ANSWER, "intention_order_id": None}))

    with pytest.raises(PaymobUnavailable, match="intention_order_id"):
        client.create_intention({"amount": 1})


def test_the_checkout_url_carries_the_public_key_and_client_secret_encoded(client):
    url = client.checkout_url("csk test&1")

    assert url == (f"{BASE}/unifiedcheckout/?publicKey=pk_test%2F%2B1&clientSecret=csk%20test%261")


# --- inquiry and its auth token -----------------------------------------------------------


def test_an_inquiry_first_gets_an_auth_token_then_asks_with_it(client, transport):
    transport.reply((201, {"token": "tok-1"}), (200, TRANSACTION))

    answer = client.inquire_by_merchant_order("pay_1")

    assert answer == TRANSACTION
    token_request, inquiry = transport.sent
    assert (token_request.url, token_request.body) == (
        f"{BASE}/api/auth/tokens",
        {"api_key": "api_key_test"},
    )
    assert "Authorization" not in token_request.headers
    assert inquiry.url == f"{BASE}/api/ecommerce/orders/transaction_inquiry"
    assert inquiry.body == {"merchant_order_id": "pay_1"}
    assert inquiry.headers["Authorization"] == "Bearer tok-1"


def test_the_auth_token_is_reused_until_shortly_before_it_expires(client, transport, clock):
    transport.reply(
        (201, {"token": "tok-1"}),
        (200, TRANSACTION),
        (200, TRANSACTION),
        (201, {"token": "tok-2"}),
        (200, TRANSACTION),
    )
    client.inquire_by_merchant_order("pay_1")

    clock.now += TOKEN_LIFETIME_SECONDS - TOKEN_REFRESH_MARGIN_SECONDS - 1
    client.inquire_by_order("400000001")
    clock.now += 1
    client.inquire_by_order("400000001")

    assert transport.paths().count("/api/auth/tokens") == 2
    assert transport.sent[2].headers["Authorization"] == "Bearer tok-1"
    assert transport.sent[4].headers["Authorization"] == "Bearer tok-2"
    assert transport.sent[2].body == {"order_id": 400000001}


def test_a_token_paymob_no_longer_accepts_is_renewed_once(client, transport):
    transport.reply(
        (201, {"token": "tok-1"}),
        (401, {"detail": "Invalid or expired token."}),
        (201, {"token": "tok-2"}),
        (200, TRANSACTION),
    )

    assert client.inquire_by_merchant_order("pay_1") == TRANSACTION
    assert transport.sent[-1].headers["Authorization"] == "Bearer tok-2"


def test_a_second_refusal_after_renewing_the_token_is_final(client, transport):
    transport.reply(
        (201, {"token": "tok-1"}),
        (401, {"detail": "expired"}),
        (201, {"token": "tok-2"}),
        (401, {"detail": "expired"}),
    )

    with pytest.raises(PaymobRejected) as rejected:
        client.inquire_by_merchant_order("pay_1")

    assert rejected.value.status == 401
    assert len(transport.sent) == 4


def test_an_inquiry_for_an_order_without_transactions_answers_none(client, transport):
    transport.reply((201, {"token": "tok-1"}), (404, {"detail": "No transaction found."}))

    assert client.inquire_by_merchant_order("pay_never_paid") is None


def test_an_inquiry_during_an_outage_is_unavailable(client, transport):
    transport.reply((201, {"token": "tok-1"}), (503, "x"), (503, "x"), (503, "x"))

    with pytest.raises(PaymobUnavailable):
        client.inquire_by_merchant_order("pay_1")


def test_an_api_key_paymob_refuses_is_a_rejection(client, transport):
    transport.reply((401, {"detail": "Incorrect credentials."}))

    with pytest.raises(PaymobRejected) as rejected:
        client.inquire_by_merchant_order("pay_1")

    assert rejected.value.status == 401
    assert transport.paths() == ["/api/auth/tokens"]


def test_a_transaction_is_fetched_by_id_and_a_missing_one_is_none(client, transport):
    transport.reply((201, {"token": "tok-1"}), (200, TRANSACTION), (404, {"detail": "Not found."}))

    assert client.get_transaction("500000001") == TRANSACTION
    assert client.get_transaction("999") is None
    assert transport.paths()[1:] == [
        "/api/acceptance/transactions/500000001",
        "/api/acceptance/transactions/999",
    ]


# --- refund and void move money: repeated only when the request never left -----------------


def test_a_refund_uses_the_secret_key(client, transport):
    transport.reply((200, {"id": 500000002, "is_refund": True}))

    client.refund("500000001", 50_000)

    (sent,) = transport.sent
    assert sent.url == f"{BASE}/api/acceptance/void_refund/refund"
    assert sent.headers["Authorization"] == "Token sk_test_secret"
    assert sent.body == {"transaction_id": 500000001, "amount_cents": 50_000}


@pytest.mark.parametrize(
    "failure", [(500, "boom"), requests.ReadTimeout("slow"), requests.ConnectionError("reset")]
)
def test_a_refund_that_may_have_reached_paymob_is_not_sent_again(client, transport, failure):
    transport.reply(failure, (200, {"id": 1}))

    with pytest.raises(PaymobUnavailable):
        client.refund("500000001", 50_000)

    assert len(transport.sent) == 1


def test_a_void_that_never_connected_is_sent_again(client, transport):
    transport.reply(requests.ConnectTimeout("no route"), (200, {"id": 500000003, "is_void": True}))

    assert client.void("500000001") == {"id": 500000003, "is_void": True}
    assert len(transport.sent) == 2


def test_the_keys_never_show_in_a_repr():
    assert "sk_test_secret" not in repr(KEYS)
    assert "api_key_test" not in repr(KEYS)


# --- a call's time budget ---------------------------------------------------------------------


@pytest.fixture
def budgeted(transport: ScriptedTransport, clock: Clock, sleeps: list[float]) -> PaymobClient:
    session = requests.Session()
    session.mount("https://", transport)

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        clock.now += seconds

    return PaymobClient(
        BASE,
        lambda: KEYS,
        session=session,
        monotonic=clock,
        sleep=sleep,
        jitter=lambda: 1.0,
        call_budget_seconds=8.0,
    )


def test_reads_are_shortened_to_what_is_left_of_the_budget(budgeted, transport, clock):
    transport.reply((503, "busy"), (201, INTENTION_ANSWER))
    original_send = transport.send

    def slow_send(request, **kwargs):
        clock.now += 2.0
        return original_send(request, **kwargs)

    transport.send = slow_send

    budgeted.create_intention({"amount": 1})

    first, second = (sent.timeout for sent in transport.sent)
    assert first == (3.0, 5.0)  # 8 s budget less the connect timeout
    assert second == (3.0, 2.5)  # 2 s spent and 0.5 s backed off


def test_no_retry_starts_that_cannot_finish_within_the_budget(budgeted, transport, clock, sleeps):
    transport.reply(requests.ReadTimeout("slow"), (201, INTENTION_ANSWER))
    original_send = transport.send

    def slow_send(request, **kwargs):
        clock.now += 5.0  # the read timed out after five seconds
        return original_send(request, **kwargs)

    transport.send = slow_send

    with pytest.raises(PaymobUnavailable):
        budgeted.create_intention({"amount": 1})

    assert (len(transport.sent), sleeps) == (1, [])


# --- one deadline for the whole public call: the token, its renewal and every attempt ----------


@dataclass(frozen=True)
class Slow:
    """A reply that takes time: `connect` seconds to connect, `answer` more to answer."""

    connect: float
    answer: float
    reply: tuple[int, Any]


HANGS = Slow(0.0, float("inf"), (200, {}))  # connects, then never answers


class TimedTransport(ScriptedTransport):
    """Spends the clock like a socket would: a step longer than its timeout times out at it."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock
        self.steps: deque[Slow] = deque()
        self.left_at_send: list[float] = []
        self.deadline = 0.0

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        connect_timeout, read_timeout = kwargs["timeout"]
        self.left_at_send.append(self.deadline - self.clock.now)
        step = self.steps.popleft() if self.steps else HANGS
        failure: Exception | None = None
        if step.connect > connect_timeout:
            self.clock.now += connect_timeout
            failure = requests.ConnectTimeout("no connection in time")
        elif step.answer > read_timeout:
            self.clock.now += step.connect + read_timeout
            failure = requests.ReadTimeout("no answer in time")
        else:
            self.clock.now += step.connect + step.answer
        # The parent records the request and answers with (or raises) the next reply.
        self.replies.appendleft(failure or step.reply)
        return super().send(request, **kwargs)


BUDGET = 8.0


def timed_client(*steps: Slow) -> tuple[PaymobClient, TimedTransport, Clock]:
    clock = Clock()
    transport = TimedTransport(clock)
    transport.steps.extend(steps)
    transport.deadline = clock.now + BUDGET
    session = requests.Session()
    session.mount("https://", transport)

    def sleep(seconds: float) -> None:
        clock.now += seconds

    client = PaymobClient(
        BASE,
        lambda: KEYS,
        session=session,
        monotonic=clock,
        sleep=sleep,
        jitter=lambda: 1.0,
        call_budget_seconds=BUDGET,
    )
    return client, transport, clock


def test_a_slow_token_fetch_leaves_the_inquiry_only_what_is_left_of_the_budget():
    # Given a token that takes 5 s to arrive, then an inquiry PayMob never answers
    client, transport, clock = timed_client(Slow(1.0, 4.0, (201, {"token": "tok-1"})), HANGS)
    started = clock.now

    # When PayMob is asked
    with pytest.raises(PaymobUnavailable):
        client.inquire_by_merchant_order("pay_1")

    # Then the token and the inquiry shared one budget: the inquiry got the 3 s left
    assert clock.now - started <= BUDGET
    token_timeout, inquiry_timeout = (sent.timeout for sent in transport.sent)
    assert token_timeout == (3.0, 5.0)
    assert sum(inquiry_timeout) == pytest.approx(3.0)
    assert inquiry_timeout == pytest.approx((2.0, 1.0))


def test_renewing_a_refused_token_spends_the_same_budget():
    # Given a cached token PayMob refuses after 3 s, and a renewal that would take 4.5 s
    client, transport, clock = timed_client(
        Slow(0.0, 0.0, (201, {"token": "tok-1"})), Slow(0.0, 0.0, (200, TRANSACTION))
    )
    client.inquire_by_merchant_order("pay_1")
    transport.steps.extend(
        [
            Slow(0.0, 3.0, (401, {"detail": "expired"})),
            Slow(0.0, 4.5, (201, {"token": "tok-2"})),
            HANGS,
        ]
    )
    transport.deadline = clock.now + BUDGET
    started = clock.now

    # When PayMob is asked again
    with pytest.raises(PaymobUnavailable):
        client.inquire_by_merchant_order("pay_1")

    # Then the renewal had only the 5 s the inquiry left, and the call ended within budget
    assert clock.now - started <= BUDGET
    assert transport.paths()[-2:] == [
        "/api/ecommerce/orders/transaction_inquiry",
        "/api/auth/tokens",
    ]
    assert transport.sent[-1].timeout == (3.0, 2.0)


def test_nothing_is_sent_once_the_budget_is_spent():
    # Given a token that takes 7.3 s: less than a second is left for the inquiry
    client, transport, clock = timed_client(Slow(2.5, 4.8, (201, {"token": "tok-1"})))
    started = clock.now

    with pytest.raises(PaymobUnavailable, match="budget"):
        client.inquire_by_merchant_order("pay_1")

    assert transport.paths() == ["/api/auth/tokens"]
    assert clock.now - started == pytest.approx(7.3)


def test_the_connect_timeout_is_cut_too_when_little_is_left():
    # Given a token that takes 6.5 s, and an inquiry PayMob never answers
    client, transport, _ = timed_client(Slow(2.0, 4.5, (201, {"token": "tok-1"})), HANGS)

    with pytest.raises(PaymobUnavailable):
        client.inquire_by_merchant_order("pay_1")

    # Then the 1.5 s left are shared by the connection and the read
    connect, read = transport.sent[-1].timeout
    assert (connect, read) == pytest.approx((0.75, 0.75))


steps = st.builds(
    Slow,
    st.sampled_from([0.0, 0.2, 1.0, 2.5, 4.0]),
    st.sampled_from([0.0, 0.5, 2.0, 4.5, 7.0, float("inf")]),
    st.sampled_from(
        [
            (201, {"token": "tok"}),
            (200, TRANSACTION),
            (401, {"detail": "expired"}),
            (503, "busy"),
            (404, {"detail": "none"}),
        ]
    ),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(steps, max_size=8), st.booleans())
def test_a_call_never_outlasts_its_budget(script: list[Slow], cached_token: bool) -> None:
    # Given any mix of slow, hanging, failing and refusing answers, with or without a token
    client, transport, clock = timed_client()
    if cached_token:
        transport.steps.append(Slow(0.0, 0.0, (201, {"token": "tok-0"})))
        client._auth_token(False, None)
    transport.steps.extend(script)
    transport.deadline = clock.now + BUDGET
    started = clock.now

    # When an inquiry is made, whatever it ends with
    with contextlib.suppress(PaymobUnavailable, PaymobRejected):
        client.inquire_by_merchant_order("pay_1")

    # Then it ended within the budget, and no request was given more time than was left
    assert clock.now - started <= BUDGET + 1e-9
    sent = transport.sent[1:] if cached_token else transport.sent
    lefts = transport.left_at_send[1:] if cached_token else transport.left_at_send
    for request, left in zip(sent, lefts, strict=True):
        assert sum(request.timeout) <= left + 1e-9


# --- PayMob's refusals may echo the student's data: it never reaches logs or audits ------------

STUDENT_BILLING = {
    "first_name": "Nour",
    "last_name": "El-Sherif",
    "email": "nour.elsherif@mail.example",
    "phone_number": "01001234567",
    "city": "NA",
}
INTENTION_BODY = {
    "amount": 150_000,
    "billing_data": STUDENT_BILLING,
    "customer": {"first_name": "Nour", "last_name": "El-Sherif", "email": STUDENT_BILLING["email"]},
}
PERSONAL = ("Nour", "El-Sherif", "nour.elsherif", "mail.example", "1001234567")


def test_a_refusal_keeps_status_fields_and_messages_but_not_the_students_data(
    client, transport, caplog
):
    # Given PayMob refusing the intention and echoing the billing data it was sent
    transport.reply(
        (
            400,
            {
                "billing_data": {
                    "email": ["Enter a valid email address."],
                    "phone_number": ["'+201001234567' is not a valid phone number."],
                    "first_name": "Nour",
                },
                "billing_data.last_name": "El-Sherif",
                "customer": {"email": "NOUR.ELSHERIF@mail.example"},
                "detail": "No intention for Nour El-Sherif <nour.elsherif@mail.example>",
                "amount": ["A positive integer is required."],
            },
        )
    )

    with pytest.raises(PaymobRejected) as rejected:
        client.create_intention(INTENTION_BODY)

    # Then the status, the field names and PayMob's messages stay, the student's data does not
    assert rejected.value.status == 400
    assert rejected.value.details == {
        "billing_data": {
            "email": ["Enter a valid email address."],
            "phone_number": ["'<redacted>' is not a valid phone number."],
            "first_name": "<redacted>",
        },
        "billing_data.last_name": "<redacted>",
        "customer": {"email": "<redacted>"},
        "detail": "No intention for <redacted> <redacted> <<redacted>>",
        "amount": ["A positive integer is required."],
    }
    (refused,) = [r for r in caplog.records if r.getMessage() == "paymob refused"]
    logged = str(refused.__dict__)
    assert "Enter a valid email address." in logged
    assert not [value for value in PERSONAL if value.lower() in logged.lower()]


def test_a_refusal_that_is_not_json_is_redacted_before_it_is_cut(client, transport):
    transport.reply((400, "x" * 480 + " nour.elsherif@mail.example"))

    with pytest.raises(PaymobRejected) as rejected:
        client.create_intention(INTENTION_BODY)

    assert "nour" not in rejected.value.details
    assert rejected.value.details.startswith("x" * 480)


def test_redaction_is_idempotent_and_leaves_other_answers_alone():
    details = {"amount": ["A positive integer is required."], "integration": ["404 4621457"]}

    assert redact_personal_data(details, INTENTION_BODY) == details
    once = redact_personal_data({"billing_data": {"phone_number": "+20 100 123 4567"}})
    assert redact_personal_data(once) == once == {"billing_data": {"phone_number": "<redacted>"}}
