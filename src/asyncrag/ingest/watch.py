"""Keep folders indexed: every burst of changes becomes one incremental ingest run.

`watchfiles` (Rust's `notify`: inotify on Linux) reports changes; a burst (a save, a `git
checkout` touching a thousand files) is gathered until the folders are quiet for `DEBOUNCE_MS`, and
changes that arrive while a run works are gathered for the next one. Each run is `ingest` itself,
with `prune`: the same identities and versions, only what changed is redone (a stat per unchanged
file), and files gone are deleted. A run stopped midway (Ctrl-C) leaves what `ingest` leaves: the
old version of a document whole or the new one, never half of one visible; the next run finishes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import TYPE_CHECKING

import watchfiles

from asyncrag.errors import ConfigError
from asyncrag.results import IngestReport

if TYPE_CHECKING:
    import asyncio

    from asyncrag.rag import AsyncRAG

log = logging.getLogger(__name__)
DEBOUNCE_MS = 300  # quiet time that ends a burst: an editor's save is a few events within ~50 ms
START_MS = 200  # how often the watcher wakes with nothing to say (cheap): the first wake starts the first run


async def watch(
    rag: AsyncRAG,
    paths: Sequence[str | Path],
    on_report: Callable[[IngestReport], Awaitable[None] | None],
    stop: asyncio.Event | None = None,
    doc_id_prefix: str | None = None,
    turn: AbstractAsyncContextManager[object] | None = None,
) -> None:
    """Ingest `paths` (with prune), then again after each burst of changes under them, until `stop`
    is set (or the task is cancelled). `on_report` hears each run's report; each run holds `turn`
    (a server's jobs take turns with it)."""
    given = [str(p) for p in paths]

    async def run() -> None:
        async with turn or contextlib.nullcontext():
            report = await rag.ingest(list(given), prune=True, doc_id_prefix=doc_id_prefix)
        heard = on_report(report)
        if heard is not None:
            await heard

    folders = [p for p in given if Path(p).exists()]
    if not folders:
        raise ConfigError("nothing to watch: none of the given paths exists")
    # The first run starts once the watcher does (its first, empty, yield): a change made during
    # that run is caught by the next one, not lost between the two.
    first = True
    changed = watchfiles.awatch(
        *folders, debounce=DEBOUNCE_MS, stop_event=stop, rust_timeout=START_MS, yield_on_timeout=True
    )
    async for changes in changed:
        if changes or first:
            log.debug("%d changes", len(changes))
            first = False
            await run()
