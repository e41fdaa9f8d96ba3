"""The payment result page: the stored status of a payment, never what the redirect's query says.

Every value that reaches the HTML is escaped here, once; the stable element ids
(#payment-status with data-status, #course-link, #retry-button, #support-contact) are the
contract with browser tests.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from html import escape
from string import Template
from urllib.parse import quote, urlsplit

from coursepay.domain.money import UnsupportedCurrency, format_amount
from coursepay.domain.payment import ENTITLING_STATUSES, Payment, PaymentStatus
from coursepay.domain.records import Course
from coursepay.pages.language import Language

# data-status of the page shown when the redirect could not be tied to a payment.
UNCONFIRMED = "UNCONFIRMED"
PENDING_REFRESH_SECONDS = 3

_RETRYABLE = frozenset({PaymentStatus.FAILED, PaymentStatus.EXPIRED})

_STYLE = (
    "body{font-family:system-ui,-apple-system,'Segoe UI',Tahoma,sans-serif;margin:0;"
    "background:#f5f6f8;color:#1d2330}"
    "main{max-width:34rem;margin:3rem auto;padding:2rem;background:#fff;border-radius:12px;"
    "box-shadow:0 1px 4px rgba(0,0,0,.08)}"
    "h1{font-size:1.4rem;margin-top:0}"
    "dl{display:grid;grid-template-columns:max-content 1fr;gap:.4rem 1rem}"
    "dt{color:#5b6475}dd{margin:0}"
    ".actions a{display:inline-block;margin:.5rem 0;padding:.6rem 1.2rem;border-radius:8px;"
    "background:#1f5fd1;color:#fff;text-decoration:none}"
    "[data-status=PAID] h1,[data-status=PARTIALLY_REFUNDED] h1{color:#16794a}"
    "[data-status=FAILED] h1,[data-status=EXPIRED] h1{color:#b3261e}"
    "footer{margin-top:1.5rem;font-size:.9rem;color:#5b6475}"
)
_STYLE_HASH = base64.b64encode(hashlib.sha256(_STYLE.encode()).digest()).decode()

# The page runs no script and loads nothing; its only style is the inline block above.
SECURITY_HEADERS: dict[str, str] = {
    "content-security-policy": (
        f"default-src 'none'; style-src 'sha256-{_STYLE_HASH}'; base-uri 'none'; "
        "form-action 'none'; frame-ancestors 'none'"
    ),
    # The URL carries PayMob's signed query: no Referer to the course site or anywhere else.
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
    "cache-control": "no-store",
}

_LAYOUT = Template(
    """<!doctype html>
<html lang="$lang" dir="$dir">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
$refresh<title>$title</title>
<style>$style</style>
</head>
<body>
<main id="payment-status" data-status="$status">
<h1>$heading</h1>
<p>$message</p>
$details$actions<footer>$support</footer>
</main>
</body>
</html>
"""
)


@dataclass(frozen=True, slots=True)
class PageLinks:
    """Where the page's links go; templates hold `{course_id}`."""

    course_url_template: str
    retry_url_template: str
    support_contact: str
    history_url: str = "/me/payments"

    def course_url(self, course_id: str) -> str:
        return self.course_url_template.replace("{course_id}", quote(course_id, safe=""))

    def retry_url(self, course_id: str) -> str:
        return self.retry_url_template.replace("{course_id}", quote(course_id, safe=""))


@dataclass(frozen=True, slots=True)
class _Texts:
    title: str
    headings: dict[str, str]
    messages: dict[str, str]
    course: str
    amount: str
    reason: str
    go_to_course: str
    try_again: str
    history: str
    support: str


