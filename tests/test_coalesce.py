"""The Coalescer on its own: pure asyncio, no Milvus."""

from __future__ import annotations

import asyncio
import gc

import pytest

from asyncrag.store.coalesce import Coalescer, ItemError


class Recorder:
    """A `run_batch` that records every batch and doubles each item (or fails on bad ones)."""

    def __init__(self, *, bad: set = frozenset(), delay: float = 0.0) -> None:
        self.batches: list[tuple[object, list]] = []
        self.bad = bad
        self.delay = delay
        self.running = 0
        self.most_running = 0
        self.release: asyncio.Event | None = None

    async def __call__(self, key, items):
        self.batches.append((key, list(items)))
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            if self.release is not None:
                await self.release.wait()
            if self.delay:
                await asyncio.sleep(self.delay)
            wrong = [i for i in items if i in self.bad]
            if wrong:
                raise ValueError(f"bad item {wrong[0]}")
            return [i * 2 for i in items]
        finally:
            self.running -= 1

    @property
    def sizes(self) -> list[int]:
        return [len(items) for _, items in self.batches]


async def test_concurrent_submits_share_one_batch_and_each_gets_its_own_result() -> None:
    run = Recorder()
    c = Coalescer(run, max_items=1000)
    results = await asyncio.gather(*(c.submit("k", i) for i in range(100)))
    assert results == [i * 2 for i in range(100)]
    assert c.batches_sent == 1 and run.sizes == [100]


async def test_flush_by_count() -> None:
    run = Recorder()
    c = Coalescer(run, max_items=10, max_wait=0.05)
    results = await asyncio.gather(*(c.submit("k", i) for i in range(25)))
    assert results == [i * 2 for i in range(25)]
    assert run.sizes == [10, 10, 5]


async def test_count_of_weighs_items() -> None:
    run = Recorder()
    c = Coalescer(run, max_items=10, max_wait=0.05, count_of=lambda i: 4)  # 2 items fit, a 3rd would overflow
    await asyncio.gather(*(c.submit("k", i) for i in range(5)))
    assert run.sizes == [2, 2, 1]


async def test_flush_by_bytes() -> None:
    run = Recorder()
    c = Coalescer(run, max_items=1000, max_bytes=100, max_wait=0.05, size_of=lambda i: 30)
    await asyncio.gather(*(c.submit("k", i) for i in range(7)))
    assert run.sizes == [3, 3, 1]  # 4 × 30 > 100: a batch never goes over the budget


async def test_flush_after_time_window() -> None:
    run = Recorder()
    c = Coalescer(run, max_items=1000, max_wait=0.05)
    loop = asyncio.get_running_loop()
    start = loop.time()
    first = asyncio.create_task(c.submit("k", 1))
    await asyncio.sleep(0.01)
    second = asyncio.create_task(c.submit("k", 2))  # inside the window: same batch
    assert await first == 2 and await second == 4
    assert loop.time() - start >= 0.045
    assert run.sizes == [2]
    await asyncio.sleep(0.01)
    assert await c.submit("k", 3) == 6  # a later call opens a new window
    assert run.sizes == [2, 1]


async def test_keys_never_share_a_batch() -> None:
    run = Recorder()
    c = Coalescer(run)
    results = await asyncio.gather(*(c.submit(i % 3, i) for i in range(30)))
    assert results == [i * 2 for i in range(30)]
    assert sorted(key for key, _ in run.batches) == [0, 1, 2]
    assert all(all(i % 3 == key for i in items) for key, items in run.batches)


async def test_a_failing_item_fails_only_its_own_caller() -> None:
    run = Recorder(bad={7, 21})
    c = Coalescer(run, max_items=1000)
    outcomes = await asyncio.gather(*(c.submit("k", i) for i in range(32)), return_exceptions=True)
    for i, outcome in enumerate(outcomes):
        if i in (7, 21):
            assert isinstance(outcome, ValueError) and str(outcome) == f"bad item {i}"
        else:
            assert outcome == i * 2
    # bisection: far fewer requests than one per item
    assert c.batches_sent < 32


async def test_item_errors_fail_their_callers_without_a_retry() -> None:
    async def run(key, items):
        return [ItemError(KeyError(i)) if i % 2 else i for i in items]

    c = Coalescer(run)
    outcomes = await asyncio.gather(*(c.submit("k", i) for i in range(6)), return_exceptions=True)
    assert [o if not isinstance(o, KeyError) else "err" for o in outcomes] == [0, "err", 2, "err", 4, "err"]
    assert c.batches_sent == 1


