"""The MCP server (issue 20), driven by real clients: the SDK's own over stdio (a real `asyncrag mcp`
process) and over HTTP (a real `serve` app on loopback, behind keys), and LlamaIndex's MCP client."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from api_support import CORPUS, on_loopback, settings_for
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult

from asyncrag.api import ServeOptions, create_app
from asyncrag.store import keys, milvus

TOOLS = {"search", "ask", "list_documents", "ingest", "job_status"}


def data(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert result.structured_content is not None
    return result.structured_content


def error(result: CallToolResult) -> str:
    """A tool error: one line, the library's message, no traceback."""
    assert result.is_error, result
    (content,) = result.content
    text = content.text  # type: ignore[union-attr]
    assert "\n" not in text and "Traceback" not in text, text
    return text


async def follow(session: ClientSession, job_id: str) -> dict[str, Any]:
    for _ in range(600):
        job = data(await session.call_tool("job_status", {"job_id": job_id}))
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.1)
    raise AssertionError("the job did not finish")


@pytest.mark.slow
def test_stdio_server_with_the_sdk_client(tmp_path: Path) -> None:
    """A desktop tool's view: `asyncrag mcp` started as README's config says, driven over stdio."""
    env = {"HOME": str(tmp_path), "PATH": os.environ["PATH"], "ASYNCRAG_CONFIG": "", "ASYNCRAG_LLM": "none"}
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            "-c",
            "from asyncrag.cli import app; app()",
            "mcp",
            "--uri",
            str(tmp_path / "rag.db"),
            "--allow",
            str(CORPUS),
        ],
        env=env,
        cwd=str(tmp_path),
    )

    async def drive() -> None:
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            assert {t.name for t in (await session.list_tools()).tools} == TOOLS
            assert "ingest something first" in error(await session.call_tool("search", {"query": "tea"}))
            outside = error(await session.call_tool("ingest", {"path": str(tmp_path)}))
            assert "not under a folder this server was started with (--allow)" in outside
            job = await follow(session, data(await session.call_tool("ingest", {"path": str(CORPUS)}))["id"])
            assert job["status"] == "done" and job["report"]["files"] == 4, job
            found = data(await session.call_tool("search", {"query": "When was the cooperative founded?", "k": 3}))
            assert "1987" in " ".join(s["text"] for s in found["sources"])
            answer = data(await session.call_tool("ask", {"question": "When was the cooperative founded?"}))
            assert "1987" in answer["answer"] and answer["cited"] and answer["sources"]
            listed = data(await session.call_tool("list_documents", {}))["documents"]
            assert len(listed) == 4
            assert "invalid filter" in error(await session.call_tool("search", {"query": "x", "filter": "page >"}))
            assert "no job" in error(await session.call_tool("job_status", {"job_id": "nope"}))
            resources = (await session.list_resources()).resources
            assert {r.name for r in resources} == {d["name"] for d in listed}
            about = next(r for r in resources if r.name == "about.md")
            text = (await session.read_resource(about.uri)).contents[0].text  # type: ignore[union-attr]
            assert "1987" in text

    asyncio.run(asyncio.wait_for(drive(), 240))


@pytest.fixture
def http_server(tmp_path: Path, hash_embedder) -> Iterator[tuple[str, dict[str, str]]]:
    """A real `serve` app on a loopback port, with keys for two tenants: (url, keys by name)."""
    settings = settings_for(str(tmp_path / "milvus.db"))
    client = milvus.connect(settings.uri, create=True)
    made = {
        "acme": keys.add(client, settings.collection, "acme", "writer", "acme"),
        "beta": keys.add(client, settings.collection, "beta", "writer", "beta"),
        "beta-reader": keys.add(client, settings.collection, "beta-reader", "reader", "beta"),
    }
    client.close()
    milvus.release_lite(settings.uri)
    app = create_app(settings, embedder=hash_embedder, options=ServeOptions(upload_dir=tmp_path / "up"))
    with on_loopback(app) as url:
        yield f"{url}/mcp", made


async def _session_calls(url: str, key: str, calls: Any) -> Any:
    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=60) as http,
        streamable_http_client(url, http_client=http) as (read, write, *_),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await calls(session)


