"""What every LLM backend offers: streamed chat completions, off the event loop."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

from asyncrag.errors import LLMUnavailable

Messages = list[dict[str, str]]
__all__ = ["ChatModel", "LLMUnavailable", "Messages", "stream_in_thread"]


class ChatModel(Protocol):
    name: str

    def astream(self, messages: Messages, max_tokens: int) -> AsyncIterator[str]:
        """Text pieces of the answer as they are generated."""
        ...


async def stream_in_thread(produce: Callable[[], Iterator[str]]) -> AsyncIterator[str]:
    """Run a blocking token generator in a thread and yield its pieces on the event loop."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str | None, BaseException | None]] = asyncio.Queue()
    stop = threading.Event()

    def run() -> None:
        try:
            for piece in produce():
                if stop.is_set():
                    break
                loop.call_soon_threadsafe(queue.put_nowait, (piece, None))
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            loop.call_soon_threadsafe(queue.put_nowait, (None, e))
        else:
            loop.call_soon_threadsafe(queue.put_nowait, (None, None))

    thread = threading.Thread(target=run, name="llm-generate", daemon=True)
    thread.start()
    try:
        while True:
            piece, error = await queue.get()
            if error is not None:
                raise error
            if piece is None:
                return
            yield piece
    finally:
        stop.set()
