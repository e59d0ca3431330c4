"""Retrieved sources → an answer that cites them by number, and that they support.

Two ways, one owner: `extracted` quotes the sentences that answer (no LLM: query/extract.py);
`generated` streams an LLM's answer and checks it (query/check.py). A generated answer that fails
(the LLM errs, cites nothing, repeats itself, says what its sources do not) is replaced by the
extracted one, with the reason in `Answer.llm_error`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from asyncrag.config import AnswerMode
from asyncrag.embed import Embedder
from asyncrag.errors import AsyncRAGError
from asyncrag.llm.base import ChatModel, Messages
from asyncrag.query.check import problems
from asyncrag.query.extract import extract
from asyncrag.results import Answer, Source

NOTHING_FOUND = "I found nothing about that in the collection."
SYSTEM = (
    "Answer the question using only the numbered sources. Quote or closely follow their words, "
    "and put the source's number in brackets after each sentence, like [1]. Be brief. "
    "If the sources do not contain the answer, say that the sources do not contain it."
)
OnToken = Callable[[str], None]  # hears each piece of an answer as the LLM streams it


def build_messages(question: str, sources: Sequence[Source]) -> Messages:
    context = "\n\n".join(f"[{i}] ({s.citation})\n{s.text.strip()}" for i, s in enumerate(sources, 1))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": f"Sources:\n{context}\n\nQuestion: {question}\nAnswer:"},
    ]


def citations(sources: Sequence[Source]) -> list[str]:
    return [f"[{i}] {s.citation}" for i, s in enumerate(sources, 1)]


def generates(mode: AnswerMode, small_llm: bool) -> bool:
    """Whether an LLM writes the answer: asked for, or "auto" with a capable model (not the bundled
    one, whose answers were wrong: docs/architecture.md, "Answers")."""
    return mode == "generate" or (mode == "auto" and not small_llm)


async def extracted(
    question: str, sources: list[Source], embedder: Embedder, query: str | None = None, llm_error: str | None = None
) -> Answer:
    """The sentences of `sources` that best answer `question`; a follow-up's by its words and by
    its standalone `query` together (the earlier turns alone would pick the topic's first sentence)."""
    if not sources:
        return Answer(NOTHING_FOUND, sources, method="none", query=query, llm_error=llm_error)
    found = await asyncio.to_thread(extract, question, sources, embedder, query)
    return Answer(found.answer, sources, method="extracted", query=query, llm_error=llm_error)


async def generated(
    llm: ChatModel, question: str, sources: list[Source], embedder: Embedder, max_tokens: int,
    on_token: OnToken | None = None, query: str | None = None,
) -> Answer:
    """The LLM's answer, streamed to `on_token`, if it passes the checks; else the extracted one."""
    if not sources:
        return Answer(NOTHING_FOUND, sources, method="none", query=query)
    pieces = []
    try:
        async for piece in llm.astream(build_messages(query or question, sources), max_tokens):
            pieces.append(piece)
            if on_token:
                on_token(piece)
    except Exception as e:  # noqa: BLE001 - any LLM failure still leaves the user an answer from the sources
        reason = str(e) if isinstance(e, AsyncRAGError) else f"{type(e).__name__}: {e}"
        return await extracted(question, sources, embedder, query, llm_error=reason)
    text = "".join(pieces).strip()
    wrong = problems(text, sources)
    if wrong:
        reason = f"{llm.name}'s answer was set aside: {'; '.join(wrong)}"
        return await extracted(question, sources, embedder, query, llm_error=reason)
    return Answer(text, sources, llm=llm.name, method="generated", query=query)
