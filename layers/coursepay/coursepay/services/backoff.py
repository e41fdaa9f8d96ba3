"""Exponential backoff with jitter for redeliveries from the retry queue."""

from __future__ import annotations

import random

BASE_SECONDS = 5
CAP_SECONDS = 900  # SQS allows up to 12 hours; a quarter of an hour keeps the DLQ timely


def redelivery_delay(receive_count: int, rng: random.Random | None = None) -> int:
    """Seconds before the next delivery after `receive_count` failed ones.

    Equal jitter: half the exponential step is fixed, half random, so retries of a burst
    spread out without any of them coming back at once.
    """
    step = min(CAP_SECONDS, BASE_SECONDS * 2 ** max(0, receive_count - 1))
    half = step / 2
    return int(half + (rng or random).uniform(0, half))
