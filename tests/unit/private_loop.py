"""Run one coroutine on a loop of its own.

`asyncio.run` replaces the thread's event loop policy state when it finishes, which can leave
the fake-time (looptime) tests that run later in the same session without a usable loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    loop = asyncio.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
