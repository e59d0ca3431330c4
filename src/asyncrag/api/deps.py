"""What every route shares: the `Server` the lifespan builds, how a request gets it, auth, errors.

Route modules import from here (and from models, metrics and the library), never from `app.py`
or from each other: `app.py` imports them all to wire the app, so nothing may import it back.
"""

from __future__ import annotations

import asyncio
import copy
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import UploadFile

from asyncrag.api import models as m
from asyncrag.api.auth import NO_KEYS, TENANT_HEADER, KeyRing
from asyncrag.api.guard import ANY_HOST, LOOPBACK, UNAUTHORIZED
from asyncrag.api.jobs import Jobs
from asyncrag.api.metrics import Metrics
from asyncrag.errors import QuotaError
from asyncrag.ingest.chunk import token_counter
from asyncrag.rag import AsyncRAG
from asyncrag.store import milvus, tenants
from asyncrag.store.keys import Key, Role


@dataclass(frozen=True)
class ServeOptions:
    """What the server adds to the library's `Settings`."""

    api_key: str | None = field(default=None, repr=False)  # bearer token; None: no auth
    upload_dir: Path = Path("asyncrag-uploads")  # uploads are stored here, under names the server picks
    max_upload_mb: float = 50.0  # per request, all files together
    max_files: int = 20  # per request
    max_json_mb: float = 1.0  # any other request body (a question and its history is ~200 KB at most)
    source_root: Path | None = None  # documents under it are named relative to it; None: the working directory
    allowed_hosts: tuple[str, ...] = LOOPBACK  # the Host names it answers to ("*": any); see api/guard.py
    watch: tuple[Path, ...] = ()  # folders kept indexed (ingest/watch.py), in the whole collection

    @classmethod
    def from_env(cls, **given: Any) -> ServeOptions:
        """Defaults, `ASYNCRAG_API_KEY` from the environment, and the options given (None: not given)."""
        options = replace(cls(), api_key=os.environ.get("ASYNCRAG_API_KEY") or None)
        return replace(options, **{k: v for k, v in given.items() if v is not None})


def allowed_hosts(bind: str, given: list[str]) -> tuple[str, ...]:
    """The Host names a server bound to `bind` answers to: loopback, the bound name and `given`.

    Bound to every interface with none given, any Host: its names are unknown here, and a keyless
    server open to the network has more to fear than DNS rebinding (`serve` warns of it).
    """
    named = tuple(h.strip().lower() for h in given if h.strip())
    if bind in ("0.0.0.0", "::", "") and not named:
        return (ANY_HOST,)
    return tuple(dict.fromkeys((*LOOPBACK, bind.strip("[]").lower(), *named)))


class _AnyText(Convertor[str]):
    """A path segment of any text (a document id is a path, a key's name is a name: either may hold
    any character): Starlette's `path` convertor (`.*`) stops at a newline, so such a document
    could not be deleted. Registered here, before any route module declares a path that uses it."""

    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("any_text", _AnyText())


