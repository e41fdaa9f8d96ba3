"""Composition root: builds each use case with its real adapters, once per container."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from coursepay.config import EnvSettings
from coursepay.services.abuse import BadSignatureLimiter
from coursepay.services.callbacks import CallbackService
from coursepay.storage.payments import PaymentRepository
from coursepay.storage.queue import SqsRetryQueue
from coursepay.storage.secrets import load_paymob_credentials


class CallbackSettings(EnvSettings):
    payments_table: str
    webhooks_table: str
    paymob_secret_name: str
    retry_queue_url: str | None = None
    bad_signature_limit: int = 20
    bad_signature_window_seconds: int = 60


class RetrySettings(EnvSettings):
    retry_queue_url: str


@cache
def retry_queue() -> SqsRetryQueue:
    return SqsRetryQueue(RetrySettings.from_env().retry_queue_url)


@cache
def callback_service() -> CallbackService:
    settings = CallbackSettings.from_env()
    queue = SqsRetryQueue(settings.retry_queue_url) if settings.retry_queue_url else None
    return CallbackService(
        payments=PaymentRepository(settings.payments_table, settings.webhooks_table),
        retry_queue=queue,
        secrets=lambda: load_paymob_credentials(settings.paymob_secret_name).hmac_secrets,
        limiter=BadSignatureLimiter(
            settings.bad_signature_limit, settings.bad_signature_window_seconds
        ),
    )


# --- enrolment (stream consumer, retry queue, GET /api/me/enrollments) ----------------------
# Imported where built, so the webhook's cold start does not load the enrolment modules.

if TYPE_CHECKING:
    from coursepay.services.enrollment import EnrollmentService
    from coursepay.storage.catalog import EnrollmentRepository


class EnrollmentSettings(EnvSettings):
    """The template's Globals name the tables; the enroll and retry functions add the bus."""

    payments_table: str
    webhooks_table: str
    enrollments_table: str
    courses_table: str
    event_bus_name: str
    # The retry function's: a replayed record that keeps failing goes on as its own message.
    retry_queue_url: str | None = None


class EnrollmentReadSettings(EnvSettings):
    enrollments_table: str
    courses_table: str
    payments_table: str


@cache
def enrollment_service() -> EnrollmentService:
    from coursepay.services.enrollment import EnrollmentService
    from coursepay.storage.bus import EventBridgePublisher
    from coursepay.storage.catalog import EnrollmentRepository
    from coursepay.storage.stream_records import PaymentStreamReader

    settings = EnrollmentSettings.from_env()
    return EnrollmentService(
        payments=PaymentRepository(settings.payments_table, settings.webhooks_table),
        enrollments=EnrollmentRepository(
            settings.enrollments_table, settings.courses_table, settings.payments_table
        ),
        events=EventBridgePublisher(settings.event_bus_name),
        stream=PaymentStreamReader(),
        retry_queue=SqsRetryQueue(settings.retry_queue_url) if settings.retry_queue_url else None,
    )


@cache
def enrollment_reader() -> EnrollmentRepository:
    from coursepay.storage.catalog import EnrollmentRepository

    settings = EnrollmentReadSettings.from_env()
    return EnrollmentRepository(
        settings.enrollments_table, settings.courses_table, settings.payments_table
    )


# --- checkout, payment status, result page, reconciliation ----------------------------------
# Imported where built, like the enrolment block: the webhook never loads requests or pages.

if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

    from coursepay.pages.result import PageLinks
    from coursepay.paymob.client import PaymobClient, PaymobKeys
    from coursepay.services.checkout import CheckoutService
    from coursepay.services.inquiry import PaymentInquiry
    from coursepay.services.payment_status import PaymentStatusService
    from coursepay.services.reconcile import ReconcileService
    from coursepay.storage.catalog import CourseRepository
    from coursepay.storage.secrets import PaymobCredentials


class PaymentTablesSettings(EnvSettings):
    payments_table: str
    webhooks_table: str


class PaymobApiSettings(EnvSettings):
    paymob_base_url: str
    paymob_secret_name: str
    # Bounds one PayMob call with its retries; API functions set it below their timeout.
    paymob_call_budget_seconds: float | None = None


class CoursesSettings(EnvSettings):
    courses_table: str


class CheckoutEnvSettings(EnvSettings):
    paymob_integration_ids: str
    intention_expiration_seconds: int = 3600
    # Empty: the API's own URL, from the request (the template cannot pass it: a cycle).
    public_base_url: str | None = None


class StatusEnvSettings(EnvSettings):
    course_url_template: str
    support_contact: str
    # Where the failed page's button starts a new checkout (it needs the student's token,
    # which PayMob's redirect does not carry); the course page when unset.
    retry_url_template: str | None = None
    payment_history_url: str = "/me/payments"
    status_inquiry_after_seconds: int = 120
    status_inquiry_interval_seconds: int = 30


class ReconcileEnvSettings(EnvSettings):
    pending_threshold_seconds: int = 60
    intention_expiration_seconds: int = 3600
    reconcile_batch_limit: int = 50
    reconcile_expiry_grace_seconds: int = 300
    reconcile_safety_margin_seconds: int = 45


