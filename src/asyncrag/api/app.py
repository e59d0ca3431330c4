"""`asyncrag serve`: the library behind an HTTP API and a web page, in one event loop.

The Milvus clients, the embedder and the LLM are made once, in the lifespan (pymilvus's async
client belongs to the loop it was made on, and a model takes seconds to load), and every request
shares them: concurrent searches are coalesced into shared embedding batches and Milvus searches.
Errors a user can act on (`AsyncRAGError`) become 4xx/503 JSON in OpenAI's error shape; anything
else is logged and answered with a bare 500, never a traceback or a server path.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from asyncrag.api import chat, documents, embeddings, health, keys, mcp, search
from asyncrag.api import models as m
from asyncrag.api.auth import KeyRing
from asyncrag.api.deps import ApiError, ServeOptions, Server, get_caller
from asyncrag.api.guard import MCP_PATH, Guard, error_response
from asyncrag.api.metrics import MeasuredEmbedder, Metrics
from asyncrag.config import Settings
from asyncrag.embed import Embedder, load_embedder
from asyncrag.errors import AsyncRAGError, ConfigError, FilterError, LLMUnavailable, QuotaError, StoreError
from asyncrag.ingest.watch import watch
from asyncrag.llm import ChatModel
from asyncrag.rag import AsyncRAG
from asyncrag.results import IngestReport
from asyncrag.store import milvus

log = logging.getLogger(__name__)
WEB = Path(__file__).parent / "web"


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
                chat_model = await rag.llm()
            except LLMUnavailable as e:  # answers fall back to the passages; say so once, at start
                log.warning("no LLM: answers will be the retrieved passages (%s)", e)
                chat_model = None
            keyring = KeyRing(milvus.connect(settings.uri, settings.token), settings.collection)
            app.state.server = Server(rag, options, metrics, chat_model.name if chat_model else None, keyring)
            app.state.server.jobs.resume()
            watching = _watch(app.state.server)
            try:
                async with mcp.running() as app.state.mcp:
                    yield
            finally:
                if watching is not None:
                    watching.cancel()  # a run stopped midway is finished by the next (ingest's own guarantee)
                    await asyncio.gather(watching, return_exceptions=True)
                await app.state.server.jobs.aclose()
                keyring.close()
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
    app.add_middleware(Guard)
    app.add_middleware(MeasureRequests)
    _add_routes(app)
    app.router.routes.append(Route(MCP_PATH, mcp.Endpoint(), include_in_schema=False))
    _add_web_page(app)
    return app


def _watch(server: Server) -> asyncio.Task[None] | None:
    """`serve --watch`: the folders kept indexed by a task of the server's, taking turns with its jobs."""
    if not server.options.watch:
        return None

    def heard(report: IngestReport) -> None:
        counts = ", ".join(f"{n} {status}" for status, n in report.counts().items() if n)
        log.info("watched folders: %s", counts or "nothing changed")

    async def keep() -> None:
        try:
            await watch(server.rag, list(server.options.watch), heard, turn=server.jobs.turn)
        except AsyncRAGError as e:
            log.error("stopped watching: %s", server.public(str(e)))

    return asyncio.ensure_future(keep())


def _add_routes(app: FastAPI) -> None:
    """Every route needs a key (when any is set: api/auth.py) but liveness, which tells nothing about the data."""
    app.include_router(health.public_router)
    for routes in (health.router, search.router, documents.router, chat.router, embeddings.router, keys.router):
        app.include_router(routes, dependencies=[Depends(get_caller)])


def _add_web_page(app: FastAPI) -> None:
    """The page at `/` and its assets under `/static`: a shell of HTML, CSS and JS with no data in it
    (the data calls need the key), so neither needs the key."""

    @app.get("/", include_in_schema=False)
    async def page() -> FileResponse:
        return FileResponse(WEB / "index.html")

    app.mount("/static", StaticFiles(directory=WEB), name="static")


# -- errors --------------------------------------------------------------------------------------


def _status_of(error: AsyncRAGError) -> tuple[int, str]:
    if isinstance(error, (ConfigError, FilterError)):
        return 400, "invalid_request"
    if isinstance(error, QuotaError):
        return 403, "quota_exceeded"
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
        type = "too_large" if e.status_code == 413 else "http_error"
        return error_response(e.status_code, type, str(e.detail), getattr(e, "headers", None))

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
