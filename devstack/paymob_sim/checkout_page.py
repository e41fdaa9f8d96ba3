"""The hosted checkout page: plain, accessible HTML with stable ids for browser tests."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from html import escape

from devstack.paymob_sim.intentions import CURRENCY_EXPONENTS, Intention
from devstack.paymob_sim.transactions import (
    DECLINE_CARD,
    SANDBOX_CARDS,
    SANDBOX_CVV,
    SANDBOX_EXPIRY,
    TEST_WALLET,
    TEST_WALLET_PIN,
)

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 34rem; margin: 2rem auto; padding: 0 1rem;
       color: #111; background: #fff; line-height: 1.5; }
.banner { background: #fff3cd; border: 2px solid #7a5b00; padding: .5rem .75rem; }
fieldset { border: 1px solid #555; margin: 1.25rem 0; padding: .75rem 1rem; }
label { display: block; margin-top: .75rem; font-weight: 600; }
input { font: inherit; padding: .4rem; width: 100%; box-sizing: border-box;
        border: 1px solid #333; }
input:focus, button:focus { outline: 3px solid #1a56db; outline-offset: 2px; }
button { font: inherit; margin-top: 1rem; padding: .5rem 1.25rem; background: #1a3d7c; color: #fff;
         border: 0; cursor: pointer; }
.error { border: 2px solid #a00; color: #700; padding: .5rem .75rem; }
.hint { color: #333; font-size: .9rem; }
"""


def format_amount(amount_cents: int, currency: str) -> str:
    """Minor units as a human amount ("1,000.00 EGP", "4.500 OMR"), without floats."""
    places = CURRENCY_EXPONENTS.get(currency, 2)
    return f"{Decimal(amount_cents).scaleb(-places):,.{places}f} {currency}"


def _page(title: str, body: str) -> str:
    return (
        "<!doctype html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)} | PayMob simulator</title>\n"
        f"<style>{_STYLE}</style>\n</head>\n<body>\n"
        '<p class="banner" role="note"><strong>PayMob simulator</strong>: test mode, '
        "no real money moves.</p>\n"
        f"<main>\n{body}\n</main>\n</body>\n</html>\n"
    )


def _field(
    field_id: str, name: str, label: str, value: str, *, hint: str = "", **attrs: str
) -> str:
    described = f' aria-describedby="{field_id}-hint"' if hint else ""
    extra = "".join(f' {key.replace("_", "-")}="{escape(val)}"' for key, val in attrs.items())
    hint_html = f'<span class="hint" id="{field_id}-hint">{escape(hint)}</span>' if hint else ""
    return (
        f'<label for="{field_id}">{escape(label)}</label>{hint_html}\n'
        f'<input id="{field_id}" name="{name}" value="{escape(value)}" required{described}{extra}>'
    )


def checkout_page(
    intention: Intention,
    *,
    public_key: str,
    card_enabled: bool,
    wallet_enabled: bool,
    error: str | None = None,
    values: Mapping[str, str] | None = None,
) -> str:
    """The checkout form; only the methods enabled on the intention are offered."""
    values = values or {}
    request = intention.request
    hidden = (
        f'<input type="hidden" name="client_secret" value="{escape(intention.client_secret)}">'
        f'<input type="hidden" name="public_key" value="{escape(public_key)}">'
    )
    amount = escape(format_amount(request.amount, request.currency))
    parts = [
        "<h1>Pay for your order</h1>",
        f'<p>Amount due: <strong id="amount">{amount}</strong></p>',
        f'<p>Order <span id="order-id">{intention.order_id}</span></p>',
    ]
    if error:
        parts.append(f'<div class="error" role="alert" id="payment-error">{escape(error)}</div>')
    if card_enabled:
        parts.append(
            '<form method="post" action="/unifiedcheckout/pay" id="card-form">'
            f'{hidden}<input type="hidden" name="method" value="card">'
            "<fieldset><legend>Pay by card</legend>\n"
            + _field(
                "card-name",
                "card_name",
                "Name on card",
                values.get("card_name", ""),
                autocomplete="cc-name",
            )
            + _field(
                "card-number",
                "card_number",
                "Card number",
                values.get("card_number", ""),
                autocomplete="cc-number",
                inputmode="numeric",
            )
            + _field(
                "card-expiry",
                "card_expiry",
                "Expiry date",
                values.get("card_expiry", ""),
                hint="MM/YY",
                autocomplete="cc-exp",
                placeholder="MM/YY",
            )
            + _field(
                "card-cvv",
                "card_cvv",
                "Security code (CVV)",
                values.get("card_cvv", ""),
                autocomplete="cc-csc",
                inputmode="numeric",
            )
            + f'\n<button type="submit" id="pay-button">Pay {amount}</button>'
            "</fieldset></form>"
        )
    if wallet_enabled:
        parts.append(
            '<form method="post" action="/unifiedcheckout/pay" id="wallet-form">'
            f'{hidden}<input type="hidden" name="method" value="wallet">'
            "<fieldset><legend>Pay with a mobile wallet</legend>\n"
            + _field(
                "wallet-number",
                "wallet_number",
                "Wallet mobile number",
                values.get("wallet_number", ""),
                autocomplete="tel",
                inputmode="numeric",
            )
            + _field(
                "wallet-pin",
                "wallet_pin",
                "Wallet PIN",
                values.get("wallet_pin", ""),
                type="password",
                inputmode="numeric",
                autocomplete="off",
            )
            + '\n<button type="submit" id="wallet-pay-button">Pay with wallet</button>'
            "</fieldset></form>"
        )
    cards = "".join(f"<li>{number} ({brand})</li>" for number, brand in SANDBOX_CARDS.items())
    parts.append(
        "<details><summary>Sandbox test data</summary>"
        f"<p>Cards that pay, with expiry {SANDBOX_EXPIRY} and CVV {SANDBOX_CVV}:</p>"
        f"<ul>{cards}</ul>"
        f"<p>Card that is declined: {DECLINE_CARD}. Any other card is declined too.</p>"
        f"<p>Test wallet {TEST_WALLET}, PIN {TEST_WALLET_PIN}.</p></details>"
    )
    return _page("Checkout", "\n".join(parts))


def message_page(title: str, message: str) -> str:
    """An error or information page (unknown, expired or already paid checkout)."""
    return _page(
        title,
        f'<h1 id="message-title">{escape(title)}</h1>\n<p id="message">{escape(message)}</p>',
    )


def result_page(approved: bool, message: str, transaction_id: int) -> str:
    """Shown when the intention has no redirection_url to send the browser to."""
    title = "Payment approved" if approved else "Payment declined"
    return _page(
        title,
        f'<h1 id="result-title">{title}</h1>\n<p id="result-message">{escape(message)}</p>\n'
        f'<p>Transaction <span id="transaction-id">{transaction_id}</span></p>',
    )
