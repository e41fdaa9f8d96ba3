"""Configuration from the function's environment, validated once per container."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError


class ConfigurationError(RuntimeError):
    """The function's environment lacks or mangles a setting: a deployment fault, not input."""


class EnvSettings(BaseModel):
    """Settings read from environment variables named after the fields, upper-cased."""

    model_config = ConfigDict(frozen=True)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        env = os.environ if environ is None else environ
        values = {name: env[name.upper()] for name in cls.model_fields if env.get(name.upper())}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            raise ConfigurationError(f"{cls.__name__}: {exc}") from None


def parse_int_list(value: str | list[int] | tuple[int, ...]) -> tuple[int, ...]:
    """Comma-separated integers, as CloudFormation passes a list parameter into the environment."""
    if isinstance(value, (list, tuple)):
        return tuple(int(v) for v in value)
    return tuple(int(part) for part in value.split(",") if part.strip())
