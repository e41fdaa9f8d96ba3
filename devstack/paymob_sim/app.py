"""The simulator's HTTP surface: PayMob's routes, the checkout page and the /_sim control API."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Iterable
from typing import Any

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from devstack.paymob_sim.account import MerchantAccount
from devstack.paymob_sim.callbacks import CallbackDispatcher
from devstack.paymob_sim.checkout_page import checkout_page, message_page, result_page
from devstack.paymob_sim.config import ConfigError, SimulatorConfig, SwitchBoard
from devstack.paymob_sim.intentions import ApiError, Intention, Json, parse_intention_request
from devstack.paymob_sim.transactions import (
    SANDBOX_CVV,
    SANDBOX_EXPIRY,
    TEST_WALLET_PIN,
    CardPayment,
    WalletPayment,
    parse_card,
    parse_wallet,
    signed_redirect_url,
)

type Handler = Callable[..., Response]

_MAX_BODY = 1024 * 1024


def json_response(body: object, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def html_response(page: str, status: int = 200) -> Response:
    return Response(page, status=status, mimetype="text/html")


def _json_body(request: Request) -> Any:
    body = request.get_json(silent=True)
    if body is None:
        raise ApiError(400, {"detail": "JSON parse error: expected a JSON body."})
    return body


def _credential(request: Request, scheme: str) -> str | None:
    header = request.headers.get("Authorization", "")
    prefix = f"{scheme} "
    return header[len(prefix) :].strip() if header.startswith(prefix) else None


def _int_field(body: Json, name: str) -> int:
    value = body.get(name)
    if isinstance(value, str) and value.isdigit():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    message = "This field is required." if value is None else "A valid integer is required."
    raise ApiError(400, {name: [message]})


class SimulatorApp:
    """A WSGI application over one merchant account and one callback dispatcher."""

    def __init__(
        self,
        config: SimulatorConfig,
        account: MerchantAccount,
        dispatcher: CallbackDispatcher,
        switches: SwitchBoard,
        base_url: Callable[[], str],
    ) -> None:
        self.config = config
        self.account = account
        self.dispatcher = dispatcher
        self.switches = switches
        self._base_url = base_url
        self._routes: dict[str, Handler] = {
            "create_intention": self.create_intention,
            "retrieve_intention": self.retrieve_intention,
            "checkout": self.checkout,
            "checkout_pay": self.checkout_pay,
            "auth_token": self.auth_token,
            "get_transaction": self.get_transaction,
            "transaction_inquiry": self.transaction_inquiry,
            "refund": self.refund,
            "void": self.void,
            "sim_config": self.sim_config,
            "sim_callbacks": self.sim_callbacks,
            "sim_reset": self.sim_reset,
            "sim_pay": self.sim_pay,
        }
        self._map = Map(
            [
                Rule("/v1/intention/", endpoint="create_intention", methods=["POST"]),
                Rule(
                    "/v1/intention/element/<public_key>/<client_secret>/",
                    endpoint="retrieve_intention",
                    methods=["GET"],
                ),
                Rule("/unifiedcheckout/", endpoint="checkout", methods=["GET"]),
                Rule("/unifiedcheckout/pay", endpoint="checkout_pay", methods=["POST"]),
                Rule("/api/auth/tokens", endpoint="auth_token", methods=["POST"]),
                Rule(
                    "/api/acceptance/transactions/<int:transaction_id>",
                    endpoint="get_transaction",
                    methods=["GET"],
                ),
                Rule(
                    "/api/ecommerce/orders/transaction_inquiry",
                    endpoint="transaction_inquiry",
                    methods=["POST"],
                ),
                Rule("/api/acceptance/void_refund/refund", endpoint="refund", methods=["POST"]),
                Rule("/api/acceptance/void_refund/void", endpoint="void", methods=["POST"]),
                Rule("/_sim/config", endpoint="sim_config", methods=["GET", "POST"]),
                Rule("/_sim/callbacks", endpoint="sim_callbacks", methods=["GET"]),
                Rule("/_sim/reset", endpoint="sim_reset", methods=["POST"]),
                Rule("/_sim/pay", endpoint="sim_pay", methods=["POST"]),
            ]
        )

    def __call__(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = _MAX_BODY
        adapter = self._map.bind_to_environ(environ)
        try:
            endpoint, args = adapter.match()
            response = self._routes[str(endpoint)](request, **args)
        except ApiError as error:
            response = json_response(error.body, error.status)
        except HTTPException as error:
            if error.code is not None and error.code < 400:  # routing redirects
                return error(environ, start_response)
            response = json_response({"detail": error.description}, error.code or 500)
        return response(environ, start_response)

    # Intention API

    def _require_secret_key(self, request: Request) -> None:
        token = _credential(request, "Token")
        if token is None:
            raise ApiError(401, {"detail": "Authentication credentials were not provided."})
        if not secrets.compare_digest(token.encode(), self.config.secret_key.encode()):
            raise ApiError(401, {"detail": "Invalid token."})

    def create_intention(self, request: Request) -> Response:
        self._require_secret_key(request)
        parsed = parse_intention_request(
            _json_body(request), known_integrations=self.config.integration_ids
        )
        intention = self.account.create_intention(parsed)
        return json_response(self.intention_json(intention), 201)

    def intention_json(self, intention: Intention) -> Json:
        """The create response, in PayMob's shape (amount and currency in intention_detail)."""
        request = intention.request
        config = self.config
        return {
            "payment_keys": intention.payment_keys,
            "intention_order_id": intention.order_id,
            "id": intention.id,
            "intention_detail": {
                "amount": request.amount,
                "items": list(request.items),
                "currency": request.currency,
                "billing_data": request.billing_data,
            },
            "client_secret": intention.client_secret,
            "payment_methods": [
                {
                    "integration_id": integration,
                    "alias": None,
                    "name": None,
                    "method_type": "card"
                    if integration == config.card_integration_id
                    else "wallet",
                    "currency": request.currency,
                    "live": False,
                    "use_cvc_with_moto": False,
                }
                for integration in request.payment_methods
            ],
            "special_reference": request.special_reference,
            "extras": {"creation_extras": request.extras, "confirmation_extras": None},
            "confirmed": False,
            "status": self.account.intention_status(intention),
            "created": intention.created,
            "card_detail": None,
            "card_tokens": [],
            "object": "paymentintention",
        }

    def retrieve_intention(self, request: Request, public_key: str, client_secret: str) -> Response:
        intention = self._checkout_intention(public_key, client_secret)
        if intention is None:
            raise ApiError(404, {"detail": "Not found."})
        return json_response(
            {
                "id": intention.id,
                "intention_order_id": intention.order_id,
                "status": self.account.intention_status(intention),
                "amount": intention.request.amount,
                "currency": intention.request.currency,
                "special_reference": intention.request.special_reference,
                "payment_methods": list(intention.request.payment_methods),
                "created": intention.created,
                "expires_at": self.config.render_time(intention.expires_at),
            }
        )

    def _checkout_intention(self, public_key: str, client_secret: str) -> Intention | None:
        if not secrets.compare_digest(public_key.encode(), self.config.public_key.encode()):
            return None
        return self.account.intention(client_secret)

    # Hosted checkout

    def checkout(self, request: Request) -> Response:
        intention = self._checkout_intention(
            request.args.get("publicKey", ""), request.args.get("clientSecret", "")
        )
        return self._render_checkout(intention)

    def _render_checkout(
        self,
        intention: Intention | None,
        error: str | None = None,
        values: dict[str, str] | None = None,
        status: int = 200,
    ) -> Response:
        if intention is None:
            return html_response(
                message_page("Payment not found", "This checkout link is not valid."), 404
            )
        state = self.account.intention_status(intention)
        if state == "expired":
            return html_response(
                message_page("Payment link expired", "This payment link has expired."), 410
            )
        if state == "paid":
            return html_response(
                message_page("Already paid", "This payment has already been completed."), 409
            )
        methods = intention.request.payment_methods
        page = checkout_page(
            intention,
            public_key=self.config.public_key,
            card_enabled=self.config.card_integration_id in methods,
            wallet_enabled=self.config.wallet_integration_id in methods,
            error=error,
            values=values,
        )
        return html_response(page, status)

    def checkout_pay(self, request: Request) -> Response:
        form = request.form
        intention = self._checkout_intention(
            form.get("public_key", ""), form.get("client_secret", "")
        )
        if intention is None:
            return self._render_checkout(None)
        # Keep what the student typed, except the secrets, when the form comes back.
        values = {k: v for k, v in form.items() if k in ("card_name", "card_number", "card_expiry")}
        values.update({k: v for k, v in form.items() if k == "wallet_number"})
        try:
            payment = self._payment_from(
                form.get("method", "card"),
                card_number=form.get("card_number", ""),
                card_name=form.get("card_name", ""),
                card_expiry=form.get("card_expiry", ""),
                card_cvv=form.get("card_cvv", ""),
                wallet_number=form.get("wallet_number", ""),
                wallet_pin=form.get("wallet_pin", ""),
            )
            obj, redirect_url = self.pay(intention.client_secret, payment)
        except ApiError as error:
            if error.status in (409, 410):
                return self._render_checkout(intention)
            messages = [" ".join(v) if isinstance(v, list) else str(v) for v in error.body.values()]
            return self._render_checkout(intention, " ".join(messages), values, error.status)
        if redirect_url is None:
            page = result_page(obj["success"], obj["data"]["message"], obj["id"])
            return html_response(page)
        return Response(status=302, headers={"Location": redirect_url})

    @staticmethod
    def _payment_from(method: str, **fields: str) -> CardPayment | WalletPayment:
        if method == "wallet":
            return parse_wallet(fields["wallet_number"], fields["wallet_pin"])
        if method == "card":
            card = (fields[k] for k in ("card_number", "card_name", "card_expiry", "card_cvv"))
            return parse_card(*card)
        raise ApiError(400, {"method": ['Choose "card" or "wallet".']})

    def pay(
        self, client_secret: str, payment: CardPayment | WalletPayment
    ) -> tuple[Json, str | None]:
        """What submitting the checkout form does: a transaction, its callback, the redirect."""
        obj, intention = self.account.pay(client_secret, payment)
        self.dispatcher.send(self._notification_url(intention), obj)
        redirection_url = intention.request.redirection_url or self.config.default_redirection_url
        if redirection_url is None:
            return obj, None
        return obj, signed_redirect_url(redirection_url, obj, self.config.hmac_secret)

    def _notification_url(self, intention: Intention | None) -> str | None:
        if intention is not None and intention.request.notification_url:
            return intention.request.notification_url
        return self.config.default_notification_url

    # Inquiry and admin APIs

    def auth_token(self, request: Request) -> Response:
        body = _json_body(request)
        api_key = body.get("api_key") if isinstance(body, dict) else None
        token = self.account.issue_token(api_key)
        profile = {"id": self.config.profile_id, "user": {"id": self.config.merchant_id}}
        return json_response({"token": token, "profile": profile}, 201)

    def _require_inquiry(self, request: Request) -> None:
        if self.switches.current.inquiry_mode == "fail":
            raise ApiError(503, {"detail": "Service temporarily unavailable (simulated)."})
        token = _credential(request, "Bearer")
        if token is None:
            raise ApiError(401, {"detail": "Authentication credentials were not provided."})
        if not self.account.token_valid(token):
            raise ApiError(401, {"detail": "Invalid or expired token."})

    def get_transaction(self, request: Request, transaction_id: int) -> Response:
        self._require_inquiry(request)
        obj = self.account.transaction(transaction_id)
        if obj is None:
            raise ApiError(404, {"detail": "Not found."})
        return json_response(obj)

    def transaction_inquiry(self, request: Request) -> Response:
        self._require_inquiry(request)
        body = _json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, {"detail": "Expected a JSON object."})
        if body.get("order_id") is not None:
            obj = self.account.latest_payment(order_id=_int_field(body, "order_id"))
        elif isinstance(body.get("merchant_order_id"), str):
            obj = self.account.latest_payment(merchant_order_id=body["merchant_order_id"])
        else:
            raise ApiError(400, {"detail": "order_id or merchant_order_id is required."})
        if obj is None:
            raise ApiError(404, {"detail": "No transaction found for this order."})
        return json_response(obj)

    def refund(self, request: Request) -> Response:
        self._require_secret_key(request)
        body = _json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, {"detail": "Expected a JSON object."})
        transaction_id = _int_field(body, "transaction_id")
        amount_cents = _int_field(body, "amount_cents")
        if amount_cents <= 0:
            raise ApiError(400, {"amount_cents": ["Must be a positive integer."]})
        child, parent = self.account.refund(transaction_id, amount_cents)
        self._send_reversal_callbacks(child, parent)
        return json_response(child)

    def void(self, request: Request) -> Response:
        self._require_secret_key(request)
        body = _json_body(request)
        if not isinstance(body, dict):
            raise ApiError(400, {"detail": "Expected a JSON object."})
        child, parent = self.account.void(_int_field(body, "transaction_id"))
        self._send_reversal_callbacks(child, parent)
        return json_response(child)

    def _send_reversal_callbacks(self, child: Json, parent: Json) -> None:
        # PayMob sends both; they can arrive in either order, which the reorder switch shows.
        url = self._notification_url(self.account.order_intention(parent["order"]["id"]))
        self.dispatcher.send(url, child)
        self.dispatcher.send(url, parent)

    # Control API (the simulator's own, not PayMob's)

    def sim_config(self, request: Request) -> Response:
        if request.method == "POST":
            body = _json_body(request)
            if not isinstance(body, dict):
                raise ApiError(400, {"detail": "Expected a JSON object."})
            try:
                self.switches.update(body)
            except ConfigError as error:
                raise ApiError(400, dict(error.errors)) from None
        config = self.config
        return json_response(
            {
                **self.switches.current.to_json(),
                "base_url": self._base_url(),
                "public_key": config.public_key,
                "card_integration_id": config.card_integration_id,
                "wallet_integration_id": config.wallet_integration_id,
                "merchant_id": config.merchant_id,
            }
        )

    def sim_callbacks(self, request: Request) -> Response:
        return json_response({"callbacks": self.dispatcher.records()})

    def sim_reset(self, request: Request) -> Response:
        self.reset()
        return json_response({"switches": self.switches.current.to_json()})

    def reset(self) -> None:
        """Forget intentions, transactions, tokens and callbacks; switches back to the config."""
        self.dispatcher.reset()
        self.account.reset()
        self.switches.reset()

    def sim_pay(self, request: Request) -> Response:
        body = _json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("client_secret"), str):
            raise ApiError(400, {"client_secret": ["This field is required."]})
        has_card, has_wallet = "card_number" in body, "wallet_number" in body
        if has_card == has_wallet:
            raise ApiError(400, {"detail": "Give exactly one of card_number or wallet_number."})
        fields = {
            "card_number": body.get("card_number", ""),
            "card_name": body.get("card_name", "Test Account"),
            "card_expiry": body.get("card_expiry", SANDBOX_EXPIRY),
            "card_cvv": body.get("card_cvv", SANDBOX_CVV),
            "wallet_number": body.get("wallet_number", ""),
            "wallet_pin": body.get("wallet_pin", TEST_WALLET_PIN),
        }
        if not all(isinstance(value, str) for value in fields.values()):
            raise ApiError(400, {"detail": "Card and wallet fields are strings."})
        payment = self._payment_from("card" if has_card else "wallet", **fields)
        obj, redirect_url = self.pay(body["client_secret"], payment)
        return json_response({"transaction": obj, "redirect_url": redirect_url})
