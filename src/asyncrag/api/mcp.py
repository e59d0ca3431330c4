"""The Model Context Protocol server: asyncrag's documents for AI tools (the official `mcp` SDK).

    asyncrag mcp --allow ~/papers          stdio, for a desktop AI tool (README has its config)
    asyncrag serve                          streamable HTTP at /mcp, behind the API's keys and tenants

Tools: `search`, `ask` (an answer with its cited sources), `list_documents`, `ingest` (stdio: a
file or folder under a folder given with `--allow`; HTTP: a file's content, as an upload would),
`job_status`; each stored document is a resource (`asyncrag://document/<id>`: its stored text).
Results are the HTTP API's own models, so a tool answers what the matching route would. A user's
error is a tool error with the library's one-line message; anything else is logged, and the
client told only that it failed.

Every call works on a `Session`: over stdio the one the command was started with; over HTTP the
API's `Server` as the request's key sees it (api/deps.py), so a tenant's tools see its documents
and nothing else, exactly as its HTTP routes do.

Over HTTP (`/mcp`, wired by api/app.py): stateless, with JSON answers, so each request is one call
on its own: any number of clients (or server replicas) need no session state, and the caller is
known from the request's own key. The guard (api/guard.py) has checked its Host, origin, key and
size before the SDK sees it, so the SDK's own Host check is off.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import logging
import secrets
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Generic, Literal, Protocol, TypeVar, cast
from urllib.parse import quote

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.mcpserver.resources.templates import ResourceSecurity
from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.types import CallToolResult, ListResourcesResult, PaginatedRequestParams, TextContent
from mcp.types import Resource as MCPResource
from starlette.datastructures import Headers, UploadFile
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from asyncrag.api import models as m
from asyncrag.api.deps import ApiError, Server, caller_of, server_for
from asyncrag.errors import AsyncRAGError, ConfigError
from asyncrag.rag import AsyncRAG
from asyncrag.results import Answer, Source

log = logging.getLogger(__name__)
T = TypeVar("T")
DOCUMENT_URI = "asyncrag://document/"
Mode = Literal["auto", "dense", "sparse", "hybrid"]
INSTRUCTIONS = (
    "Search and ask questions over the user's documents. `ask` answers with [n] citations of the "
    "sources it returns; `search` returns passages; `list_documents` names what is stored."
)


class Failure(Exception):
    """A tool's refusal, shown to the client as it is: one line."""


class Session(Protocol):
    """What one tool call works on: a collection (within a tenant) and how to show its results,
    as an `api.models.Presenter` does (the API's `Server` is one, the stdio server's `Local` another)."""

    rag: AsyncRAG

    def source_out(self, s: Source) -> m.SourceOut: ...
    def answer_out(self, a: Answer) -> m.AskResponse: ...
    def source_name(self, source: str) -> str: ...
    def public(self, text: str) -> str: ...


S = TypeVar("S", bound=Session)  # a transport's session: `Local` over stdio, the API's `Server` over HTTP
SessionOf = Callable[[Context], Awaitable[S]]


class _Call(Generic[S]):
    """`call(ctx, work)`: `work` on the call's session; a user's error becomes a tool error, one line."""

    def __init__(self, session_of: SessionOf[S]) -> None:
        self.session_of = session_of

    async def __call__(self, ctx: Context, work: Callable[[S], Awaitable[T]]) -> T:
        session: S | None = None
        try:
            session = await self.session_of(ctx)
            return await work(session)
        except (AsyncRAGError, Failure) as e:
            # The SDK sends a CallToolResult as it is, whatever the tool's declared result.
            return cast(T, CallToolResult(content=[TextContent(type="text", text=_said(session, e))], is_error=True))


def _said(session: Session | None, error: Exception) -> str:
    """An error's one line, as the caller may see it (no server paths over HTTP)."""
    return session.public(str(error)) if session is not None else str(error)


class _Server(MCPServer):
    """MCPServer whose resource list is the caller's documents (it has no hook for a list that
    changes, nor one that knows the caller; this handler gets the request context)."""

    session_of: SessionOf[Session]

    async def _handle_list_resources(self, ctx: Any, params: PaginatedRequestParams | None) -> ListResourcesResult:
        session: Session | None = None
        try:
            session = await self.session_of(Context(request_context=ctx, mcp_server=self))
            documents = await _documents(session)
        except (AsyncRAGError, Failure) as e:
            raise ResourceError(_said(session, e)) from None
        resources = [
            MCPResource(uri=DOCUMENT_URI + quote(d.id, safe=""), name=d.name, description=d.id, mime_type="text/plain")
            for d in documents
        ]
        return ListResourcesResult(resources=resources)


