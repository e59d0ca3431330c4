"""Any OpenAI-compatible chat endpoint: OpenAI, vLLM, Ollama, llama.cpp's server.

Configured the OpenAI way: OPENAI_BASE_URL and OPENAI_API_KEY.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

from asyncrag.llm.base import Messages


class OpenAIChat:
    def __init__(self, model: str) -> None:
        from openai import AsyncOpenAI

        self.name = f"openai:{model}"
        self.model = model
        # Local servers need no key, but the client insists on one.
        self.client = AsyncOpenAI(api_key=os.environ.get("OPENAI_API_KEY") or "unused")

    async def astream(self, messages: Messages, max_tokens: int) -> AsyncIterator[str]:
        stream = await self.client.chat.completions.create(
            model=self.model, messages=messages, max_tokens=max_tokens, temperature=0, stream=True  # type: ignore[arg-type]
        )
        async for chunk in stream:
            if chunk.choices and (piece := chunk.choices[0].delta.content):
                yield piece