_S = PaymentStatus
TEXTS: dict[Language, _Texts] = {
    Language.ENGLISH: _Texts(
        title="Payment result",
        headings={
            _S.PAID: "Payment successful",
            _S.PARTIALLY_REFUNDED: "Payment successful (partly refunded)",
            _S.PENDING: "We are confirming your payment",
            _S.FAILED: "Payment failed",
            _S.EXPIRED: "Payment expired",
            _S.UNDER_REVIEW: "Payment under review",
            _S.REFUNDED: "Payment refunded",
            _S.VOIDED: "Payment cancelled",
            UNCONFIRMED: "We could not confirm this payment here",
        },
        messages={
            _S.PAID: "Thank you! We received your payment and your course is unlocked.",
            _S.PARTIALLY_REFUNDED: "Part of this payment was refunded; your course stays open.",
            _S.PENDING: "This page refreshes by itself every few seconds. "
            "You do not need to pay again.",
            _S.FAILED: "Your payment did not go through. You can try again.",
            _S.EXPIRED: "The time to complete this payment ran out. You can start a new one.",
            _S.UNDER_REVIEW: "We received your payment, but it needs a closer look. "
            "Our team will contact you; you do not need to pay again.",
            _S.REFUNDED: "This payment was refunded.",
            _S.VOIDED: "This payment was cancelled and not charged.",
            UNCONFIRMED: "Please check your payment history for the status of your payment.",
        },
        course="Course",
        amount="Amount",
        reason="Reason",
        go_to_course="Go to your course",
        try_again="Try again",
        history="Your payment history",
        support="Need help? Contact",
    ),
    Language.ARABIC: _Texts(
        title="نتيجة الدفع",
        headings={
            _S.PAID: "تم الدفع بنجاح",
            _S.PARTIALLY_REFUNDED: "تم الدفع بنجاح (مع استرداد جزئي)",
            _S.PENDING: "جارٍ تأكيد عملية الدفع",
            _S.FAILED: "لم تتم عملية الدفع",
            _S.EXPIRED: "انتهت مهلة الدفع",
            _S.UNDER_REVIEW: "عملية الدفع قيد المراجعة",
            _S.REFUNDED: "تم استرداد المبلغ",
            _S.VOIDED: "تم إلغاء عملية الدفع",
            UNCONFIRMED: "تعذّر تأكيد عملية الدفع هنا",
        },
        messages={
            _S.PAID: "شكرًا لك! استلمنا دفعتك وأصبحت دورتك متاحة.",
            _S.PARTIALLY_REFUNDED: "تم استرداد جزء من هذه الدفعة، وتبقى دورتك متاحة.",
            _S.PENDING: "تتحدّث هذه الصفحة تلقائيًا كل بضع ثوانٍ. لا داعي للدفع مرة أخرى.",
            _S.FAILED: "لم تكتمل عملية الدفع. يمكنك المحاولة مرة أخرى.",
            _S.EXPIRED: "انتهى الوقت المحدد لإتمام هذه الدفعة. يمكنك البدء من جديد.",
            _S.UNDER_REVIEW: "استلمنا دفعتك، لكنها تحتاج إلى مراجعة. "
            "سيتواصل معك فريقنا، ولا داعي للدفع مرة أخرى.",
            _S.REFUNDED: "تم استرداد مبلغ هذه الدفعة.",
            _S.VOIDED: "أُلغيت هذه الدفعة ولم يُخصم أي مبلغ.",
            UNCONFIRMED: "يُرجى مراجعة سجل مدفوعاتك لمعرفة حالة الدفع.",
        },
        course="الدورة",
        amount="المبلغ",
        reason="السبب",
        go_to_course="الذهاب إلى الدورة",
        try_again="حاول مرة أخرى",
        history="سجل مدفوعاتك",
        support="تحتاج إلى مساعدة؟ تواصل معنا:",
    ),
}


@dataclass(frozen=True, slots=True)
class RenderedPage:
    html: str
    headers: dict[str, str]


def render_result_page(
    payment: Payment | None,
    course: Course | None,
    links: PageLinks,
    language: Language,
) -> RenderedPage:
    """The page for a payment's stored status, or the neutral page when `payment` is None."""
    texts = TEXTS[language]
    status = UNCONFIRMED if payment is None else str(payment.status)
    refresh = (
        f'<meta http-equiv="refresh" content="{PENDING_REFRESH_SECONDS}">\n'
        if payment is not None and payment.status is PaymentStatus.PENDING
        else ""
    )
    html = _LAYOUT.substitute(
        lang=language.value,
        dir=language.direction,
        refresh=refresh,
        title=_e(texts.title),
        style=_STYLE,
        status=_e(status),
        heading=_e(texts.headings[status]),
        message=_e(texts.messages[status]),
        details="" if payment is None else _details(payment, course, texts),
        actions=_actions(payment, links, texts),
        support=_support(links.support_contact, texts),
    )
    return RenderedPage(
        html=html,
        headers={**SECURITY_HEADERS, "content-language": language.value},
    )


def _details(payment: Payment, course: Course | None, texts: _Texts) -> str:
    rows = [
        (texts.course, course.title if course is not None else payment.course_id, "course-title"),
        (texts.amount, _amount(payment.amount_cents, payment.currency), "payment-amount"),
    ]
    if payment.status in _RETRYABLE and payment.failure_reason:
        rows.append((texts.reason, payment.failure_reason, "failure-reason"))
    cells = "".join(
        f'<dt>{_e(label)}</dt><dd id="{element_id}"><bdi>{_e(value)}</bdi></dd>'
        for label, value, element_id in rows
    )
    return f"<dl>{cells}</dl>\n"


def _actions(payment: Payment | None, links: PageLinks, texts: _Texts) -> str:
    if payment is None:
        return _link("history-link", links.history_url, texts.history)
    if payment.status in ENTITLING_STATUSES:
        return _link("course-link", links.course_url(payment.course_id), texts.go_to_course)
    if payment.status in _RETRYABLE:
        # A new checkout needs the student's token, which a redirect from PayMob does not
        # carry: the button leads to the platform's own page that starts one.
        return _link("retry-button", links.retry_url(payment.course_id), texts.try_again)
    return ""


def _link(element_id: str, url: str, label: str) -> str:
    return f'<p class="actions"><a id="{element_id}" href="{_e(url)}">{_e(label)}</a></p>\n'


def _support(contact: str, texts: _Texts) -> str:
    contact = contact.strip()
    if _is_email(contact):
        target = f"mailto:{contact}"
    elif urlsplit(contact).scheme == "https":
        target = contact
    else:
        return f'{_e(texts.support)} <span id="support-contact"><bdi>{_e(contact)}</bdi></span>'
    return (
        f'{_e(texts.support)} <a id="support-contact" href="{_e(target)}">'
        f"<bdi>{_e(contact)}</bdi></a>"
    )


def _is_email(text: str) -> bool:
    local, at, domain = text.partition("@")
    return bool(at and local and "." in domain and not any(c.isspace() for c in text))


def _amount(amount_cents: int, currency: str) -> str:
    try:
        return f"{format_amount(amount_cents, currency)} {currency}"
    except UnsupportedCurrency:
        return f"{amount_cents} {currency} (minor units)"


def _e(text: str) -> str:
    return escape(text, quote=True)
