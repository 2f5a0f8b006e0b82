"""`wait_for`: poll a condition with a deadline instead of sleeping; say what was last seen."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    pass


async def wait_for(
    probe: Callable[[], Awaitable[T]],
    done: Callable[[T], bool],
    *,
    timeout: float = 60.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Call `probe` until `done(result)`; return the result. On timeout, fail with the last one."""
    deadline = time.monotonic() + timeout
    last: object = "(never probed)"
    while True:
        try:
            result = await probe()
        except Exception as err:  # a probe that fails is "not yet", but is shown on timeout
            last = f"probe raised {type(err).__name__}: {err}"
        else:
            if done(result):
                return result
            last = result
        if time.monotonic() >= deadline:
            raise WaitTimeout(
                f"timed out after {timeout:.0f}s waiting for {what}; last seen: {str(last)[:3000]}"
            )
        await asyncio.sleep(interval)
