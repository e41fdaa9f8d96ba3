"""Composition root: builds each use case with its real adapters, once per container."""

from __future__ import annotations

from functools import cache

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
