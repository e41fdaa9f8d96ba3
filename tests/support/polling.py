"""Waiting for something asynchronous (a pump, a callback, a stream) with a deadline."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_until[T](
    probe: Callable[[], T | None],
    *,
    timeout: float = 10.0,
    interval: float = 0.1,
    message: str = "the condition",
) -> T:
    """Call `probe` until it returns something truthy, and return that; fail after `timeout`.

    The failure names what was awaited and the last value seen, so a red test says what
    never happened rather than just "timeout".
    """
    deadline = time.monotonic() + timeout
    last: T | None = None
    while True:
        last = probe()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(
                f"{message} did not happen within {timeout:.1f} s (last: {last!r})"
            )
        time.sleep(interval)
