"""Settings of the PayMob simulator: keys, integrations, and the callback and inquiry switches."""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, fields
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

CALLBACK_MODES: tuple[str, ...] = ("normal", "duplicate", "delay", "reorder", "drop")
INQUIRY_MODES: tuple[str, ...] = ("ok", "fail")
ENV_PREFIX = "PAYMOB_SIM_"

_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


class ConfigError(ValueError):
    """Settings the simulator cannot run with, with one message per offending field."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        super().__init__("; ".join(f"{k}: {' '.join(v)}" for k, v in errors.items()))
        self.errors = errors


@dataclass(frozen=True)
class SimulatorConfig:
    """Everything fixed for the lifetime of one simulator.

    The defaults are deterministic so that the local stack, the tests and a developer's
    shell agree on the keys without sharing files. They are test-mode values only.
    """

    # Intention API and refund/void: `Authorization: Token <secret_key>`.
    secret_key: str = "sim_sk_test_5e1f0c0de5e1f0c0de5e1f0c0de5e1f0"
    # Identifies the merchant on the checkout page; may reach the browser.
    public_key: str = "sim_pk_test_5e1f0c0de5e1f0c0"
    # Exchanged at /api/auth/tokens for a bearer token (inquiry APIs).
    api_key: str = "sim_api_key_5e1f0c0de5e1f0c0de"
    # Signs callbacks and redirects, as the HMAC secret of a PayMob account does.
    hmac_secret: str = "SIMULATOR0HMAC0SECRET0000000000"
    card_integration_id: int = 4097558
    wallet_integration_id: int = 4097559
    # PayMob's `owner` and `payment_key_claims.user_id`.
    merchant_id: int = 302852
    profile_id: int = 164295
    # Where the simulator says it lives; defaults to http://<host>:<port> once bound.
    base_url: str | None = None
    # Used when an intention carries no URL, like the URLs set on a PayMob integration.
    default_notification_url: str | None = None
    default_redirection_url: str | None = None
    # Initial switches; they can be changed at run time through /_sim/config.
    callback_mode: str = "normal"
    delay_seconds: float = 2.0
    inquiry_mode: str = "ok"
    # PayMob does not document whether or how it retries a failed callback; the simulator
    # retries a few times with exponential backoff so a briefly unavailable webhook
    # still gets its callback and a dead one is visible in the delivery log.
    callback_retries: int = 3
    retry_backoff_seconds: float = 0.5
    callback_timeout_seconds: float = 5.0
    default_expiration_seconds: int = 3600
    # Timestamps are naive UTC like the sample callbacks; an offset such as "+04:00"
    # renders them with it, as some PayMob regions do, which puts a `+` in signed fields.
    timezone_offset: str | None = None
    first_order_id: int = 400000001
    first_transaction_id: int = 500000001

    def __post_init__(self) -> None:
        errors: dict[str, list[str]] = {}
        for name in ("secret_key", "public_key", "api_key", "hmac_secret"):
            if not getattr(self, name):
                errors[name] = ["must not be empty"]
        if self.card_integration_id == self.wallet_integration_id:
            errors["wallet_integration_id"] = ["must differ from card_integration_id"]
        if self.callback_mode not in CALLBACK_MODES:
            errors["callback_mode"] = [f"must be one of {', '.join(CALLBACK_MODES)}"]
        if self.inquiry_mode not in INQUIRY_MODES:
            errors["inquiry_mode"] = [f"must be one of {', '.join(INQUIRY_MODES)}"]
        if self.delay_seconds < 0:
            errors["delay_seconds"] = ["must not be negative"]
        if self.callback_retries < 0:
            errors["callback_retries"] = ["must not be negative"]
        if self.retry_backoff_seconds < 0 or self.callback_timeout_seconds <= 0:
            errors["retry_backoff_seconds"] = ["backoff >= 0 and timeout > 0 required"]
        if self.default_expiration_seconds <= 0:
            errors["default_expiration_seconds"] = ["must be positive"]
        if self.timezone_offset is not None and not _OFFSET.match(self.timezone_offset):
            errors["timezone_offset"] = ['must look like "+04:00" or "-03:30"']
        if errors:
            raise ConfigError(errors)

    @property
    def integration_ids(self) -> tuple[int, int]:
        """The integrations this merchant owns: card, then wallet."""
        return (self.card_integration_id, self.wallet_integration_id)

    @property
    def tzinfo(self) -> timezone | None:
        match = _OFFSET.match(self.timezone_offset or "")
        if match is None:
            return None
        sign = -1 if match.group(1) == "-" else 1
        delta = timedelta(hours=int(match.group(2)), minutes=int(match.group(3)))
        return timezone(sign * delta)

    def render_time(self, moment: datetime) -> str:
        """A timestamp as PayMob writes it: microseconds, offset only when configured."""
        tz = self.tzinfo
        if tz is None:
            return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds")
        return moment.astimezone(tz).isoformat(timespec="microseconds")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SimulatorConfig:
        """Defaults overridden by PAYMOB_SIM_<FIELD> variables (PAYMOB_SIM_HMAC_SECRET, ...)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        errors: dict[str, list[str]] = {}
        for field in fields(cls):
            raw = env.get(ENV_PREFIX + field.name.upper())
            if raw is None:
                continue
            default = field.default
            try:
                if isinstance(default, int):
                    values[field.name] = int(raw)
                elif isinstance(default, float):
                    values[field.name] = float(raw)
                else:
                    values[field.name] = raw or None
            except ValueError:
                errors[ENV_PREFIX + field.name.upper()] = [f"not a valid number: {raw!r}"]
        if errors:
            raise ConfigError(errors)
        return cls(**values)


