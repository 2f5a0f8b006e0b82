"""The clock every shell component receives, so tests can run timers on fake time.

`monotonic()` measures intervals (deadlines, backoff, lease expiry as observed locally); `now()`
is wall time for what is written to the API (a Lease's renewTime). A component that also uses
asyncio timeouts relies on `monotonic()` agreeing with the event loop's clock, as it does for
`RealClock` on the standard loop and for a test clock that reads `loop.time()`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards; only differences mean anything."""
        ...

    def now(self) -> datetime:
        """The current wall time, timezone-aware (UTC)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds` on the monotonic clock; zero or less just yields to the loop."""
        ...


class RealClock:
    """The process's clocks: `time.monotonic`, UTC wall time and `asyncio.sleep`."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))
