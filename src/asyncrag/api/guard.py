"""What every request passes before any route reads it: its Host, its origin, its key, its size.

Pure ASGI, outermost but for the error pages, so that nothing is parsed first:
- **Host** must be one the server answers to (`deps.ServeOptions.allowed_hosts`), so that a web page
  cannot reach a loopback server through DNS rebinding (Starlette's TrustedHostMiddleware's rule).
- **A state-changing request from another site's page is refused**: browsers send
  `Sec-Fetch-Site` (or at least `Origin`) with every POST, and a multipart POST needs no CORS
  preflight, so without this any page could upload to a keyless server on localhost. Clients
  that are not browsers send neither header and pass (the rule of Go's CrossOriginProtection).
- **A request with a body must carry a key the server knows** (when any is set: api/auth.py)
  before its body is read: an unauthenticated 200 MB body is answered 401 after reading none of
  it. The key found is left in the request's state for the routes.
- **A body is bounded before it is parsed**: by its Content-Length up front, and by counting
  as it arrives when it has none (413 either way). Uploads have their own, larger limit.
"""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


class Limits(Protocol):
    """What the guard reads of the server's options (`deps.ServeOptions`)."""

    allowed_hosts: tuple[str, ...]
    max_upload_mb: float
    max_json_mb: float


LOOPBACK = ("localhost", "127.0.0.1", "::1")
UNAUTHORIZED = "missing or wrong API key: send 'Authorization: Bearer <key>'"
ANY_HOST = "*"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MCP_PATH = "/mcp"


def error_response(status: int, type: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """Every error, in OpenAI's shape."""
    return JSONResponse({"error": {"type": type, "message": message}}, status_code=status, headers=headers)


def host_name(host: str) -> str:
    """`example.org:8000` → `example.org`; `[::1]:8000` → `::1`."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class Guard:
    """See the module docstring. The limits and the key are read from the running server's options."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server = getattr(scope["app"].state, "server", None) if scope["type"] == "http" else None
        if server is None:
            await self.app(scope, receive, send)
            return
        options = server.options
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = _refusal(scope["method"], headers, options)
        if refusal is None and scope["method"] not in SAFE_METHODS:
            caller = await server.identify(headers.get("authorization", ""))
            if caller is None:
                refusal = error_response(401, "unauthorized", UNAUTHORIZED, {"WWW-Authenticate": "Bearer"})
            scope.setdefault("state", {})["caller"] = caller  # read by api/deps.get_caller
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        multipart = headers.get("content-type", "").lower().startswith("multipart/form-data")
        upload = multipart or scope["path"] == MCP_PATH  # MCP's ingest tool carries a file in its JSON
        mib = options.max_upload_mb if upload else options.max_json_mb
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > mib * 2**20:
            await error_response(413, "too_large", _over(mib))(scope, receive, send)
            return
        await self.app(scope, _counting(receive, mib), send)


def _refusal(method: str, headers: dict[str, str], options: Limits) -> JSONResponse | None:
    allowed = options.allowed_hosts
    if ANY_HOST not in allowed and host_name(headers.get("host", "")) not in allowed:
        return error_response(400, "host_not_allowed", "this server does not answer to that Host (--allowed-host)")
    if method in SAFE_METHODS:
        return None
    if _cross_site(headers):
        return error_response(403, "cross_origin", "a state-changing request from another site's page is refused")
    return None


def _cross_site(headers: dict[str, str]) -> bool:
    site = headers.get("sec-fetch-site")
    if site is not None:
        return site not in ("same-origin", "none")
    origin = headers.get("origin")
    if origin is None:
        return False  # not a browser, or a browser too old to tell: as Go's CrossOriginProtection
    return urlsplit(origin).netloc.lower() != headers.get("host", "").lower()


def _over(mib: float) -> str:
    return f"the request body is over the limit of {mib:g} MiB"


def _counting(receive: Receive, mib: float) -> Receive:
    """`receive`, stopping a body sent without a Content-Length (chunked) once it passes `mib`."""
    seen, limit = 0, mib * 2**20

    async def counted() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:  # an HTTPException passes FastAPI's body reading and becomes the 413
                raise HTTPException(413, _over(mib))
        return message

    return counted