def test_http_server_with_the_sdk_client_keeps_tenants_apart(http_server: tuple[str, dict[str, str]]) -> None:
    url, made = http_server

    async def acme(session: ClientSession) -> None:
        assert {t.name for t in (await session.list_tools()).tools} == TOOLS
        job = data(await session.call_tool("ingest", {"name": "vault.md", "text": "Acme's vault code is wacmex."}))
        assert (await follow(session, job["id"]))["status"] == "done"
        assert [d["name"] for d in data(await session.call_tool("list_documents", {}))["documents"]] == ["vault.md"]
        hits = data(await session.call_tool("search", {"query": "vault code wacmex", "mode": "sparse"}))["sources"]
        assert [h["text"] for h in hits] == ["Acme's vault code is wacmex."]
        assert "base64" in error(await session.call_tool("ingest", {"name": "x.pdf", "base64_content": "%%%"}))
        return job["id"]

    async def beta(session: ClientSession, acme_job: str) -> None:
        for mode in ("dense", "sparse", "hybrid"):
            found = data(await session.call_tool("search", {"query": "vault code wacmex", "mode": mode}))
            assert found["sources"] == []
        assert data(await session.call_tool("list_documents", {}))["documents"] == []
        assert (await session.list_resources()).resources == []
        assert error(await session.call_tool("job_status", {"job_id": acme_job})) == f"no job {acme_job!r}"
        answer = data(await session.call_tool("ask", {"question": "What is the vault code?"}))
        assert "wacmex" not in json.dumps(answer)

    async def beta_reader(session: ClientSession) -> None:
        refused = error(await session.call_tool("ingest", {"name": "a.txt", "text": "words"}))
        assert refused == "ingesting needs a writer's key or better; yours is a reader's"

    acme_job = asyncio.run(_session_calls(url, made["acme"], acme))
    asyncio.run(_session_calls(url, made["beta"], lambda s: beta(s, acme_job)))
    asyncio.run(_session_calls(url, made["beta-reader"], beta_reader))
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "list_documents", "arguments": {}}}
    headers = {"Accept": "application/json, text/event-stream", "Authorization": "Bearer ark_wrong"}
    refused = httpx2.post(url, json=call, headers=headers)  # a wrong key: 401 before the SDK reads a byte
    assert refused.status_code == 401 and refused.json()["error"]["type"] == "unauthorized"
    allowed = httpx2.post(url, json=call, headers={**headers, "Authorization": f"Bearer {made['acme']}"})
    assert allowed.status_code == 200 and allowed.json()["result"]["structuredContent"]["documents"]


def test_llamaindex_mcp_client_over_http(http_server: tuple[str, dict[str, str]]) -> None:
    """A second real client: LlamaIndex's MCP tool spec, as an agent would load asyncrag's tools
    (over HTTP with a key; the SDK's own client drives stdio above)."""
    from llama_index.tools.mcp import BasicMCPClient, McpToolSpec

    url, made = http_server

    async def use(client: BasicMCPClient) -> list[str]:
        tools = await McpToolSpec(client=client).to_tool_list_async()
        by_name = {t.metadata.name: t for t in tools}
        assert set(by_name) == TOOLS
        job = data((await by_name["ingest"].acall(name="tea.md", text="Oolong is rolled, then roasted.")).raw_output)
        for _ in range(200):
            state = data((await by_name["job_status"].acall(job_id=job["id"])).raw_output)
            if state["status"] != "queued" and state["status"] != "running":
                break
            await asyncio.sleep(0.05)
        output = await by_name["search"].acall(query="oolong roasted", k=2)
        return [s["text"] for s in data(output.raw_output)["sources"]]

    acme = BasicMCPClient(url, headers={"Authorization": f"Bearer {made['acme']}"})
    assert asyncio.run(use(acme)) == ["Oolong is rolled, then roasted."]


def test_mcp_refuses_an_allowed_folder_that_is_not_one(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from asyncrag import cli

    for bad in (tmp_path / "missing", tmp_path / "file.txt"):
        if bad.suffix:
            bad.write_text("a file, not a folder")
        result = CliRunner().invoke(cli.app, ["mcp", "--allow", str(bad), "--uri", str(tmp_path / "x.db")])
        assert result.exit_code == 2 and "not a folder" in result.stderr, result.output
        assert result.stdout == ""  # nothing but the protocol may go to stdout
