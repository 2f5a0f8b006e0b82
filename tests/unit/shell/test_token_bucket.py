"""The client's rate limit: spare tokens go only to writes nobody else is waiting behind."""

from __future__ import annotations

import asyncio
import time

from sidecarset.shell.kube.client import TokenBucket
from tests.unit.private_loop import run


def test_a_spare_token_is_taken_only_when_one_is_free() -> None:
    bucket = TokenBucket(qps=10, burst=2)

    assert bucket.take_spare()
    assert bucket.take_spare()
    assert not bucket.take_spare()  # the burst is spent; nothing is borrowed from the future


def test_a_spare_token_is_never_taken_from_reserved_callers() -> None:
    bucket = TokenBucket(qps=10, burst=1)
    bucket.reserve()
    bucket.reserve()  # due in 0.1 s: the bucket owes a token

    assert not bucket.take_spare()


def test_no_limit_means_every_spare_request_goes_at_once() -> None:
    bucket = TokenBucket(qps=0, burst=1)

    assert all(bucket.take_spare() for _ in range(100))


def test_spare_writes_wait_until_the_queued_ones_have_gone() -> None:
    async def go() -> tuple[list[float], float]:
        bucket = TokenBucket(qps=20, burst=1)
        start = time.monotonic()
        regular: list[float] = []

        async def one() -> None:
            await bucket.acquire()
            regular.append(time.monotonic() - start)

        async def spare() -> float:
            await asyncio.sleep(0)  # arrives after the regular callers reserved their tokens
            await bucket.acquire_spare()
            return time.monotonic() - start

        late = asyncio.create_task(spare())
        await asyncio.gather(*(one() for _ in range(4)))
        return regular, await late

    regular, spare_at = run(go())

    assert max(regular) < 0.25  # 3 tokens at 20/s after the first
    assert spare_at >= max(regular)
    assert spare_at > 0.19  # not before the regular callers' last token came due


def test_a_spare_write_sleeps_until_the_reserved_tokens_are_due() -> None:
    """Not once per token's worth of time: a waiting write behind 10 reserved tokens looks
    about twice, not eleven times."""

    async def go() -> tuple[int, float]:
        bucket = TokenBucket(qps=50, burst=1)
        looks = 0
        take = bucket.take_spare

        def counted() -> bool:
            nonlocal looks
            looks += 1
            return take()

        bucket.take_spare = counted  # type: ignore[method-assign]
        for _ in range(11):
            bucket.reserve()  # the burst, then 10 owed: due over the next 0.2 s
        start = time.monotonic()
        await bucket.acquire_spare()
        return looks, time.monotonic() - start

    looks, waited = run(go())

    assert waited >= 0.2 - 0.01
    assert looks <= 3, looks
