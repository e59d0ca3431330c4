"""Helpers for the API tests: the real app, its lifespan, and LLMs whose words a test can predict."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from asyncrag.api import ServeOptions, create_app
from asyncrag.config import Settings
from asyncrag.rag import AsyncRAG

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"


class ScriptedLLM:
    """Answers every question with the same words, one token at a time."""

    name = "scripted"
    tokens = ("Founded ", "in ", "1987 ", "[1].")

    async def astream(self, messages: list[dict[str, str]], max_tokens: int) -> AsyncIterator[str]:
        for token in self.tokens:
            yield token


class BrokenLLM:
    name = "broken"

    async def astream(self, messages: list[dict[str, str]], max_tokens: int) -> AsyncIterator[str]:
        raise RuntimeError("the model crashed")
        yield ""


def settings_for(uri: str, **overrides: Any) -> Settings:
    return Settings(uri=uri, collection="api", parse_workers=0, llm="none", **overrides)


async def ingest_corpus(settings: Settings, embedder: object) -> None:
    async with AsyncRAG(settings, embedder=embedder) as rag:  # type: ignore[arg-type]
        report = await rag.ingest([CORPUS])
    assert report.ok and report.files == 4, report


@asynccontextmanager
async def serving(
    settings: Settings, embedder: object, llm: object = None, **options: Any
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app with its lifespan running, and an httpx client that talks to it in-process."""
    app = create_app(settings, embedder=embedder, llm=llm, options=ServeOptions(**options))  # type: ignore[arg-type]
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://localhost", timeout=60) as client:
            yield app, client


@contextmanager
def on_loopback(app: FastAPI) -> Iterator[str]:
    """A real uvicorn serving `app` on a free loopback port, in a thread; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started and time.monotonic() < deadline and thread.is_alive():
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def sse_events(body: str) -> list[tuple[str, Any]]:
    """Parse a text/event-stream body strictly: every frame is `event:` + `data:` lines and a blank line."""
    assert body.endswith("\n\n"), "the stream must end with a complete frame"
    events = []
    for frame in body.removesuffix("\n\n").split("\n\n"):
        lines = frame.split("\n")
        assert len(lines) == 2 and lines[0].startswith("event: ") and lines[1].startswith("data: "), frame
        events.append((lines[0].removeprefix("event: "), json.loads(lines[1].removeprefix("data: "))))
    return events
