"""Any OpenAI-compatible chat endpoint: OpenAI, vLLM, Ollama, llama.cpp's server.

Configured the OpenAI way: OPENAI_BASE_URL and OPENAI_API_KEY.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, cast

from asyncrag.llm.base import LLMUnavailable, Messages

if TYPE_CHECKING:
    from openai import AsyncStream
    from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam


class OpenAIChat:
    def __init__(self, model: str) -> None:
        import httpx
        from openai import AsyncOpenAI

        self.name = f"openai:{model}"
        self.model = model
        # Local servers need no key, but the client insists on one. The default timeout (600 s) and
        # retries would leave a user waiting minutes for a server that is not there.
        self.client = AsyncOpenAI(
            api_key=os.environ.get("OPENAI_API_KEY") or "unused",
            timeout=httpx.Timeout(120.0, connect=5.0),
            max_retries=1,
        )

    async def astream(self, messages: Messages, max_tokens: int) -> AsyncIterator[str]:
        from openai import APIError

        try:
            stream: AsyncStream[ChatCompletionChunk] = await self.client.chat.completions.create(
                model=self.model,
                messages=cast("list[ChatCompletionMessageParam]", messages),
                max_tokens=max_tokens,
                temperature=0,
                stream=True,
            )
            async for chunk in stream:
                if chunk.choices and (piece := chunk.choices[0].delta.content):
                    yield piece
        except APIError as e:  # unreachable, wrong model, bad key, ...: one clear line, not a traceback
            raise LLMUnavailable(
                f"the OpenAI-compatible LLM {self.model!r} at {self.client.base_url} failed ({type(e).__name__}: {e}); "
                "check OPENAI_BASE_URL / OPENAI_API_KEY and the model name"
            ) from None
