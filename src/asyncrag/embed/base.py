"""What every embedding backend offers the pipeline and the query path."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Embedder(Protocol):
    name: str  # for people
    identity: str  # stored with the collection: vectors from another model are not comparable.
    # A local model is known by its weights' hash, not its folder's name.
    dim: int
    max_tokens: int  # the model's window; longer inputs are silently truncated by the model
    tokenizer_file: Path | None  # the model's own tokenizer, to size chunks in its tokens

    def embed(self, texts: list[str]) -> list[list[float]]:
        """Blocking; callers run it off the event loop."""
        ...
