"""An answer as it is written: shared by `/v1/ask` (SSE) and `/v1/chat/completions` (OpenAI chunks)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence

from asyncrag.api.deps import Server
from asyncrag.config import SearchMode
from asyncrag.results import Answer


async def answer_tokens(
    server: Server, question: str, top_k: int | None, filter: str, mode: SearchMode | None = None,
    history: Sequence[str] = (),
) -> AsyncIterator[str | Answer]:
    """The answer's tokens as they come (an LLM's; a quoted answer has none), then the `Answer`.
    Retrieval errors are raised before the first item, so that a caller can still answer them with
    a 4xx instead of a broken stream. `history`: the conversation's earlier user turns."""
    queue: asyncio.Queue[str | None] = asyncio.Queue()
    ask = server.rag.ask(question, top_k, filter, on_token=queue.put_nowait, mode=mode, history=history)
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
