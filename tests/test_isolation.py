"""No tenant learns anything of another: a property test over every HTTP route and every MCP tool.

Three tenants share one served collection, each with its own documents (names and words that
belong to it alone) and its own upload jobs. Hypothesis draws a few hundred requests: a caller,
an operation (every route of the OpenAPI schema and every MCP tool and resource method, enumerated
so that a new one cannot be missed) and arguments aimed at another tenant: its words as queries,
its file names in filters, its document ids and job ids as paths. Each request is sent twice, once
as drawn and once with every name of the other tenant replaced by one that exists nowhere, and:

- the answer holds no name or word of another tenant that the request did not hold itself;
- every source, document and job it returns is the caller's own;
- an error is the same error, word for word (names swapped back), whether the other tenant's
  things exist or not: nothing is learnt from a status, a count or a message.

Writes aimed at another tenant (deleting its documents) are among the operations; at the end each
tenant still has all of its documents.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import json
import os
import re
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote, unquote

import httpx
import pytest
from api_support import serving, settings_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from asyncrag.api import create_app
from asyncrag.store import keys, milvus

T = TypeVar("T")
TENANTS = ("t0", "t1", "t2")
FAKE = "zz9"  # a tenant that exists nowhere
DOCS_PER_TENANT = 2
MCP_TOOLS = {"search", "ask", "list_documents", "ingest", "job_status"}
MCP_METHODS = {"tools/call", "resources/list", "resources/read"}
CASES = 600 if os.environ.get("CI") == "true" else 150  # CI draws the few hundred; the fast loop, enough to notice


def secret(tenant: str, i: int) -> str:
    return f"pw{tenant}q{i}"


def file_name(tenant: str, i: int) -> str:
    return f"{tenant}-ledger-{i}.txt"


@dataclass
class World:
    """The served app (on its own loop, in a thread), a client, each tenant's key, document ids and job ids."""

    loop: asyncio.AbstractEventLoop
    client: httpx.AsyncClient
    keys: dict[str, str]
    documents: dict[str, list[str]] = field(default_factory=dict)  # as each tenant's listing names them
    jobs: dict[str, list[str]] = field(default_factory=dict)

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(work, self.loop).result(timeout=120)

    def names_of(self, tenant: str) -> list[str]:
        """Everything that names `tenant`'s things, longest first (so that replacing is unambiguous)."""
        found = [*self.documents[tenant], *self.jobs[tenant]]
        found += [secret(tenant, i) for i in range(DOCS_PER_TENANT)]
        found += [file_name(tenant, i) for i in range(DOCS_PER_TENANT)]
        return sorted(set(found), key=len, reverse=True)

    def fake(self, text: str, tenant: str) -> str:
        """`text` with each of `tenant`'s names swapped for the same name of a tenant that does not exist."""
        for name in self.names_of(tenant):
            text = text.replace(name, self._fake_name(name, tenant))
        return text

    def _fake_name(self, name: str, tenant: str) -> str:
        if name in self.jobs[tenant]:
            return "f" * len(name)
        return name.replace(tenant, FAKE)


async def _upload(client: httpx.AsyncClient, key: str, tenant: str) -> str:
    files = [
        ("files", (file_name(tenant, i), f"Ledger {i} of {tenant}: the password is {secret(tenant, i)}.".encode()))
        for i in range(DOCS_PER_TENANT)
    ]
    response = await client.post("/v1/documents", files=files, headers=_auth(key))
    assert response.status_code == 202, response.text
    job = response.json()["id"]
    for _ in range(600):
        state = (await client.get(f"/v1/jobs/{job}", headers=_auth(key))).json()
        if state["status"] not in ("queued", "running"):
            assert state["status"] == "done", state
            return str(job)
        await asyncio.sleep(0.05)
    raise AssertionError("the upload did not finish")


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    from conftest import HashEmbedder

    folder = tmp_path_factory.mktemp("isolation")
    config = settings_for(str(folder / "milvus.db"))
    client = milvus.connect(config.uri, create=True)
    made = {t: keys.add(client, config.collection, t, "writer", t) for t in TENANTS}
    client.close()
    milvus.release_lite(config.uri)
    loop = asyncio.new_event_loop()
    ready: concurrent.futures.Future[httpx.AsyncClient] = concurrent.futures.Future()
    stop = asyncio.Event()

    async def serve() -> None:  # the app's lifespan is entered and left in this one task
        async with serving(config, HashEmbedder(), upload_dir=folder) as (_, http):
            ready.set_result(http)
            await stop.wait()

    thread = threading.Thread(target=loop.run_until_complete, args=(serve(),), daemon=True)
    thread.start()
    world = World(loop, ready.result(timeout=120), made)
    for tenant in TENANTS:
        world.jobs[tenant] = [world.run(_upload(world.client, made[tenant], tenant))]
        listed = world.run(world.client.get("/v1/documents", headers=_auth(made[tenant]))).json()
        world.documents[tenant] = [d["id"] for d in listed["documents"]]
        assert len(world.documents[tenant]) == DOCS_PER_TENANT
    yield world
    loop.call_soon_threadsafe(stop.set)
    thread.join(timeout=60)
    loop.close()
    milvus.release_lite(config.uri)


