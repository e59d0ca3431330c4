"""`POST /v1/chat/completions` in OpenAI's format, so existing chat clients can ask asyncrag.

The last user message is the question, the earlier user messages its history: a follow-up that
points back is searched together with them (query/condense.py). The answer cites the collection's
passages as [1], [2], ... and lists them at its end (and, as an extra field, in `sources`). Other request fields
(temperature, ...) are accepted and ignored: the server's settings decide.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from asyncrag.api import models as m
from asyncrag.api.answers import answer_tokens
from asyncrag.api.deps import ApiError, Server, ServerDep, require_json
from asyncrag.query.answer import citations
from asyncrag.results import Answer, Source

router = APIRouter(tags=["openai"])


class TextPart(BaseModel):
    model_config = ConfigDict(extra="allow")
    type: str
    text: str | None = None


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[TextPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(p.text or "" for p in self.content if p.type == "text")
        return self.content or ""


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str = "asyncrag"
    messages: list[Message] = Field(min_length=1)
    stream: bool = False


def _question(body: ChatRequest) -> tuple[str, list[str]]:
    """The last user message, and the user messages before it (the conversation's history)."""
    asked = [text for msg in body.messages if msg.role == "user" and (text := msg.text().strip())]
    if not asked:
        raise ApiError(400, "invalid_request", "no user message with text: the last user message is the question")
    if len(asked[-1]) > m.QUERY_MAX_CHARS:
        raise ApiError(400, "invalid_request", f"the question is over {m.QUERY_MAX_CHARS} characters")
    return asked[-1], [turn[: m.QUERY_MAX_CHARS] for turn in asked[:-1]]


def _footer(server: Server, sources: list[Source]) -> str:
    public = [Source(s.text, s.score, server.source_name(s.source), s.page) for s in sources]
    return "\n\nSources:\n" + "\n".join(citations(public)) if sources else ""


@router.get("/v1/models")
async def models() -> dict[str, Any]:
    """The one model this server offers (OpenAI clients list models before they chat)."""
    return {"object": "list", "data": [{"id": "asyncrag", "object": "model", "created": 0, "owned_by": "asyncrag"}]}


@router.post("/v1/chat/completions", dependencies=[Depends(require_json)], responses={400: {"model": m.ErrorResponse}})
async def chat_completions(body: ChatRequest, server: ServerDep) -> Any:
    """Answer the last user message from the collection, in OpenAI's chat format (streaming or not)."""
    question, history = _question(body)
    items = await answer_tokens(server, question, None, "", history=history)
    reply = _Reply(body.model)
    if body.stream:
        return StreamingResponse(reply.chunks(server, items), media_type="text/event-stream")
    answer = [item async for item in items][-1]
    assert isinstance(answer, Answer)
    out = server.answer_out(answer)
    return reply.completion(out.answer.strip() + _footer(server, answer.sources), out.sources)


class _Reply:
    def __init__(self, model: str) -> None:
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model

    def completion(self, content: str, sources: list[m.SourceOut]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0},
            "sources": [s.model_dump() for s in sources],
        }

    def chunk(self, delta: dict[str, str], finish: Literal["stop"] | None = None) -> str:
        data = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return "data: " + json.dumps(data, ensure_ascii=False) + "\n\n"

    async def chunks(self, server: Server, items: AsyncIterator[str | Answer]) -> AsyncIterator[str]:
        yield self.chunk({"role": "assistant", "content": ""})
        streamed = False
        async for item in items:
            if isinstance(item, str):
                streamed = True
                yield self.chunk({"content": item})
            else:
                text = item.answer.strip()
                if streamed and item.method == "generated":
                    text = ""
                elif streamed:  # the LLM's streamed answer failed its checks: the quoted one follows
                    text = f"\n\n({server.public(item.llm_error or '')}) From the sources: {text}"
                yield self.chunk({"content": text + _footer(server, item.sources)})
        yield self.chunk({}, "stop")
        yield "data: [DONE]\n\n"
