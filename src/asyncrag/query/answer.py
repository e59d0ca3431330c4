"""Retrieved sources → a grounded answer that cites them by number."""

from __future__ import annotations

from collections.abc import AsyncIterator

from asyncrag.llm.base import ChatModel, Messages
from asyncrag.results import Source

SYSTEM = (
    "You answer questions using only the numbered sources given. Answer briefly, citing sources "
    "like [1]. If the sources do not contain the answer, say that you do not know."
)


def build_messages(question: str, sources: list[Source]) -> Messages:
    context = "\n\n".join(f"[{i}] ({s.citation})\n{s.text.strip()}" for i, s in enumerate(sources, 1))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Sources:\n{context}\n\nQuestion: {question}\nAnswer:"},
    ]


def citations(sources: list[Source]) -> list[str]:
    return [f"[{i}] {s.citation}" for i, s in enumerate(sources, 1)]


def retrieval_only(sources: list[Source]) -> str:
    """The answer when no LLM is configured: the passages themselves."""
    if not sources:
        return "No matching passages."
    return "\n\n".join(f"[{i}] {s.text.strip()}" for i, s in enumerate(sources, 1))


async def stream_answer(llm: ChatModel, question: str, sources: list[Source], max_tokens: int) -> AsyncIterator[str]:
    if not sources:
        yield "I found nothing about that in the collection."
        return
    async for piece in llm.astream(build_messages(question, sources), max_tokens):
        yield piece