@cache
def payment_repository() -> PaymentRepository:
    settings = PaymentTablesSettings.from_env()
    return PaymentRepository(settings.payments_table, settings.webhooks_table)


@cache
def course_repository() -> CourseRepository:
    from coursepay.storage.catalog import CourseRepository

    return CourseRepository(CoursesSettings.from_env().courses_table)


def paymob_keys(credentials: PaymobCredentials) -> PaymobKeys:
    from coursepay.config import ConfigurationError
    from coursepay.paymob.client import PaymobKeys

    missing = [
        name for name in ("secret_key", "api_key", "public_key") if not getattr(credentials, name)
    ]
    if missing:
        raise ConfigurationError(f"the PayMob secret lacks {', '.join(missing)}")
    return PaymobKeys(
        secret_key=str(credentials.secret_key),
        api_key=str(credentials.api_key),
        public_key=str(credentials.public_key),
    )


@cache
def paymob_client() -> PaymobClient:
    from coursepay.paymob.client import PaymobClient

    settings = PaymobApiSettings.from_env()
    # Read through the secrets cache on every request, so a rotated key arrives in minutes.
    return PaymobClient(
        settings.paymob_base_url,
        lambda: paymob_keys(load_paymob_credentials(settings.paymob_secret_name)),
        call_budget_seconds=settings.paymob_call_budget_seconds,
    )


@cache
def transaction_applier() -> CallbackService:
    """The callback service as the status, result and reconcile paths use it: applying only."""
    secret_name = PaymobApiSettings.from_env().paymob_secret_name
    return CallbackService(
        payments=payment_repository(),
        retry_queue=None,
        secrets=lambda: load_paymob_credentials(secret_name).hmac_secrets,
        # Unused on these paths (no callbacks are received); the service requires one.
        limiter=BadSignatureLimiter(limit=1, window_seconds=1),
    )


@cache
def payment_inquiry() -> PaymentInquiry:
    from coursepay.services.inquiry import PaymentInquiry

    return PaymentInquiry(paymob_client(), transaction_applier())


@cache
def checkout_service() -> CheckoutService:
    from coursepay.config import parse_int_list
    from coursepay.services.checkout import CheckoutService, CheckoutSettings

    settings = CheckoutEnvSettings.from_env()
    return CheckoutService(
        payments=payment_repository(),
        courses=course_repository(),
        enrollments=enrollment_reader(),
        paymob=paymob_client(),
        inquiry=payment_inquiry(),
        settings=CheckoutSettings(
            integration_ids=parse_int_list(settings.paymob_integration_ids),
            expiration_seconds=settings.intention_expiration_seconds,
        ),
    )


def public_base_url(event: Mapping[str, Any]) -> str:
    """PUBLIC_BASE_URL, or the API's own https URL when the deployment left it empty."""
    configured = CheckoutEnvSettings.from_env().public_base_url
    if configured:
        return configured.rstrip("/")
    domain = (event.get("requestContext") or {}).get("domainName")
    if not domain:
        from coursepay.config import ConfigurationError

        raise ConfigurationError("PUBLIC_BASE_URL is empty and the request names no domain")
    return f"https://{domain}"


@cache
def payment_status_service() -> PaymentStatusService:
    from coursepay.services.payment_status import PaymentStatusService, StatusSettings

    settings = StatusEnvSettings.from_env()
    secret_name = PaymobApiSettings.from_env().paymob_secret_name
    return PaymentStatusService(
        payments=payment_repository(),
        enrollments=enrollment_reader(),
        courses=course_repository(),
        inquiry=payment_inquiry(),
        callbacks=transaction_applier(),
        secrets=lambda: load_paymob_credentials(secret_name).hmac_secrets,
        settings=StatusSettings(
            inquiry_after_seconds=settings.status_inquiry_after_seconds,
            inquiry_interval_seconds=settings.status_inquiry_interval_seconds,
        ),
    )


@cache
def result_page_links() -> PageLinks:
    from coursepay.pages.result import PageLinks

    settings = StatusEnvSettings.from_env()
    return PageLinks(
        course_url_template=settings.course_url_template,
        retry_url_template=settings.retry_url_template or settings.course_url_template,
        support_contact=settings.support_contact,
        history_url=settings.payment_history_url,
    )


@cache
def reconcile_service() -> ReconcileService:
    from coursepay.services.reconcile import ReconcileService, ReconcileSettings

    settings = ReconcileEnvSettings.from_env()
    return ReconcileService(
        payments=payment_repository(),
        inquiry=payment_inquiry(),
        settings=ReconcileSettings(
            pending_threshold_seconds=settings.pending_threshold_seconds,
            expiration_seconds=settings.intention_expiration_seconds,
            expiry_grace_seconds=settings.reconcile_expiry_grace_seconds,
            batch_limit=settings.reconcile_batch_limit,
            safety_margin_seconds=settings.reconcile_safety_margin_seconds,
        ),
    )
