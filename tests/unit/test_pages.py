"""The result page: stored status, stable ids, escaping, Arabic right to left, no script."""

from __future__ import annotations

import base64
import hashlib
import re
from html.parser import HTMLParser

import pytest

from coursepay.domain.payment import PaymentStatus
from coursepay.domain.records import Course
from coursepay.pages.language import Language, choose_language
from coursepay.pages.result import (
    SECURITY_HEADERS,
    TEXTS,
    UNCONFIRMED,
    PageLinks,
    render_result_page,
)
from tests.support.builders import COURSE_ID, a_payment, a_payment_in

LINKS = PageLinks(
    course_url_template="https://learn.courses.example/courses/{course_id}",
    retry_url_template="https://learn.courses.example/courses/{course_id}/buy",
    support_contact="support@courses.example",
)
COURSE = Course(course_id=COURSE_ID, title="Python 101", price_cents=150_000, currency="EGP")
S = PaymentStatus


class Elements(HTMLParser):
    """Every element's attributes by id, and whether the document parsed as expected."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_id: dict[str, dict[str, str | None]] = {}
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        self.tags.append((tag, attributes))
        if attributes.get("id"):
            self.by_id[str(attributes["id"])] = attributes


def page(status: PaymentStatus | None, language: Language = Language.ENGLISH, **payment):
    paid = None if status is None else a_payment_in(status, **payment)
    return render_result_page(paid, COURSE, LINKS, language)


# --- which page for which stored status -------------------------------------------------------


@pytest.mark.parametrize("status", list(PaymentStatus))
def test_every_status_has_its_page_with_the_status_on_payment_status(status):
    elements = Elements(page(status).html)

    assert elements.by_id["payment-status"]["data-status"] == str(status)
    assert "support-contact" in elements.by_id


@pytest.mark.parametrize("status", [S.PAID, S.PARTIALLY_REFUNDED])
def test_a_paid_page_links_to_the_course(status):
    elements = Elements(page(status).html)

    assert elements.by_id["course-link"]["href"] == (
        f"https://learn.courses.example/courses/{COURSE_ID}"
    )
    assert "retry-button" not in elements.by_id


@pytest.mark.parametrize("status", [S.FAILED, S.EXPIRED])
def test_a_failed_page_offers_a_retry_and_shows_the_stored_reason(status):
    html = page(status, failure_reason="Insufficient funds").html
    elements = Elements(html)

    assert elements.by_id["retry-button"]["href"] == (
        f"https://learn.courses.example/courses/{COURSE_ID}/buy"
    )
    assert "course-link" not in elements.by_id
    assert "Insufficient funds" in html


@pytest.mark.parametrize("status", [S.UNDER_REVIEW, S.REFUNDED, S.VOIDED])
def test_settled_pages_offer_neither_the_course_nor_a_retry(status):
    elements = Elements(page(status).html)

    assert "course-link" not in elements.by_id
    assert "retry-button" not in elements.by_id


def test_only_the_pending_page_refreshes_itself():
    refreshing = [status for status in PaymentStatus if 'http-equiv="refresh"' in page(status).html]

    assert refreshing == [S.PENDING]
    assert '<meta http-equiv="refresh" content="3">' in page(S.PENDING).html


def test_the_neutral_page_names_no_payment_and_points_to_the_history():
    html = render_result_page(None, None, LINKS, Language.ENGLISH).html
    elements = Elements(html)

    assert elements.by_id["payment-status"]["data-status"] == UNCONFIRMED
    assert elements.by_id["history-link"]["href"] == "/me/payments"
    assert "We could not confirm this payment here" in html
    assert "course-link" not in elements.by_id and "retry-button" not in elements.by_id
    assert "1500.00" not in html


def test_the_amount_is_shown_in_major_units_without_floats():
    assert "4.500 OMR" in page(S.PAID, amount_cents=4_500, currency="OMR").html
    assert "1500.00 EGP" in page(S.PAID).html


# --- escaping -------------------------------------------------------------------------------


def test_stored_text_is_escaped_wherever_it_appears():
    course = Course(
        course_id='c"><script>x</script>',
        title="<script>alert(1)</script>",
        price_cents=100,
        currency="EGP",
    )
    payment = a_payment(
        course_id=course.course_id,
        status=S.FAILED,
        failure_reason="<img src=x onerror=alert(2)>",
    )
    links = PageLinks(
        course_url_template="https://learn.courses.example/c/{course_id}",
        retry_url_template="https://learn.courses.example/c/{course_id}",
        support_contact='help"<b>@courses.example',
    )

    html = render_result_page(payment, course, links, Language.ENGLISH).html

    assert "<script>" not in html and "<img" not in html and "<b>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;img src=x onerror=alert(2)&gt;" in html
    retry = Elements(html).by_id["retry-button"]["href"]
    assert retry == "https://learn.courses.example/c/c%22%3E%3Cscript%3Ex%3C%2Fscript%3E"


def test_a_support_contact_that_is_a_web_page_is_a_link_and_anything_else_is_text():
    def contact(value: str) -> dict[str, str | None]:
        links = PageLinks(LINKS.course_url_template, LINKS.retry_url_template, value)
        return Elements(render_result_page(None, None, links, Language.ENGLISH).html).by_id[
            "support-contact"
        ]

    assert contact("support@courses.example")["href"] == "mailto:support@courses.example"
    assert contact("https://help.courses.example")["href"] == "https://help.courses.example"
    assert "href" not in contact("+20 2 1234 5678")
    assert "href" not in contact("javascript:alert(1)")


# --- language -------------------------------------------------------------------------------


def test_the_arabic_page_is_right_to_left_and_in_arabic():
    html = page(S.FAILED, Language.ARABIC).html

    assert '<html lang="ar" dir="rtl">' in html
    assert "لم تتم عملية الدفع" in html
    assert "حاول مرة أخرى" in html


def test_the_english_page_is_left_to_right():
    assert '<html lang="en" dir="ltr">' in page(S.PAID).html


@pytest.mark.parametrize(
    ("header", "language"),
    [
        (None, Language.ENGLISH),
        ("", Language.ENGLISH),
        ("ar", Language.ARABIC),
        ("ar-EG,ar;q=0.9,en;q=0.8", Language.ARABIC),
        ("en-US,en;q=0.9,ar;q=0.8", Language.ENGLISH),
        ("fr-FR,fr;q=0.9,ar;q=0.5,en;q=0.4", Language.ARABIC),
        ("en;q=0.2, AR-sa;q=0.7", Language.ARABIC),
        ("ar;q=0, en;q=0.1", Language.ENGLISH),
        ("de, fr", Language.ENGLISH),
        ("ar;q=abc", Language.ENGLISH),
        ("ar;q=nan,en;q=0.1", Language.ENGLISH),
        ("*", Language.ENGLISH),
    ],
)
def test_the_language_follows_the_browsers_preference(header, language):
    assert choose_language(header) is language


def test_every_page_has_its_own_text_in_both_languages():
    pages = {*map(str, PaymentStatus), UNCONFIRMED}
    english, arabic = TEXTS[Language.ENGLISH], TEXTS[Language.ARABIC]

    assert set(english.headings) == set(arabic.headings) == pages
    assert set(english.messages) == set(arabic.messages) == pages
    assert all(english.headings[name] != arabic.headings[name] for name in pages)


# --- the page runs nothing and leaks nothing ------------------------------------------------


def test_the_page_has_no_script_and_its_one_style_is_allowed_by_hash():
    html = page(S.PAID).html
    tags = [tag for tag, _ in Elements(html).tags]
    style = re.search(r"<style>(.*?)</style>", html, re.S)

    assert "script" not in tags
    assert style is not None
    digest = base64.b64encode(hashlib.sha256(style.group(1).encode()).digest()).decode()
    assert f"style-src 'sha256-{digest}'" in SECURITY_HEADERS["content-security-policy"]


def test_the_page_sends_no_referer_and_is_never_cached():
    headers = page(S.PAID).headers

    assert headers["referrer-policy"] == "no-referrer"
    assert headers["cache-control"] == "no-store"
    assert headers["content-language"] == "en"
