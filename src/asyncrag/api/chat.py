"""`POST /v1/chat/completions` in OpenAI's format, so existing chat clients can ask asyncrag.

The last user message is the question, the earlier user messages its history: a follow-up that
points back is searched together with them (query/condense.py). The answer cites the collection's
passages as [1], [2], ... and lists them at its end (and, as an extra field, in `sources`).

OpenAI's fields mean what they say: `max_tokens` (or `max_completion_tokens`) caps the reply
(cut there, `finish_reason: "length"`); `usage` counts tokens with the collection's embedding
model's tokenizer (the server's LLM, if any, may count a little differently); `temperature` is
checked (0-2) but answers are always deterministic: quoted from the sources, or generated
greedily, because a grounded answer should not change from one ask to the next; `n` > 1 is
refused. Other fields (`user`, `tools`, ...) are accepted and ignored.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from asyncrag.api import models as m
from asyncrag.api.answers import answer_tokens, unless_gone
from asyncrag.api.deps import ApiError, Server, ServerDep, require_json
from asyncrag.query.answer import citations
from asyncrag.results import Answer, Source

router = APIRouter(tags=["openai"])
MAX_MESSAGES = 1000


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
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    stream: bool = False
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2, description="checked; answers are deterministic")
    n: int | None = Field(None, ge=1, le=1, description="one answer per request")

    @property
    def cap(self) -> int | None:
        return self.max_completion_tokens or self.max_tokens


def _question(body: ChatRequest) -> tuple[str, list[str]]:
    """The last user message, and the user messages before it (the conversation's history)."""
    asked = [text for msg in body.messages if msg.role == "user" and (text := msg.text().strip())]
    if not asked:
        raise ApiError(400, "invalid_request", "no user message with text: the last user message is the question")
    if len(asked[-1]) > m.QUERY_MAX_CHARS:
        raise ApiError(400, "invalid_request", f"the question is over {m.QUERY_MAX_CHARS} characters")
    return asked[-1], [turn[: m.QUERY_MAX_CHARS] for turn in asked[:-1]]


def _footer(server: Server, sources: list[Source]) -> str:
    public = [dataclasses.replace(s, source=server.source_name(s.source)) for s in sources]
    return "\n\nSources:\n" + "\n".join(citations(public)) if sources else ""


@router.get("/v1/models")
async def models() -> dict[str, Any]:
    """The one model this server offers (OpenAI clients list models before they chat)."""
    return {"object": "list", "data": [{"id": "asyncrag", "object": "model", "created": 0, "owned_by": "asyncrag"}]}


@router.post("/v1/chat/completions", dependencies=[Depends(require_json)], responses={400: {"model": m.ErrorResponse}})
async def chat_completions(body: ChatRequest, server: ServerDep, request: Request) -> Any:
    """Answer the last user message from the collection, in OpenAI's chat format (streaming or not)."""
    question, history = _question(body)
    items = await answer_tokens(server, question, None, "", history=history, max_tokens=body.cap)
    reply = _Reply(body.model)
    if body.stream:
        return StreamingResponse(reply.chunks(server, items, body.cap), media_type="text/event-stream")
    answer = await unless_gone(request, _last(items))
    out = server.answer_out(answer)
    content, finish = await _capped(server, out.answer.strip() + _footer(server, answer.sources), body.cap)
    prompt = await server.count_tokens("\n".join(msg.text() for msg in body.messages))
    return reply.completion(content, finish, out.sources, prompt, await server.count_tokens(content))


async def _last(items: AsyncIterator[str | Answer]) -> Answer:
    async for item in items:
        if isinstance(item, Answer):
            return item
    raise AssertionError("an answer stream ends with its Answer")


async def _capped(server: Server, content: str, cap: int | None) -> tuple[str, Literal["stop", "length"]]:
    """`content` cut after `cap` tokens: the longest prefix of whole words that fits (binary search)."""
    if cap is None or await server.count_tokens(content) <= cap:
        return content, "stop"
    words = re.split(r"(?<=\s)(?=\S)", content)  # each word with the space after it
    low, high = 0, len(words)
    while low < high:
        mid = (low + high + 1) // 2
        if await server.count_tokens("".join(words[:mid])) <= cap:
            low = mid
        else:
            high = mid - 1
    return "".join(words[:low]).rstrip(), "length"


class _Reply:
    def __init__(self, model: str) -> None:
        self.id = "chatcmpl-" + secrets.token_hex(12)
        self.created = int(time.time())
        self.model = model

    def completion(
        self, content: str, finish: str, sources: list[m.SourceOut], prompt_tokens: int, completion_tokens: int
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "chat.completion",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": finish}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
            "sources": [s.model_dump() for s in sources],
        }

    def chunk(self, delta: dict[str, str], finish: str | None = None) -> str:
        data = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        return "data: " + json.dumps(data, ensure_ascii=False) + "\n\n"

    async def chunks(self, server: Server, items: AsyncIterator[str | Answer], cap: int | None) -> AsyncIterator[str]:
        """The answer's pieces as they come (an LLM's, capped by its `max_tokens`), then the quoted
        answer and the sources, cut to what is left of `cap`."""
        yield self.chunk({"role": "assistant", "content": ""})
        sent, finish = "", "stop"
        async for item in items:
            if isinstance(item, str):
                if finish == "length":  # past the cap: the rest is not sent
                    continue
                if cap is not None:
                    fits, finish = await _capped(server, sent + item, cap)
                    item = fits[len(sent) :]
                sent += item
                if item:
                    yield self.chunk({"content": item})
            elif finish != "length":
                text = item.answer.strip()
                if sent and item.method == "generated":
                    text = ""
                elif sent:  # the LLM's streamed answer failed its checks: the quoted one follows
                    text = f"\n\n({server.public(item.llm_error or '')}) From the sources: {text}"
                rest, finish = await _capped(server, sent + text + _footer(server, item.sources), cap)
                yield self.chunk({"content": rest[len(sent) :]})
        yield self.chunk({}, finish)
        yield "data: [DONE]\n\n"
