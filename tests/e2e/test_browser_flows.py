"""A student in a real (headless) Chromium: demo page, PayMob's checkout page, result page.

Chromium is Debian's (/usr/bin/chromium, installed by devstack/ensure_chromium.sh before
`make e2e`); Playwright drives it but never downloads a browser of its own. Screenshots of
the pages a student ends on go to test-output/.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from devstack.paymob_sim import SANDBOX_CVV, SANDBOX_EXPIRY
from tests.support.polling import wait_until
from tests.support.shop import DECLINE_CARD, MASTERCARD, Shop

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# Long enough for a pending result page to refresh itself once or twice.
SETTLE_MS = 20_000


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(locale="en-US", viewport={"width": 1000, "height": 900})
    opened = context.new_page()
    try:
        yield opened
    finally:
        context.close()


def pay_in_the_browser(
    page: Page, shop: Shop, course_id: str, card_number: str, screenshots: Path | None = None
) -> None:
    """From the demo page through PayMob's checkout form, as a student clicks through it."""
    student_id = f"e2e-browser-{uuid.uuid4().hex[:10]}"
    page.goto(f"{shop.stack.api_url}/?student={student_id}")
    expect(page.locator("#student-id")).to_have_text(student_id)
    page.locator(f"#course-{course_id}").check()
    page.locator("#checkout-button").click()
    page.wait_for_url(f"{shop.stack.paymob_url}/unifiedcheckout/**")
    page.locator("#card-name").fill("Test Account")
    page.locator("#card-number").fill(card_number)
    page.locator("#card-expiry").fill(SANDBOX_EXPIRY)
    page.locator("#card-cvv").fill(SANDBOX_CVV)
    if screenshots is not None:
        page.screenshot(path=str(screenshots / "browser-paymob-checkout.png"), full_page=True)
    page.locator("#pay-button").click()
    page.wait_for_url(f"{shop.stack.api_url}/courses/{course_id}/payment/result**")


def test_a_student_pays_in_the_browser_and_reaches_the_course(
    shop: Shop, page: Page, output_dir: Path
) -> None:
    # Given a course priced in OMR (three decimals) on the demo page
    course = shop.course(price_cents=49_875, currency="OMR")
    page.goto(f"{shop.stack.api_url}/")
    expect(page.locator(f"label[for='course-{course.course_id}']")).to_contain_text("49.875 OMR")
    page.screenshot(path=str(output_dir / "browser-demo-page.png"), full_page=True)

    # When a student buys it with a sandbox card
    pay_in_the_browser(page, shop, course.course_id, MASTERCARD, screenshots=output_dir)

    # Then the result page shows the payment as paid, with a link to the course
    expect(page.locator("#payment-status")).to_have_attribute(
        "data-status", "PAID", timeout=SETTLE_MS
    )
    link = page.locator("#course-link")
    expect(link).to_be_visible()
    page.screenshot(path=str(output_dir / "browser-paid-result.png"), full_page=True)
    link.click()
    expect(page.locator("#course-title")).to_have_text(course.title)


def test_a_declined_card_shows_the_failure_and_a_retry(
    shop: Shop, page: Page, output_dir: Path
) -> None:
    course = shop.course()

    pay_in_the_browser(page, shop, course.course_id, DECLINE_CARD)

    expect(page.locator("#payment-status")).to_have_attribute(
        "data-status", "FAILED", timeout=SETTLE_MS
    )
    expect(page.locator("#retry-button")).to_be_visible()
    expect(page.locator("#course-link")).to_have_count(0)
    page.screenshot(path=str(output_dir / "browser-declined-result.png"), full_page=True)
    assert shop.enrolment_count(course.course_id) == 0

    # When the student tries again, with a card that pays
    page.locator("#retry-button").click()
    expect(page.locator(f"#course-{course.course_id}")).to_be_checked()
    page.locator("#checkout-button").click()
    page.wait_for_url(f"{shop.stack.paymob_url}/unifiedcheckout/**")
    page.locator("#card-name").fill("Test Account")
    page.locator("#card-number").fill(MASTERCARD)
    page.locator("#card-expiry").fill(SANDBOX_EXPIRY)
    page.locator("#card-cvv").fill(SANDBOX_CVV)
    page.locator("#pay-button").click()
    page.wait_for_url(f"{shop.stack.api_url}/courses/{course.course_id}/payment/result**")

    # Then the retry succeeds and the course is theirs
    expect(page.locator("#payment-status")).to_have_attribute(
        "data-status", "PAID", timeout=SETTLE_MS
    )
    expect(page.locator("#course-link")).to_be_visible()
    page.screenshot(path=str(output_dir / "browser-retry-paid-result.png"), full_page=True)
    # (enrolment follows the payment through the stream, a moment after the page)
    wait_until(
        lambda: shop.enrolment_count(course.course_id) == 1,
        timeout=SETTLE_MS / 1000,
        message="the enrolment after the retried payment",
    )
