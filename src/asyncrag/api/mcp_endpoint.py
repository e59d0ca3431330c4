"""`/mcp`: the MCP server (mcp_server.py) over streamable HTTP, behind the API's guard and keys.

Stateless, with JSON answers: each request is one call on its own, so any number of clients (or
server replicas) need no session state, and the caller is known from the request's own key. The
guard (api/guard.py) has checked its Host, origin, key and size before the SDK sees it, so the
SDK's own Host check is off.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from asyncrag import mcp_server
from asyncrag.api.deps import ApiError, Server, caller_of, server_for


async def _server_of(request: Request) -> Server:
    try:
        return await server_for(request, await caller_of(request))
    except ApiError as e:
        raise mcp_server.Failure(e.message) from None


@asynccontextmanager
async def running() -> AsyncIterator[StreamableHTTPSessionManager]:
    """A session manager for one run of the app (it runs once), run by a task of its own: its task
    group must be left by the task that entered it, and a lifespan may end in another one."""
    server = mcp_server.http_server(_server_of)
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