async def test_errors_not_worth_splitting_fail_the_whole_batch_once() -> None:
    calls = 0

    async def run(key, items):
        nonlocal calls
        calls += 1
        raise ConnectionError("server down")

    c = Coalescer(run, split_on=lambda e: not isinstance(e, ConnectionError))
    outcomes = await asyncio.gather(*(c.submit("k", i) for i in range(10)), return_exceptions=True)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert calls == 1


async def test_a_batch_with_the_wrong_number_of_results_is_an_error() -> None:
    async def run(key, items):
        return items[:-1]

    c = Coalescer(run)
    outcomes = await asyncio.gather(*(c.submit("k", i) for i in range(4)), return_exceptions=True)
    assert all(isinstance(o, RuntimeError) for o in outcomes)


async def test_cancelling_a_waiting_caller_removes_its_item() -> None:
    run = Recorder()
    c = Coalescer(run, max_wait=0.05)
    tasks = [asyncio.create_task(c.submit("k", i)) for i in range(5)]
    await asyncio.sleep(0)  # all five are waiting for the window to close
    tasks[2].cancel()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[2], asyncio.CancelledError)
    assert [done[i] for i in (0, 1, 3, 4)] == [0, 2, 6, 8]
    assert run.sizes == [4] and 2 not in run.batches[0][1]


async def test_cancelling_every_caller_sends_nothing() -> None:
    run = Recorder()
    c = Coalescer(run, max_wait=0.02)
    tasks = [asyncio.create_task(c.submit("k", i)) for i in range(3)]
    await asyncio.sleep(0)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await asyncio.sleep(0.05)
    assert run.batches == [] and c.batches_sent == 0


async def test_cancelling_a_caller_while_its_batch_is_in_flight_is_clean() -> None:
    run = Recorder()
    run.release = asyncio.Event()
    c = Coalescer(run)
    tasks = [asyncio.create_task(c.submit("k", i)) for i in range(3)]
    while not run.batches:
        await asyncio.sleep(0.001)
    tasks[0].cancel()
    run.release.set()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(done[0], asyncio.CancelledError)
    assert done[1:] == [2, 4]


async def test_cancelled_callers_in_a_failing_batch_leave_no_unretrieved_errors(recwarn) -> None:
    run = Recorder(bad={1})
    run.release = asyncio.Event()
    c = Coalescer(run)
    tasks = [asyncio.create_task(c.submit("k", i)) for i in range(3)]
    while not run.batches:
        await asyncio.sleep(0.001)
    tasks[1].cancel()  # the bad one goes away while its batch is in flight
    run.release.set()
    done = await asyncio.gather(*tasks, return_exceptions=True)
    assert done[0] == 0 and done[2] == 4
    gc.collect()
    assert not [w for w in recwarn if "never retrieved" in str(w.message)]


async def test_max_in_flight_bounds_concurrent_batches() -> None:
    run = Recorder(delay=0.02)
    c = Coalescer(run, max_items=2, max_in_flight=3)
    results = await asyncio.gather(*(c.submit("k", i) for i in range(20)))
    assert results == [i * 2 for i in range(20)]
    assert run.most_running == 3 and c.batches_sent == 10


async def test_drain_sends_pending_items_and_waits_for_batches_in_flight() -> None:
    run = Recorder(delay=0.02)
    c = Coalescer(run, max_wait=60)  # without drain() the window would stay open for a minute
    tasks = [asyncio.create_task(c.submit("k", i)) for i in range(5)]
    await asyncio.sleep(0)
    await asyncio.wait_for(c.drain(), timeout=5)
    assert run.sizes == [5]
    assert all(t.done() for t in tasks)
    assert [t.result() for t in tasks] == [0, 2, 4, 6, 8]
    await c.drain()  # nothing left: a no-op


@pytest.mark.parametrize("n", [1, 2, 3, 64])
async def test_every_item_of_an_all_bad_batch_gets_its_own_error(n: int) -> None:
    run = Recorder(bad=set(range(n)))
    c = Coalescer(run)
    outcomes = await asyncio.gather(*(c.submit("k", i) for i in range(n)), return_exceptions=True)
    assert [str(o) for o in outcomes] == [f"bad item {i}" for i in range(n)]


async def test_on_batch_hears_each_request_with_its_weight() -> None:
    heard: list[int] = []
    c = Coalescer(Recorder(), max_items=10, max_wait=0.05, count_of=lambda i: 2, on_batch=heard.append)
    await asyncio.gather(*(c.submit("k", i) for i in range(7)))
    assert heard == [10, 4] and c.batches_sent == 2  # items weigh 2: five fill a batch
