"""The page language from the browser's Accept-Language: Arabic (right to left) or English."""

from __future__ import annotations

from enum import StrEnum


class Language(StrEnum):
    ENGLISH = "en"
    ARABIC = "ar"

    @property
    def direction(self) -> str:
        return "rtl" if self is Language.ARABIC else "ltr"


DEFAULT_LANGUAGE = Language.ENGLISH
_MAX_RANGES = 32  # a header is attacker-controlled: read a bounded number of ranges


def choose_language(accept_language: str | None) -> Language:
    """The supported language the browser prefers most (RFC 9110 quality values).

    `ar-EG` counts as Arabic and `en-GB` as English; ties go to the earlier range; a
    header naming neither (or none at all) gets English.
    """
    best: tuple[float, int, Language] | None = None
    for position, entry in enumerate((accept_language or "").split(",")[:_MAX_RANGES]):
        tag, _, params = entry.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        try:
            language = Language(primary)
        except ValueError:
            continue
        quality = _quality(params)
        if quality <= 0:
            continue
        candidate = (-quality, position, language)
        if best is None or candidate < best:
            best = candidate
    return DEFAULT_LANGUAGE if best is None else best[2]


def _quality(params: str) -> float:
    for param in params.split(";"):
        name, _, value = param.strip().partition("=")
        if name.strip().lower() == "q":
            try:
                quality = float(value.strip())
            except ValueError:
                return 0.0
            return quality if 0.0 <= quality <= 1.0 else 0.0
    return 1.0