# -- what a request may aim at another tenant ---------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request: (method, path, JSON body) over HTTP, or an MCP method and its params."""

    method: str
    path: str
    body: Any = None

    def replaced(self, swap: Any) -> Request:
        return Request(self.method, swap(self.path), json.loads(swap(json.dumps(self.body))))


def queries(w: World, target: str) -> st.SearchStrategy[str]:
    own = [secret(t, 0) for t in TENANTS]
    return st.sampled_from([secret(target, 0), secret(target, 1), file_name(target, 0), "ledger password", *own])


def filters(target: str) -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            "",
            f'file_name == "{file_name(target, 0)}"',
            'file_name like "%ledger%"',
            f'source like "%{target}%"',
            f'doc_id like "{target}%"',
            f'tenant == "{target}"',
            f'$meta["tenant"] == "{target}"',
        ]
    )


def http_requests(w: World, target: str) -> dict[tuple[str, str], st.SearchStrategy[Request]]:
    """A strategy for each route of the OpenAPI schema."""
    q, f = queries(w, target), filters(target)
    mode = st.sampled_from(["dense", "sparse", "hybrid"])
    their_doc = st.sampled_from(w.documents[target])
    return {
        ("post", "/v1/search"): st.builds(
            lambda q, f, m: Request("POST", "/v1/search", {"query": q, "filter": f, "mode": m, "top_k": 10}), q, f, mode
        ),
        ("post", "/v1/ask"): st.builds(
            lambda q, f: Request("POST", "/v1/ask", {"question": q, "filter": f, "top_k": 5}), q, f
        ),
        ("post", "/v1/chat/completions"): st.builds(
            lambda q: Request("POST", "/v1/chat/completions", {"messages": [{"role": "user", "content": q}]}), q
        ),
        ("post", "/v1/embeddings"): st.builds(lambda q: Request("POST", "/v1/embeddings", {"input": q}), q),
        ("get", "/v1/documents"): st.just(Request("GET", "/v1/documents")),
        ("post", "/v1/documents"): st.just(Request("UPLOAD", "/v1/documents")),
        ("delete", "/v1/documents/{doc_id}"): st.builds(
            lambda d: Request("DELETE", "/v1/documents/" + quote(d, safe="/")), their_doc
        ),
        ("get", "/v1/jobs/{job_id}"): st.builds(
            lambda j: Request("GET", f"/v1/jobs/{j}"), st.sampled_from(w.jobs[target])
        ),
        ("get", "/v1/stats"): st.just(Request("GET", "/v1/stats")),
        ("get", "/v1/keys"): st.just(Request("GET", "/v1/keys")),
        ("post", "/v1/keys"): st.builds(
            lambda role: Request("POST", "/v1/keys", {"name": f"{target}-more", "role": role, "tenant": target}),
            st.sampled_from(["reader", "writer", "admin"]),
        ),
        ("delete", "/v1/keys/{name}"): st.just(Request("DELETE", f"/v1/keys/{target}")),
        ("get", "/v1/models"): st.just(Request("GET", "/v1/models")),
        ("get", "/healthz"): st.just(Request("GET", "/healthz")),
        ("get", "/readyz"): st.just(Request("GET", "/readyz")),
        ("get", "/metrics"): st.just(Request("GET", "/metrics")),
    }


def mcp_requests(w: World, target: str) -> dict[str, st.SearchStrategy[Request]]:
    """A strategy for each MCP tool, and for listing and reading the document resources."""
    q, f = queries(w, target), filters(target)

    def tool(name: str, arguments: st.SearchStrategy[dict[str, Any]]) -> st.SearchStrategy[Request]:
        return st.builds(lambda a: Request("MCP", "tools/call", {"name": name, "arguments": a}), arguments)

    their_doc = st.sampled_from(w.documents[target])
    return {
        "search": tool("search", st.fixed_dictionaries({"query": q, "filter": f, "k": st.just(10)})),
        "ask": tool("ask", st.fixed_dictionaries({"question": q, "filter": f})),
        "list_documents": tool("list_documents", st.just({})),
        # (what a caller stores is its own, so it holds no other tenant's words: they would come back)
        "ingest": tool("ingest", st.just({"name": "note.txt", "text": "a note of the caller's own"})),
        "job_status": tool("job_status", st.fixed_dictionaries({"job_id": st.sampled_from(w.jobs[target])})),
        "resources/list": st.just(Request("MCP", "resources/list", {})),
        "resources/read": st.builds(
            lambda d: Request("MCP", "resources/read", {"uri": "asyncrag://document/" + quote(d, safe="")}), their_doc
        ),
    }