def build(session_of: SessionOf[S], job_of: Callable[[S, str], m.Job | None]) -> tuple[MCPServer, _Call[S]]:
    """The MCP server with the tools every transport has and the documents as resources; and its
    `call(ctx, work)`, for the transport to add its `ingest` with."""
    server = _Server("asyncrag", instructions=INSTRUCTIONS, log_level="WARNING")
    server.session_of = session_of
    call = _Call(session_of)

    @server.tool()
    async def search(ctx: Context, query: str, k: int = 5, mode: Mode = "auto", filter: str = "") -> m.SearchResponse:
        """The passages that best match `query`, best first. `filter` is a Milvus expression over
        the metadata, e.g. file_name == "a.pdf" and page > 3."""

        async def work(session: Session) -> m.SearchResponse:
            sources = await session.rag.search(query, k, filter, mode)
            return m.SearchResponse(sources=[session.source_out(s) for s in sources])

        return await call(ctx, work)

    @server.tool()
    async def ask(
        ctx: Context, question: str, k: int | None = None, mode: Mode = "auto", filter: str = ""
    ) -> m.AskResponse:
        """An answer to `question` from the stored documents, citing its sources as [1], [2], ...
        (`sources`, in that order); it says so when they do not answer."""

        async def work(session: Session) -> m.AskResponse:
            return session.answer_out(await session.rag.ask(question, k, filter, mode=mode))

        return await call(ctx, work)

    @server.tool()
    async def list_documents(ctx: Context) -> m.DocumentList:
        """Every stored document: its id (for the document resources), name and chunks."""

        async def work(session: Session) -> m.DocumentList:
            return m.DocumentList(documents=await _documents(session))

        return await call(ctx, work)

    @server.tool()
    async def job_status(ctx: Context, job_id: str) -> m.Job:
        """An ingest job's status, progress and, when done, its per-file report."""

        async def work(session: S) -> m.Job:
            found = job_of(session, job_id)
            if found is None:
                raise Failure(f"no job {job_id!r}")
            return found

        return await call(ctx, work)

    # The id (percent-encoded in the URI, decoded by the SDK) is matched against the listed ones,
    # never used as a path: the SDK's path checks (no absolute paths, no "..") do not apply.
    @server.resource(
        DOCUMENT_URI + "{doc_id}", mime_type="text/plain", security=ResourceSecurity(exempt_params={"doc_id"})
    )
    async def document(doc_id: str, ctx: Context) -> str:
        """A stored document's text, chunk by chunk as it is stored (overlaps included)."""
        session: Session | None = None
        try:
            session = await session_of(ctx)
            wanted = doc_id
            matches = [d for d in await session.rag.documents() if session.source_name(d.doc_id) == wanted]
            if len(matches) != 1:
                raise ResourceNotFoundError(f"no document {wanted!r}: list_documents names them")
            return "\n\n".join(await session.rag.document_text(matches[0].doc_id))
        except (AsyncRAGError, Failure) as e:
            raise ResourceError(_said(session, e)) from None

    return server, call


async def _documents(session: Session) -> list[m.Document]:
    stored = [d for d in await session.rag.documents() if d.hash]
    return [m.Document(id=session.source_name(d.doc_id), name=Path(d.doc_id).name, chunks=d.chunks) for d in stored]


# -- stdio: one user, folders allowed at start-up ---------------------------------------------


class Local(m.Presenter):
    """The stdio server's one session: the command's collection (and tenant), paths shown as they are."""

    def __init__(self, rag: AsyncRAG, allow: Sequence[Path]) -> None:
        self.rag = rag
        self.allow = [p.expanduser().resolve() for p in allow]
        self.jobs: dict[str, m.Job] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def allowed(self, path: str) -> Path:
        """`path`, resolved (links followed), if it is under an allowed folder; else Failure."""
        if not self.allow:
            raise Failure("ingesting is off: start `asyncrag mcp` with --allow FOLDER to allow it under FOLDER")
        resolved = Path(path).expanduser().resolve()
        if not any(resolved == root or root in resolved.parents for root in self.allow):
            raise Failure(f"{path} is not under a folder this server was started with (--allow)")
        return resolved

    def start(self, paths: list[Path]) -> m.Job:
        job = m.Job(id=secrets.token_hex(8), status="running", files=[str(p) for p in paths], tenant=self.rag.tenant)
        self.jobs[job.id] = job
        task = asyncio.ensure_future(self._run(job, paths))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return job

    async def _run(self, job: m.Job, paths: list[Path]) -> None:
        started = time.perf_counter()
        try:
            report = await self.rag.ingest(list(paths))
        except AsyncRAGError as e:
            job.status, job.error = "failed", str(e)
        except Exception:
            log.exception("ingest job %s failed", job.id)
            job.status, job.error = "failed", "internal error; the server logged it"
        else:
            job.status, job.report = "done", m.IngestReportOut(**report.to_dict())
            job.files_done = job.files_total = len(report.documents)
            job.chunks = report.chunks
        job.seconds = round(time.perf_counter() - started, 3)

    async def aclose(self) -> None:
        await asyncio.gather(*self._tasks, return_exceptions=True)


