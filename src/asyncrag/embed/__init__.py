"""Embedding backends behind one factory: `load_embedder("minilm" | PATH | "openai:MODEL")`."""

from __future__ import annotations

from pathlib import Path

from asyncrag.embed.base import Embedder


def load_embedder(spec: str) -> Embedder:
    if spec == "minilm":
        from asyncrag.embed.local import load_minilm

        return load_minilm()
    if spec.startswith("openai:"):
        from asyncrag.embed.openai import OpenAIEmbedder

        return OpenAIEmbedder(spec.removeprefix("openai:"))
    from asyncrag.embed.local import LocalEmbedder

    return LocalEmbedder(Path(spec).expanduser())


__all__ = ["Embedder", "load_embedder"]
