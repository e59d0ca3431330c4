"""An answer as it is written: shared by `/v1/ask` (SSE) and `/v1/chat/completions` (OpenAI chunks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import TypeVar

from starlette.requests import Request

from asyncrag.api.deps import Server
from asyncrag.config import SearchMode
from asyncrag.results import Answer

T = TypeVar("T")
DISCONNECT_POLL_S = 0.25


async def unless_gone(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result; cancelled when the client goes away first. A non-streamed answer is not
    written for nobody (an abandoned `/v1/ask` went on generating for ~30 s)."""
    task = asyncio.ensure_future(work)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
            if not task.done() and await request.is_disconnected():
                task.cancel()
                break
        return await task
    finally:
        task.cancel()


async def answer_tokens(
    server: Server, question: str, top_k: int | None, filter: str, mode: SearchMode | None = None,
    history: Sequence[str] = (), max_tokens: int | None = None,
) -> AsyncIterator[str | Answer]:
    """The answer's tokens as they come (an LLM's; a quoted answer has none), then the `Answer`.
    Retrieval errors are raised before the first item, so that a caller can still answer them with
    a 4xx instead of a broken stream. `history`: the conversation's earlier user turns."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    ask = server.rag.ask(
        question, top_k, filter, on_token=queue.put_nowait, mode=mode, history=history, max_tokens=max_tokens
    )
    task = asyncio.ensure_future(ask)
    task.add_done_callback(lambda _: queue.put_nowait(None))
    first = await queue.get()
    if first is None:
        task.result()  # raises the retrieval error, if any

    async def rest() -> AsyncIterator[str | Answer]:
        try:
            piece = first
            while piece is not None:
                yield piece
                piece = await queue.get()
            yield task.result()
        finally:
            task.cancel()  # the client went away: stop generating

    return rest()
