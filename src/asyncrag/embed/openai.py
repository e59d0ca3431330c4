"""Any OpenAI-compatible embeddings endpoint (OpenAI, vLLM, Ollama, llama.cpp's server)."""

from __future__ import annotations

from pathlib import Path


class OpenAIEmbedder:
    def __init__(self, model: str, max_tokens: int = 512) -> None:
        from openai import OpenAI  # reads OPENAI_BASE_URL / OPENAI_API_KEY

        self.client = OpenAI()
        self.model = model
        self.name = f"openai:{model}"
        self.max_tokens = max_tokens
        self.tokenizer_file: Path | None = None
        self.dim = len(self.embed(["dimension probe"])[0])

    def embed(self, texts: list[str]) -> list[list[float]]:
        response = self.client.embeddings.create(model=self.model, input=texts)
        return [item.embedding for item in sorted(response.data, key=lambda d: d.index)]