class ApiError(Exception):
    """An HTTP error with a one-line message for the client."""

    def __init__(self, status: int, type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.type, self.message = status, type, message


class Server(m.Presenter):
    """What the lifespan builds once and every request shares; each request sees it through
    `as_caller`: `rag` within the caller's tenant, `caller` its key."""

    def __init__(
        self,
        rag: AsyncRAG,
        options: ServeOptions,
        metrics: Metrics,
        llm_name: str | None,
        keyring: KeyRing | None = None,
    ) -> None:
        self.rag = rag
        self.caller: Key = NO_KEYS
        self.keyring = keyring or KeyRing(None, rag.settings.collection)
        self.options = options
        self.metrics = metrics
        self.llm_name = llm_name  # None: answers are the retrieved passages
        self.upload_root = Path(options.upload_dir).expanduser().resolve()
        self.source_root = Path(options.source_root or Path.cwd()).expanduser().resolve()
        self.jobs = Jobs(rag, self.upload_root, metrics, self.public)
        self._tokens: Callable[[str], int] | None = None
        self._admission = asyncio.Lock()  # shared by every request's view (a shallow copy)

    async def identify(self, authorization: str) -> Key | None:
        """The key a request's `Authorization` header carries; None: no key the server accepts."""
        return await self.keyring.caller(authorization, self.options.api_key)

    async def as_caller(self, key: Key, tenant: str | None) -> Server:
        """This server as one request sees it: the collection within `tenant`, `key` its caller."""
        view = copy.copy(self)
        view.rag, view.caller = await self.rag.for_tenant(tenant), key
        return view

    @property
    def tenant(self) -> str | None:
        return self.rag.tenant

    async def submit(self, uploads: list[UploadFile]) -> m.Job:
        """An ingest job of the caller's uploads, within its tenant's quotas (QuotaError past them).
        One admission at a time: two uploads cannot both take a tenant's last place."""
        async with self._admission:
            await self._check_quota(len(uploads), sum(u.size or 0 for u in uploads))
            return await self.jobs.submit(uploads, self.tenant)

    async def _check_quota(self, files: int, size: int) -> None:
        """Refuse (QuotaError) new files that would take the caller's tenant past its quotas
        (`tenant_max_documents`, `tenant_max_mb`), counting what is stored and what its jobs hold."""
        settings, tenant = self.rag.settings, self.tenant
        if tenant is None or (settings.tenant_max_documents is None and settings.tenant_max_mb is None):
            return
        stored = await self.rag.documents()
        pending_files, pending_bytes = self.jobs.pending(tenant)
        documents = len(stored) + pending_files + files
        if settings.tenant_max_documents is not None and documents > settings.tenant_max_documents:
            raise QuotaError(
                f"this would make {documents} documents; your tenant's quota is {settings.tenant_max_documents}: "
                "delete some first, or ask an admin"
            )
        mib = (sum(d.size for d in stored) + pending_bytes + size) / 2**20
        if settings.tenant_max_mb is not None and mib > settings.tenant_max_mb:
            raise QuotaError(
                f"this would make {mib:.1f} MiB of documents; your tenant's quota is {settings.tenant_max_mb:g} MiB: "
                "delete some first, or ask an admin"
            )

    async def count_tokens(self, text: str) -> int:
        """Tokens of `text` by the collection's embedding model's tokenizer (OpenAI's `usage`; words
        when the model has no tokenizer file, as a remote one)."""
        if self._tokens is None:
            count = token_counter((await self.rag.embedder()).tokenizer_file)
            self._tokens = (lambda t: len(count(t))) if count else (lambda t: len(t.split()))
        return self._tokens(text)

    def _prefixes(self) -> list[str]:
        """What a client never sees of a path: the folders uploads and sources are named relative to."""
        return [str(root).rstrip(os.sep) + os.sep for root in (self.upload_root, self.source_root)]

    def source_name(self, source: str) -> str:
        """What a client sees of a document's id (a path on this machine, for files ingested by the
        CLI): relative to the upload folder or the source root, else its folder and name after "…/".
        The listing shows it and DELETE takes it back (`documents.delete`)."""
        for prefix in self._prefixes():
            if source.startswith(prefix):
                return source[len(prefix) :]
        if source.startswith(os.sep):
            return "…/" + "/".join(source.rsplit(os.sep, 2)[-2:]).lstrip("/")
        return source

    def public(self, text: str) -> str:
        """A message without this machine's paths: uploads and sources as clients name them, the database a word."""
        for prefix in self._prefixes():
            text = text.replace(prefix, "")
        uri = self.rag.settings.uri
        return text.replace(uri, "<database>") if milvus.is_local(uri) else text


_bearer = HTTPBearer(auto_error=False, description="a key from `asyncrag keys add`, or the server's ASYNCRAG_API_KEY")

# Dependencies are `async def`: FastAPI runs plain `def` ones in a thread pool, a hop that cost
# ~100 ms a request under load (measured) while the embedder's threads hold the GIL.


async def get_caller(request: Request, _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> Key:
    """The request's key (checked by the guard already if the request has a body); 401 without one.
    The bearer scheme's dependency puts it in the OpenAPI schema."""
    return await caller_of(request)


async def caller_of(request: Request) -> Key:
    known: Key | None = request.scope.get("state", {}).get("caller")
    if known is None:
        known = await request.app.state.server.identify(request.headers.get("authorization", ""))
    if known is None:
        raise ApiError(401, "unauthorized", UNAUTHORIZED)
    return known


async def get_server(request: Request, caller: Annotated[Key, Depends(get_caller)]) -> Server:
    return await server_for(request, caller)


async def server_for(request: Request, caller: Key) -> Server:
    """The server as this request's caller sees it: within its key's tenant. An admin's key without
    a tenant may name one in the X-Asyncrag-Tenant header (to upload into it, say)."""
    server: Server = request.app.state.server
    tenant = caller.tenant
    asked = request.headers.get(TENANT_HEADER)
    if asked is not None:
        if caller.role != "admin" or caller.tenant is not None:
            raise ApiError(403, "forbidden", "only an admin's key without a tenant may name one (X-Asyncrag-Tenant)")
        tenant = tenants.check_name(asked)
    return await server.as_caller(caller, tenant)


ServerDep = Annotated[Server, Depends(get_server)]


def _role(role: Role) -> Callable[[Server], Awaitable[Server]]:
    async def check(server: ServerDep) -> Server:
        if not server.caller.can(role):
            raise ApiError(403, "forbidden", server.caller.refusal(role))
        return server

    return check


WriterDep = Annotated[Server, Depends(_role("writer"))]
AdminDep = Annotated[Server, Depends(_role("admin"))]


async def require_json(request: Request) -> None:
    """A body of another kind gets a plain 415 saying what to send, not a validation error about its shape."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        given = content_type or "no content type"
        raise ApiError(415, "unsupported_media_type", f"send JSON (Content-Type: application/json), not {given}")
