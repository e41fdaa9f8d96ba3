"""PayMob credentials from Secrets Manager, cached per container by powertools parameters."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.utilities import parameters
from pydantic import BaseModel, ConfigDict

from coursepay.domain.signature import HmacSecrets
from coursepay.storage.clients import CONFIG

# Long enough that a warm container asks once in a while, short enough that a rotated
# secret reaches every container within minutes.
SECRET_MAX_AGE_SECONDS = 300


class PaymobCredentials(BaseModel):
    """The one secret holding every PayMob credential of an environment."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    hmac_secret: str
    hmac_secret_previous: str | None = None
    secret_key: str | None = None
    public_key: str | None = None
    api_key: str | None = None

    def __repr__(self) -> str:
        return "PaymobCredentials(<redacted>)"

    __str__ = __repr__

    @property
    def hmac_secrets(self) -> HmacSecrets:
        return HmacSecrets(current=self.hmac_secret, previous=self.hmac_secret_previous or None)


@cache
def _provider() -> parameters.SecretsProvider:
    # The storage timeouts, not botocore's 60 s defaults: a cold container's first callback
    # must not wait a minute on Secrets Manager.
    return parameters.SecretsProvider(boto_config=CONFIG)


def load_paymob_credentials(
    secret_name: str, max_age: int = SECRET_MAX_AGE_SECONDS
) -> PaymobCredentials:
    raw: Any = _provider().get(secret_name, transform="json", max_age=max_age)
    return PaymobCredentials.model_validate(raw)


def forget_cached_secrets() -> None:
    """Drop the container's cached secret (and its client): the next read asks again."""
    _provider.cache_clear()
