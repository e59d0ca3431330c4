"""`asyncrag serve`: the library behind an HTTP API and a web page, in one event loop.

The Milvus clients, the embedder and the LLM are made once, in the lifespan (pymilvus's async
client belongs to the loop it was made on, and a model takes seconds to load), and every request
shares them: concurrent searches are coalesced into shared embedding batches and Milvus searches.
Errors a user can act on (`AsyncRAGError`) become 4xx/503 JSON in OpenAI's error shape; anything
else is logged and answered with a bare 500, never a traceback or a server path.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asyncrag.api import models as m
from asyncrag.api.answers import answer_tokens
from asyncrag.api.deps import ApiError, ServeOptions, Server, ServerDep, require_json, require_key
from asyncrag.api.metrics import MeasuredEmbedder, Metrics
from asyncrag.config import SearchMode, Settings
from asyncrag.embed import Embedder, load_embedder
from asyncrag.errors import AsyncRAGError, ConfigError, FilterError, LLMUnavailable, StoreError
from asyncrag.llm import ChatModel
from asyncrag.rag import AsyncRAG
from asyncrag.store import milvus

log = logging.getLogger(__name__)
WEB = Path(__file__).parent / "web"
READY_TIMEOUT_S = 5.0


def server_settings(settings: Settings) -> Settings:
    """Searches are Session-consistent unless `consistency_level` is set: this process's own writes
    (uploads) are visible to its searches as soon as their job is done, without each search
    waiting for the server's present (Strong: ~0.4 s a request on a Milvus server)."""
    if "consistency_level" in settings.model_fields_set:
        return settings
    return settings.override(consistency_level="Session")


def create_app(
    settings: Settings | None = None,
    *,
    embedder: Embedder | None = None,
    llm: ChatModel | str | None = None,
    options: ServeOptions | None = None,
) -> FastAPI:
    """The ASGI app. Nothing is loaded or connected until it starts (its lifespan)."""
    settings = server_settings(settings or Settings.load())
    options = options or ServeOptions.from_env()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        metrics = Metrics()
        model = embedder if embedder is not None else await asyncio.to_thread(load_embedder, settings.embed_model)
        rag = AsyncRAG(settings, embedder=MeasuredEmbedder(model, metrics), llm=llm)
        try:
            store = await rag.store(create=True)  # the server ingests uploads: it may create the collection
            store.on_batch = metrics.milvus_batch_sent
            try:
                chat = await rag.llm()
            except LLMUnavailable as e:  # answers fall back to the passages; say so once, at start
                log.warning("no LLM: answers will be the retrieved passages (%s)", e)
                chat = None
            app.state.server = Server(rag, options, metrics, chat.name if chat else None)
            yield
            await app.state.server.jobs.aclose()
        finally:
            await rag.aclose()
            milvus.release_lite(settings.uri)

    # /docs (Swagger UI) with its script, style and icon served from /static/docs, not a CDN. Like the
    # page's shell and /openapi.json it holds no data, so it needs no key (Swagger UI asks for it).
    # No /redoc: ReDoc fetches its logo from its CDN whatever it is told.
    app = FastAPIOffline(
        static_url="/static/docs",
        redoc_url=None,
        title="asyncrag",
        summary="Search and ask questions over your documents: async RAG with Milvus.",
        version="0.1.0",
        lifespan=lifespan,
        responses={401: {"model": m.ErrorResponse}, 422: {"model": m.ErrorResponse}},
    )
    _add_error_handlers(app)
    app.add_middleware(MeasureRequests)
    app.include_router(_public_routes())
    app.include_router(_api_routes(), dependencies=[Depends(require_key)])
    from asyncrag.api.chat import router as chat_router
    from asyncrag.api.documents import router as documents_router

    app.include_router(documents_router, dependencies=[Depends(require_key)])
    app.include_router(chat_router, dependencies=[Depends(require_key)])
    app.mount("/static", StaticFiles(directory=WEB), name="static")
    return app


# -- errors --------------------------------------------------------------------------------------


