"""Any OpenAI-compatible embeddings endpoint (OpenAI, vLLM, Ollama, llama.cpp's server).

Configured the OpenAI way: OPENAI_BASE_URL and OPENAI_API_KEY.
"""

from __future__ import annotations

import os
from pathlib import Path

from asyncrag.errors import EmbedderError


class OpenAIEmbedder:
    def __init__(self, model: str, max_tokens: int = 512) -> None:
        import httpx
        from openai import OpenAI, OpenAIError

        self.model = model
        self.name = self.identity = f"openai:{model}"
        self.max_tokens = max_tokens
        self.tokenizer_file: Path | None = None
        try:
            # Local servers need no key, but the client insists on one; a server that is not there
            # should fail in seconds, not after the default 600 s timeout.
            self.client = OpenAI(
                api_key=os.environ.get("OPENAI_API_KEY") or "unused",
                timeout=httpx.Timeout(120.0, connect=5.0),
                max_retries=0,  # the ingest pipeline retries, with backoff, honouring Retry-After
            )
            self.dim = len(self.embed(["dimension probe"])[0])
        except OpenAIError as e:
            raise EmbedderError(
                f"the OpenAI-compatible embedding model {model!r} at {os.environ.get('OPENAI_BASE_URL') or 'OpenAI'} "
                f"failed ({type(e).__name__}: {e}); check OPENAI_BASE_URL / OPENAI_API_KEY and the model name"
            ) from None

    def embed(self, texts: list[str]) -> list[list[float]]:
        response = self.client.embeddings.create(model=self.model, input=texts)
        return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
