"""Per-source counting of bad signatures in the container's memory, with no AWS request."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass


@dataclass(slots=True)
class _Window:
    started: float
    failures: int


class BadSignatureLimiter:
    """Fixed-window count of unverifiable requests per source address.

    Memory is bounded: past `max_sources` the least recently seen source is forgotten, so a
    spray from many addresses cannot grow the container. Each container counts on its own;
    API Gateway's route throttling is the fleet-wide limit.
    """

    def __init__(self, limit: int, window_seconds: float, max_sources: int = 10_000) -> None:
        self.limit = limit
        self.window_seconds = window_seconds
        self.max_sources = max_sources
        self._windows: OrderedDict[str, _Window] = OrderedDict()

    def _current(self, source: str, now: float) -> _Window | None:
        window = self._windows.get(source)
        if window is None:
            return None
        if now - window.started >= self.window_seconds:
            del self._windows[source]
            return None
        return window

    def is_blocked(self, source: str, now: float) -> bool:
        window = self._current(source, now)
        return window is not None and window.failures >= self.limit

    def record_failure(self, source: str, now: float) -> bool:
        """Count one bad signature; True exactly when this one reaches the limit."""
        window = self._current(source, now)
        if window is None:
            window = self._windows[source] = _Window(started=now, failures=0)
            if len(self._windows) > self.max_sources:
                self._windows.popitem(last=False)
        else:
            self._windows.move_to_end(source)
        window.failures += 1
        return window.failures == self.limit