def test_every_route_and_mcp_method_is_drawn(world: World) -> None:
    routes = {(method, path) for path, ops in create_app().openapi()["paths"].items() for method in ops}
    assert routes == set(http_requests(world, "t1")), "a route the isolation test does not draw"
    tools = world.run(_send(world, "t0", Request("MCP", "tools/list", {})))[1]
    assert {t["name"] for t in json.loads(tools)["result"]["tools"]} == MCP_TOOLS
    assert set(mcp_requests(world, "t1")) == MCP_TOOLS | MCP_METHODS - {"tools/call"}


async def _send(w: World, caller: str, r: Request) -> tuple[int, str]:
    headers = _auth(w.keys[caller])
    if r.method == "MCP":
        rpc = {"jsonrpc": "2.0", "id": 1, "method": r.path, "params": r.body}
        accept = {"Accept": "application/json, text/event-stream"}
        response = await w.client.post("/mcp", json=rpc, headers={**headers, **accept})
    elif r.method == "UPLOAD":
        files = [("files", ("note.txt", b"a note of the caller's own"))]
        response = await w.client.post("/v1/documents", files=files, headers=headers)
    else:
        response = await w.client.request(r.method, r.path, json=r.body, headers=headers)
    return response.status_code, response.text


def _volatile(text: str) -> str:
    """An answer without what differs between any two requests (ids of new jobs, timings, scores)."""
    text = re.sub(r'"(id|created|seconds|score|chunks_per_second|seconds_left)": ?[^,}\]]+', r'"\1": _', text)
    return re.sub(r"\b[0-9a-f]{16}\b", "_", text)


def test_no_tenant_learns_anything_of_another(world: World) -> None:
    """The property, over CASES drawn requests; then: every operation was drawn, and the deletes
    aimed at other tenants removed nothing."""
    drawn: collections.Counter[str] = collections.Counter()

    @settings(max_examples=CASES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(data=st.data())
    def case(data: st.DataObject) -> None:
        caller = data.draw(st.sampled_from(TENANTS), label="caller")
        target = data.draw(st.sampled_from([t for t in TENANTS if t != caller]), label="target")
        every = {**http_requests(world, target), **mcp_requests(world, target)}
        kind = data.draw(st.sampled_from(sorted(every, key=str)), label="operation")
        request = data.draw(every[kind], label="request")
        drawn[str(kind)] += 1
        check(world, caller, target, kind, request)

    case()
    print(f"isolation cases: {sum(drawn.values())}, by operation: {dict(drawn)}")
    kinds = len(http_requests(world, "t1")) + len(mcp_requests(world, "t1"))
    assert sum(drawn.values()) >= CASES and len(drawn) == kinds
    for tenant in TENANTS:
        listed = world.run(world.client.get("/v1/documents", headers=_auth(world.keys[tenant])))
        names = {d["name"] for d in listed.json()["documents"]}
        assert {file_name(tenant, i) for i in range(DOCS_PER_TENANT)} <= names
        assert all(n.startswith(tenant) or n.startswith("note") for n in names), names


def check(world: World, caller: str, target: str, kind: object, request: Request) -> None:
    """One drawn request, sent as drawn and with `target`'s names replaced by ones that exist nowhere."""
    aimed = world.run(_send(world, caller, request))
    nowhere = world.run(_send(world, caller, request.replaced(lambda s: world.fake(s, target))))
    status, body = aimed
    sent = unquote(json.dumps(request.body) + request.path)
    for other in (t for t in TENANTS if t != caller):
        leaked = [name for name in world.names_of(other) if name in body and name not in sent]
        assert not leaked, f"{kind}: {caller} learnt {leaked} of {other}: {body[:500]}"
    for name in re.findall(r"t\d-ledger-\d\.txt", body):
        assert name.startswith(caller) or name in sent, f"{kind}: {caller} saw {name}"
    assert status == nowhere[0], f"{kind}: {status} vs {nowhere[0]}: {body[:300]} | {nowhere[1][:300]}"
    if status >= 400 or '"isError":true' in body.replace(" ", ""):
        assert _volatile(world.fake(body, target)) == _volatile(nowhere[1]), (kind, body, nowhere[1])
