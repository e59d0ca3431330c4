"""The query routes: `/v1/search` (passages) and `/v1/ask` (an answer citing them, streamed as SSE if asked)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from asyncrag.api import models as m
from asyncrag.api.answers import answer_tokens, unless_gone
from asyncrag.api.deps import Server, ServerDep, require_json
from asyncrag.config import SearchMode

router = APIRouter(tags=["query"], dependencies=[Depends(require_json)], responses={400: {"model": m.ErrorResponse}})


@router.post("/v1/search")
async def search(body: m.SearchRequest, server: ServerDep) -> m.SearchResponse:
    """The passages most similar to `query`, best first."""
    sources = await server.rag.search(body.query, body.top_k, body.filter, body.mode)
    return m.SearchResponse(sources=[server.source_out(s) for s in sources])


@router.post("/v1/ask", response_model=m.AskResponse, responses={200: {"content": {"text/event-stream": {}}}})
async def ask(body: m.AskRequest, server: ServerDep, request: Request) -> Any:
    """An answer from the best passages, citing them as [1], [2], ...; streamed as SSE when `stream` is true.

    The stream's events: `token` ({"text"}) as the answer is written, then `sources` (a list),
    then `done` ({"answer", "cited", "method", "llm"}: the whole answer, the [n] it cites, how it was
    made, and the LLM's status). An LLM answer that fails its checks is replaced in `done`.
    """
    if not body.stream:
        asked = server.rag.ask(body.question, body.top_k, body.filter, mode=body.mode, history=body.history)
        found = await unless_gone(request, asked)
        return server.answer_out(found)
    return StreamingResponse(
        await answer_events(server, body.question, body.top_k, body.filter, body.mode, body.history),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def answer_events(
    server: Server, question: str, top_k: int | None, filter: str, mode: SearchMode | None = None,
    history: Sequence[str] = (),
) -> AsyncIterator[str]:
    """SSE frames: `token`s, `sources`, `done` (the answer in full, and the LLM's status)."""
    items = await answer_tokens(server, question, top_k, filter, mode, history)

    async def frames() -> AsyncIterator[str]:
        streamed = False
        async for item in items:
            if isinstance(item, str):
                streamed = True
                yield sse("token", {"text": item})
                continue
            out = server.answer_out(item)
            if not streamed:  # a quoted answer: sent as one piece
                yield sse("token", {"text": out.answer})
            yield sse("sources", [s.model_dump() for s in out.sources])
            done = {"answer": out.answer, "cited": out.cited, "method": out.method, "llm": out.llm.model_dump()}
            yield sse("done", done)

    return frames()