def stdio_server(local: Local) -> MCPServer:
    async def session_of(ctx: Context) -> Local:
        return local

    server, call = build(session_of, lambda session, job_id: local.jobs.get(job_id))

    @server.tool()
    async def ingest(ctx: Context, path: str) -> m.Job:
        """Ingest a file or a folder (recursively) under a folder this server allows; returns a job
        to follow with `job_status`. Only what changed is redone."""

        async def work(session: Local) -> m.Job:
            return session.start([session.allowed(path)])

        return await call(ctx, work)

    return server


async def run_stdio(rag: AsyncRAG, allow: Sequence[Path]) -> None:
    """Serve `rag` over stdio until the client closes it."""
    local = Local(rag, allow)
    try:
        await stdio_server(local).run_stdio_async()
    finally:
        await local.aclose()


# -- HTTP: inside `asyncrag serve`, behind its keys ------------------------------------------------


def http_server() -> MCPServer:
    """The server for `/mcp`: each call's session is the API's `Server` as the request's key sees it."""

    async def session_of(ctx: Context) -> Server:
        request = ctx.request_context.request if ctx.request_context is not None else None
        if not isinstance(request, Request):
            raise Failure("no HTTP request: this server runs inside `asyncrag serve`")
        try:
            return await server_for(request, await caller_of(request))
        except ApiError as e:
            raise Failure(e.message) from None

    def job_of(api: Server, job_id: str) -> m.Job | None:
        return api.jobs.get(job_id, api.tenant)

    server, call = build(session_of, job_of)

    @server.tool()
    async def ingest(ctx: Context, name: str, text: str | None = None, base64_content: str | None = None) -> m.Job:
        """Store a file (its `text`, or its bytes as `base64_content` for a binary format: .pdf .docx
        .pptx .xlsx .epub, images) under `name` (its suffix says its format: .txt .md .pdf .html .docx
        .pptx .xlsx .epub .csv .tsv .json, and .png .jpg .jpeg .tif .tiff .webp, read by OCR) and
        ingest it, as an upload would; returns a job to follow with `job_status`. Needs a writer's key."""

        async def work(api: Server) -> m.Job:
            if not api.caller.can("writer"):
                raise Failure(api.caller.refusal("writer", "ingesting"))
            data = _content(text, base64_content)
            if len(data) > api.options.max_upload_mb * 2**20:
                raise Failure(f"the file is over the upload limit of {api.options.max_upload_mb:g} MiB")
            return await api.submit([UploadFile(io.BytesIO(data), size=len(data), filename=name, headers=Headers())])

        return await call(ctx, work)

    return server


def _content(text: str | None, encoded: str | None) -> bytes:
    if (text is None) == (encoded is None):
        raise ConfigError("give the file's content as `text` or as `base64_content`, one of them")
    if text is not None:
        return text.encode()
    try:
        return base64.b64decode(encoded or "", validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("base64_content is not valid base64") from None


@asynccontextmanager
async def running() -> AsyncIterator[StreamableHTTPSessionManager]:
    """A session manager for one run of the app (it runs once), run by a task of its own: its task
    group must be left by the task that entered it, and a lifespan may end in another one."""
    server = http_server()
    server.streamable_http_app(
        stateless_http=True,
        json_response=True,
        transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
    )
    manager = server.session_manager
    started, stop = asyncio.Event(), asyncio.Event()

    async def run() -> None:
        async with manager.run():
            started.set()
            await stop.wait()

    task, waiter = asyncio.ensure_future(run()), asyncio.ensure_future(started.wait())
    await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
    waiter.cancel()
    if task.done():
        task.result()  # it failed to start: say why
    try:
        yield manager
    finally:
        stop.set()
        await task


class Endpoint:
    """The `/mcp` route: the running app's session manager answers."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await StreamableHTTPASGIApp(scope["app"].state.mcp)(scope, receive, send)