def error_response(status: int, type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": {"type": type, "message": message}}, status_code=status, headers=headers)


def _status_of(error: AsyncRAGError) -> tuple[int, str]:
    if isinstance(error, (ConfigError, FilterError)):
        return 400, "invalid_request"
    if isinstance(error, StoreError):
        return 503, "store_unavailable"
    return 503, "unavailable"


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, e: ApiError) -> JSONResponse:
        headers = {"WWW-Authenticate": "Bearer"} if e.status == 401 else None
        return error_response(e.status, e.type, e.message, headers)

    @app.exception_handler(AsyncRAGError)
    async def library_error(request: Request, e: AsyncRAGError) -> JSONResponse:
        status, type = _status_of(e)
        return error_response(status, type, request.app.state.server.public(str(e)))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, e: RequestValidationError) -> JSONResponse:
        first = e.errors()[0]
        if first["type"] == "json_invalid":
            return error_response(400, "invalid_json", "the request body is not valid JSON")
        where = ".".join(str(part) for part in first["loc"] if part != "body") or "body"
        return error_response(422, "invalid_request", f"{where}: {first['msg']}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, e: HTTPException) -> JSONResponse:
        return error_response(e.status_code, "http_error", str(e.detail), getattr(e, "headers", None))

    @app.exception_handler(Exception)
    async def bug(request: Request, e: Exception) -> JSONResponse:
        log.exception("internal error on %s %s", request.method, request.url.path)
        return error_response(500, "internal_error", "internal error; the server logged it")


class MeasureRequests:
    """Counts and times requests by route template (pure ASGI: no per-request task or copy)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            server = getattr(scope["app"].state, "server", None)
            if server is not None:
                route = getattr(scope.get("route"), "path", "unmatched")
                server.metrics.observe(scope["method"], route, status, time.perf_counter() - started)


# -- routes --------------------------------------------------------------------------------------


def _public_routes() -> APIRouter:
    router = APIRouter()

    @router.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        """The web page: a shell of HTML, CSS and JS with no data in it (the data calls need the key)."""
        return FileResponse(WEB / "index.html")

    @router.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    return router


def _api_routes() -> APIRouter:
    router = APIRouter()
    json_body = [Depends(require_json)]

    @router.get("/readyz", tags=["health"], responses={503: {"model": m.ErrorResponse}})
    async def readyz(server: ServerDep) -> dict[str, Any]:
        """Readiness: Milvus answers and the models are loaded."""
        store = await server.rag.store()
        try:
            await asyncio.wait_for(
                asyncio.to_thread(store.client.has_collection, store.collection_name), READY_TIMEOUT_S
            )
        except Exception as e:  # noqa: BLE001 - any failure means: not ready
            raise ApiError(503, "not_ready", f"Milvus does not answer: {type(e).__name__}") from None
        return {"status": "ready", "collection": store.collection_name, "llm": server.llm_name}

    @router.post("/v1/search", tags=["query"], dependencies=json_body, responses={400: {"model": m.ErrorResponse}})
    async def search(body: m.SearchRequest, server: ServerDep) -> m.SearchResponse:
        """The passages most similar to `query`, best first."""
        sources = await server.rag.search(body.query, body.top_k, body.filter, body.mode)
        return m.SearchResponse(sources=[server.source_out(s) for s in sources])

    @router.post(
        "/v1/ask",
        tags=["query"],
        dependencies=json_body,
        response_model=m.AskResponse,
        responses={200: {"content": {"text/event-stream": {}}}, 400: {"model": m.ErrorResponse}},
    )
    async def ask(body: m.AskRequest, server: ServerDep) -> Any:
        """An answer from the best passages, citing them as [1], [2], ...; streamed as SSE when `stream` is true.

        The stream's events: `token` ({"text"}) as the answer is written, then `sources` (a list),
        then `done` ({"answer", "cited", "llm"}: the whole answer, the [n] it cites, and whether the LLM wrote it).
        """
        if not body.stream:
            return server.answer_out(await server.rag.ask(body.question, body.top_k, body.filter, mode=body.mode))
        return StreamingResponse(
            await answer_events(server, body.question, body.top_k, body.filter, body.mode),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    @router.get("/v1/stats", tags=["documents"])
    async def stats(server: ServerDep) -> m.Stats:
        """Documents, chunks, embedding model and dimension of the collection."""
        return m.Stats(**(await server.rag.stats()).to_dict())

    @router.get("/metrics", tags=["health"], response_class=PlainTextResponse)
    async def metrics(server: ServerDep) -> Response:
        """Prometheus metrics."""
        return server.metrics.response()

    return router


def sse(event: str, data: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def answer_events(
    server: Server, question: str, top_k: int | None, filter: str, mode: SearchMode | None = None
) -> AsyncIterator[str]:
    """SSE frames: `token`s, `sources`, `done` (the answer in full, and the LLM's status)."""
    items = await answer_tokens(server, question, top_k, filter, mode)

    async def frames() -> AsyncIterator[str]:
        streamed = False
        async for item in items:
            if isinstance(item, str):
                streamed = True
                yield sse("token", {"text": item})
                continue
            out = server.answer_out(item)
            if not streamed:  # no LLM: the passages are the answer, sent as one piece
                yield sse("token", {"text": out.answer})
            yield sse("sources", [s.model_dump() for s in out.sources])
            yield sse("done", {"answer": out.answer, "cited": out.cited, "llm": out.llm.model_dump()})

    return frames()
