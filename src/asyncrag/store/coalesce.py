"""Coalesce many concurrent small requests into few large ones.

Milvus answers one insert of 1000 rows, or one search with 1000 query vectors, far
faster than 1000 separate requests. A `Coalescer` lets a thousand independent
callers each `await submit(key, item)` while it sends their items in batches:
items with the same `key` (same collection, filter, top-k, ...) can share a request.

Guarantees:
- each caller gets exactly its own result or its own exception;
- a failing batch is split in halves and retried (bisection), so one bad item never fails
  its neighbours and costs about 2·log2(n) extra requests, not n; errors for which a retry
  makes no sense (`split_on` says no: the server is down, a timeout) fail the whole batch;
- a caller cancelled before its batch is sent is dropped from the batch; one cancelled
  while its batch is in flight just doesn't get the answer (the request still completes).

`run_batch` may also return `ItemError(error)` in place of one item's result: that item's
caller gets `error`, the others their results, with no retry (for errors found per item
before anything is sent, such as a row that cannot be serialised).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
T = TypeVar("T")
R = TypeVar("R")

RunBatch = Callable[[K, list[T]], Awaitable[Sequence["R | ItemError"]]]


@dataclass(frozen=True)
class ItemError:
    """One item's own failure, returned by `run_batch` in place of its result."""

    error: BaseException


@dataclass
class _Pending(Generic[T, R]):
    items: list[T] = field(default_factory=list)
    futures: list[asyncio.Future[R]] = field(default_factory=list)
    count: int = 0
    nbytes: int = 0
    timer: asyncio.TimerHandle | None = None


class Coalescer(Generic[K, T, R]):
    """Batch `submit` calls per key; flush by count, by bytes, or `max_wait` seconds after the first item.

    `run_batch(key, items)` must return one result per item, in order. `count_of` and
    `size_of` weigh an item (rows, bytes) against `max_items` and `max_bytes`.
    `max_in_flight` bounds concurrent batches (backpressure on the server).
    `split_on(error)` decides whether a failed batch is bisected and retried (default: always).
    `on_batch(count)`, if set, hears of every request sent with its weight (metrics: how well callers coalesce).
    """

    def __init__(
        self,
        run_batch: RunBatch[K, T, R],
        *,
        max_items: int = 1000,
        max_bytes: int = 16 * 1024 * 1024,
        max_wait: float = 0.002,
        max_in_flight: int = 4,
        count_of: Callable[[T], int] = lambda _: 1,
        size_of: Callable[[T], int] = lambda _: 0,
        split_on: Callable[[BaseException], bool] = lambda _: True,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._run_batch = run_batch
        self.max_items = max_items
        self.max_bytes = max_bytes
        self.max_wait = max_wait
        self._count_of = count_of
        self._size_of = size_of
        self._split_on = split_on
        self.on_batch = on_batch
        self._pending: dict[K, _Pending[T, R]] = {}
        self._slots = asyncio.Semaphore(max_in_flight)
        self._tasks: set[asyncio.Task[None]] = set()
        self.batches_sent = 0  # requests made, retries included (tests and benchmarks read it)

    async def submit(self, key: K, item: T) -> R:
        """Queue `item` under `key` and wait for its own result (or raise its own error)."""
        count, size = self._count_of(item), self._size_of(item)
        pending = self._pending.get(key)
        if pending is not None and (pending.count + count > self.max_items or pending.nbytes + size > self.max_bytes):
            self._flush(key)  # the item would overflow the open batch: send that one first
            pending = None
        loop = asyncio.get_running_loop()
        if pending is None:
            pending = self._pending[key] = _Pending()
        future: asyncio.Future[R] = loop.create_future()
        pending.items.append(item)
        pending.futures.append(future)
        pending.count += count
        pending.nbytes += size
        if pending.count >= self.max_items or pending.nbytes >= self.max_bytes:
            self._flush(key)
        elif pending.timer is None:
            pending.timer = loop.call_later(self.max_wait, self._flush, key)
        return await future

    async def drain(self) -> None:
        """Send everything pending and wait for all batches in flight."""
        for key in list(self._pending):
            self._flush(key)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _flush(self, key: K) -> None:
        pending = self._pending.pop(key, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        live = [(i, f) for i, f in zip(pending.items, pending.futures, strict=True) if not f.done()]
        if not live:
            return
        task = asyncio.ensure_future(self._send(key, live))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, key: K, live: list[tuple[T, asyncio.Future[R]]]) -> None:
        async with self._slots:
            live = [(i, f) for i, f in live if not f.done()]  # drop callers cancelled while queued
            if not live:
                return
            self.batches_sent += 1
            if self.on_batch is not None:
                self.on_batch(sum(self._count_of(i) for i, _ in live))
            try:
                results = await self._run_batch(key, [i for i, _ in live])
                if len(results) != len(live):
                    raise RuntimeError(f"batch returned {len(results)} results for {len(live)} items")
            except Exception as batch_error:  # noqa: BLE001 - any failure goes back to the callers
                if len(live) == 1 or not self._split_on(batch_error):
                    for _, future in live:
                        _settle(future, error=batch_error)
                    return
                results = None
        if results is None:  # isolate the bad item(s), outside the slot so the halves can run
            half = len(live) // 2
            await asyncio.gather(self._send(key, live[:half]), self._send(key, live[half:]))
            return
        for (_, future), result in zip(live, results, strict=True):
            if isinstance(result, ItemError):
                _settle(future, error=result.error)
            else:
                _settle(future, result=result)


def _settle(future: asyncio.Future[R], *, result: R | None = None, error: BaseException | None = None) -> None:
    if future.done():  # the caller was cancelled while its batch was in flight
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)  # type: ignore[arg-type]