@dataclass(frozen=True)
class Switches:
    """The behaviours a test flips at run time."""

    callback_mode: str
    delay_seconds: float
    inquiry_mode: str

    def to_json(self) -> dict[str, Any]:
        return {
            "callback_mode": self.callback_mode,
            "delay_seconds": self.delay_seconds,
            "inquiry_mode": self.inquiry_mode,
        }


class SwitchBoard:
    """Thread-safe holder of the current switches; readers get an immutable snapshot."""

    def __init__(self, config: SimulatorConfig) -> None:
        self._initial = Switches(config.callback_mode, config.delay_seconds, config.inquiry_mode)
        self._current = self._initial
        self._lock = threading.Lock()

    @property
    def current(self) -> Switches:
        with self._lock:
            return self._current

    def update(self, changes: Mapping[str, Any]) -> Switches:
        """Apply a partial update, all or nothing; ConfigError lists every bad field."""
        errors: dict[str, list[str]] = {}
        for key in changes:
            if key not in ("callback_mode", "delay_seconds", "inquiry_mode"):
                errors[key] = ["unknown switch"]
        mode = changes.get("callback_mode")
        if mode is not None and mode not in CALLBACK_MODES:
            errors["callback_mode"] = [f"must be one of {', '.join(CALLBACK_MODES)}"]
        inquiry = changes.get("inquiry_mode")
        if inquiry is not None and inquiry not in INQUIRY_MODES:
            errors["inquiry_mode"] = [f"must be one of {', '.join(INQUIRY_MODES)}"]
        delay = changes.get("delay_seconds")
        if delay is not None and (
            isinstance(delay, bool) or not isinstance(delay, int | float) or delay < 0
        ):
            errors["delay_seconds"] = ["must be a non-negative number of seconds"]
        if errors:
            raise ConfigError(errors)
        with self._lock:
            now = self._current
            self._current = Switches(
                callback_mode=mode if mode is not None else now.callback_mode,
                delay_seconds=float(delay) if delay is not None else now.delay_seconds,
                inquiry_mode=inquiry if inquiry is not None else now.inquiry_mode,
            )
            return self._current

    def reset(self) -> Switches:
        with self._lock:
            self._current = self._initial
            return self._current
