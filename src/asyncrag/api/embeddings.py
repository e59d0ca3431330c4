"""`POST /v1/embeddings` in OpenAI's format: the collection's own embedding model, for tools that
embed their text the way the collection was embedded (OpenAI-compatible clients look for it)."""

from __future__ import annotations

import asyncio
import base64
from array import array
from typing import Any, Literal

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict, Field

from asyncrag.api import models as m
from asyncrag.api.deps import ApiError, ServerDep, require_json

router = APIRouter(tags=["openai"])
MAX_INPUTS = 256


class EmbeddingRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    input: str | list[str] | list[int] | list[list[int]]
    model: str = "asyncrag"
    encoding_format: Literal["float", "base64"] = "float"  # OpenAI's Python client asks for base64
    dimensions: int | None = Field(None, ge=1)


@router.post("/v1/embeddings", dependencies=[Depends(require_json)], responses={400: {"model": m.ErrorResponse}})
async def embeddings(body: EmbeddingRequest, server: ServerDep) -> dict[str, Any]:
    """Embed text with the collection's model (vectors as its searches use them)."""
    texts = [body.input] if isinstance(body.input, str) else body.input
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ApiError(400, "invalid_request", "input: send text (a string or a list of strings), not token ids")
    if len(texts) > MAX_INPUTS:
        raise ApiError(400, "invalid_request", f"input: at most {MAX_INPUTS} texts per request")
    embedder = await server.rag.embedder()
    if body.dimensions not in (None, embedder.dim):
        raise ApiError(400, "invalid_request", f"dimensions: this model makes {embedder.dim}, not {body.dimensions}")
    strings = [t for t in texts if isinstance(t, str)]  # all of them (checked above); typed for the embedder
    vectors = await asyncio.to_thread(embedder.embed, strings)
    tokens = sum([await server.count_tokens(t) for t in strings])
    data = [
        {"object": "embedding", "index": i, "embedding": _encoded(vector, body.encoding_format)}
        for i, vector in enumerate(vectors)
    ]
    return {
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    }


def _encoded(vector: list[float], encoding: str) -> list[float] | str:
    if encoding == "float":
        return vector
    return base64.b64encode(array("f", vector).tobytes()).decode()  # little-endian float32, as OpenAI's
