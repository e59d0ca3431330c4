"""Names are data, never code: a corpus of hostile names through every CLI command and every HTTP route.

The commands are enumerated from the Typer app and the routes from the OpenAPI schema, and each
must have a case here: a new command or route cannot be forgotten (issue 19). Each case checks
what is stored afterwards, not only the exit code: nothing else was touched, nothing leaked.
The hash embedder stands in for the model: these are tests of plumbing, on a real Milvus Lite.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import typer.main
from api_support import serving, settings_for
from conftest import HashEmbedder, cli_environment
from starlette.routing import Route
from typer.testing import CliRunner, Result

from asyncrag import cli
from asyncrag.api import create_app
from asyncrag.store.expr import literal
from asyncrag.store.milvus import release_lite

# Each once broke something somewhere, or is the kind that does: expression quotes and operators
# (pymilvus's iterator formatted a name into its filter), escapes, control characters, Rich markup,
# shell and argument syntax, percent-encoding, a name longer than a chunk, non-Latin scripts.
HOSTILE = [
    'x"] or doc_id not in [".txt',
    'zz" or doc_id != "x.txt',
    "q'uote\"s.txt",
    "back\\slash.txt",
    "new\nline.txt",
    "tab\there.txt",
    "[bold red]markup[blink].md",
    "$(touch pwned).txt",
    "-rf.txt",
    "名前 🦜.txt",
    "茶" * 80 + ".txt",
    "%2e%2e%2fetc.txt",
    "a%00b.txt",
    " leading space.txt",
    'json {"a": 1}.txt',
]


def marker(i: int) -> str:
    return f"zq{i}x"


@pytest.fixture
def corpus(tmp_path: Path) -> dict[str, Path]:
    """One file per hostile name, each holding its own marker word: name -> path."""
    folder = tmp_path / "hostile"
    folder.mkdir()
    files = {}
    for i, name in enumerate(HOSTILE):
        path = folder / name
        path.write_text(f"Document {i}: the marker word {marker(i)} appears here, and nowhere else.\n")
        files[name] = path
    return files


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, corpus: dict[str, Path]) -> Iterator[dict[str, str]]:
    environment = cli_environment(monkeypatch, tmp_path, HashEmbedder())
    result = run(environment, "ingest", str(next(iter(corpus.values())).parent))
    assert result.exit_code == 0, result.output
    assert f"{len(HOSTILE)} files, {len(HOSTILE)} chunks, 0 failures" in result.stdout
    yield environment
    release_lite(environment["ASYNCRAG_URI"])


def run(env: dict[str, str], *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(cli.app, list(args), env=env, input=input)


def clean(result: Result, code: int = 0) -> Result:
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output and not isinstance(result.exception, (KeyError, ValueError)), result
    return result


def documents(env: dict[str, str]) -> set[str]:
    return {d["doc_id"] for d in json.loads(clean(run(env, "documents", "--json")).stdout)}


# -- every CLI command -------------------------------------------------------------------------------


def cli_ingest(env: dict[str, str], corpus: dict[str, Path]) -> None:
    """Ingested by the fixture; again, nothing changes; with --prune after two are gone, exactly those go."""
    folder = next(iter(corpus.values())).parent
    assert f": {len(HOSTILE)} unchanged" in clean(run(env, "ingest", str(folder))).stdout
    gone = [corpus[HOSTILE[0]], corpus[HOSTILE[1]]]
    for path in gone:
        path.unlink()
    clean(run(env, "ingest", str(folder), "--prune"))
    assert documents(env) == {str(p) for p in corpus.values()} - {str(p) for p in gone}


def cli_documents(env: dict[str, str], corpus: dict[str, Path]) -> None:
    assert documents(env) == {str(p) for p in corpus.values()}
    table = clean(run(env, "documents")).stdout
    assert "[bold red]markup[blink]" in table  # shown as written: not Rich markup


def cli_delete(env: dict[str, str], corpus: dict[str, Path]) -> None:
    for name in HOSTILE[:6]:
        clean(run(env, "delete", str(corpus[name])))
        assert str(corpus[name]) not in documents(env)
    assert documents(env) == {str(corpus[n]) for n in HOSTILE[6:]}
    clean(run(env, "delete", 'nothing" or doc_id != "x'), 1)  # an unknown id deletes nothing
    assert len(documents(env)) == len(HOSTILE) - 6


def _top_source(env: dict[str, str], *args: str) -> str:
    return json.loads(clean(run(env, *args, "--json")).stdout)[0]["source"]


def cli_search(env: dict[str, str], corpus: dict[str, Path]) -> None:
    for i, name in enumerate(HOSTILE):
        assert _top_source(env, "search", marker(i), "--mode", "sparse") == str(corpus[name])
    for name in HOSTILE:  # a name as the query: it is words to look for ("--": "-rf.txt" is no option)
        clean(run(env, "search", "--", name))


def cli_ask(env: dict[str, str], corpus: dict[str, Path]) -> None:
    for i in (0, 6, 10):
        answer = json.loads(clean(run(env, "ask", marker(i), "--mode", "sparse", "--json")).stdout)
        assert answer["sources"][0]["source"] == str(corpus[HOSTILE[i]])
    out = clean(run(env, "ask", "zq6x", "--mode", "sparse")).stdout
    assert "[bold red]markup[blink]" in out


def cli_chat(env: dict[str, str], corpus: dict[str, Path]) -> None:
    out = clean(run(env, "chat", "--mode", "sparse", input="zq6x\n" + HOSTILE[0] + "\n")).stdout
    assert "[bold red]markup[blink]" in out


def cli_stats(env: dict[str, str], corpus: dict[str, Path]) -> None:
    (stats,) = json.loads(clean(run(env, "stats", "--json")).stdout)
    assert (stats["documents"], stats["chunks"]) == (len(HOSTILE), len(HOSTILE))
    for name in ('x"; drop', "../x", "名前"):  # a collection's name is checked, never formatted into code
        assert "collection" in clean(run(env, "stats", "--collection", name), 2).stderr


def cli_collections(env: dict[str, str], corpus: dict[str, Path]) -> None:
    names = [c["name"] for c in json.loads(clean(run(env, "collections", "--json")).stdout)]
    assert names == ["cli"]


def cli_eval(env: dict[str, str], corpus: dict[str, Path]) -> None:
    qa = Path.cwd() / 'q"a [x].jsonl'
    rows = [{"question": marker(i), "expect": {"source": name}} for i, name in enumerate(HOSTILE) if "\n" not in name]
    qa.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = clean(run(env, "eval", str(qa), "--mode", "sparse", "--json", str(Path.cwd() / "e.json"))).stdout
    (sparse,) = json.loads((Path.cwd() / "e.json").read_text())["modes"]
    assert sparse["hit"] == 1.0 and sparse["questions"] == len(rows), out


def cli_reindex(env: dict[str, str], corpus: dict[str, Path]) -> None:
    clean(run(env, "reindex"))
    assert documents(env) == {str(p) for p in corpus.values()}


def cli_serve(env: dict[str, str], corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` runs the app whose every route has its case below (HTTP_CASES); its own names (an
    upload folder, allowed hosts) are taken as they are, never interpreted."""
    import uvicorn

    import asyncrag.api

    made: list[object] = []
    real = asyncrag.api.create_app
    monkeypatch.setattr(asyncrag.api, "create_app", lambda *a, **k: made.append(k["options"]) or real(*a, **k))
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    folder = Path.cwd() / HOSTILE[0]
    clean(run(env, "serve", "--upload-dir", str(folder), "--allowed-host", HOSTILE[1]))
    (options,) = made
    assert options.upload_dir == folder and HOSTILE[1].lower() in options.allowed_hosts  # type: ignore[attr-defined]


def cli_keys(env: dict[str, str], corpus: dict[str, Path]) -> None:
    """Key names are data (stored, listed and revoked as given); a tenant's name is checked, one line."""
    names = [n for n in HOSTILE if n.isprintable()]
    keys = {name: clean(run(env, "keys", "add", "--tenant", "t1", "--", name)).stdout.strip() for name in names}
    assert len(set(keys.values())) == len(names) and all(k.startswith("ark_") for k in keys.values())
    listed = json.loads(clean(run(env, "keys", "list", "--json")).stdout)
    assert {k["name"] for k in listed} == set(names) and {k["tenant"] for k in listed} == {"t1"}
    for name in names[:5]:
        clean(run(env, "keys", "revoke", "--", name))
    assert {k["name"] for k in json.loads(clean(run(env, "keys", "list", "--json")).stdout)} == set(names[5:])
    for name in HOSTILE[:3]:
        refused = run(env, "keys", "add", "k", "--tenant", name)
        assert refused.exit_code == 2 and "invalid tenant name" in refused.stderr, refused.output
        assert len(refused.stderr.strip().splitlines()) == 1
        refused = run(env, "search", "marker", "--tenant", name)
        assert refused.exit_code == 2 and "invalid setting tenant" in refused.stderr, refused.output
    assert documents(env) == {str(p) for p in corpus.values()}


def cli_mcp(env: dict[str, str], corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    """`mcp` takes its folders and tenant as given (its tools have their case: `http_mcp`, the same
    server over HTTP); a folder named like code is allowed as itself, and nothing outside it."""
    import asyncio

    from mcp import Client

    from asyncrag.api import mcp as mcp_server

    seen: list[object] = []

    async def capture(rag: object, allow: list[Path]) -> None:
        seen.append(allow)
        local = mcp_server.Local(rag, allow)  # type: ignore[arg-type]
        async with Client(mcp_server.stdio_server(local)) as client:
            job = (await client.call_tool("ingest", {"path": str(corpus[HOSTILE[2]])})).structured_content
            while local.jobs[job["id"]].status == "running":  # type: ignore[index]
                await asyncio.sleep(0.05)
            assert local.jobs[job["id"]].status == "done"  # type: ignore[index]
            refused = await client.call_tool("ingest", {"path": str(Path.cwd())})
            assert refused.is_error and "--allow" in refused.content[0].text  # type: ignore[union-attr]
        await local.aclose()

    monkeypatch.setattr(mcp_server, "run_stdio", capture)
    folder = corpus[HOSTILE[2]].parent
    clean(run(env, "mcp", "--allow", str(folder)))
    assert seen == [[folder]]


CLI_CASES: dict[str, Callable[..., None]] = {
    "keys": cli_keys,
    "mcp": cli_mcp,
    "ingest": cli_ingest,
    "documents": cli_documents,
    "delete": cli_delete,
    "search": cli_search,
    "ask": cli_ask,
    "chat": cli_chat,
    "stats": cli_stats,
    "collections": cli_collections,
    "eval": cli_eval,
    "reindex": cli_reindex,
    "serve": cli_serve,
}


def test_every_cli_command_has_a_case() -> None:
    commands = set(typer.main.get_command(cli.app).commands)  # type: ignore[attr-defined]
    assert commands == set(CLI_CASES), "a command without a hostile-name case (or a case without a command)"


@pytest.mark.parametrize("command", sorted(CLI_CASES))
def test_hostile_names_through_the_cli(
    command: str, env: dict[str, str], corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cli.out, "width", 1000)  # a long name is not folded across lines
    case = CLI_CASES[command]
    case(env, corpus, monkeypatch) if case in (cli_serve, cli_mcp) else case(env, corpus)


# -- every HTTP route --------------------------------------------------------------------------------

Client = httpx.AsyncClient


async def http_upload(client: Client, corpus: dict[str, Path]) -> None:
    files = [("files", (name, path.read_bytes(), "text/plain")) for name, path in corpus.items()]
    job = (await client.post("/v1/documents", files=files)).json()
    assert len(job["files"]) == len(HOSTILE) and all("/" not in f.split("/", 1)[1] for f in job["files"])
    done = await _wait(client, job["id"])
    assert done["status"] == "done" and done["report"]["files"] == len(HOSTILE), done["report"]
    listed = {d["id"] for d in (await client.get("/v1/documents")).json()["documents"]}
    assert set(job["files"]) <= listed


async def _wait(client: Client, job_id: str) -> dict:
    import asyncio

    for _ in range(600):
        job = (await client.get(f"/v1/jobs/{job_id}")).json()
        if job["status"] not in ("queued", "running"):
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not finish")


def listed_as(path: Path) -> str:
    """A CLI-ingested document's id as the server lists it: relative to its working directory."""
    return str(path.relative_to(Path.cwd()))


async def http_list(client: Client, corpus: dict[str, Path]) -> None:
    listed = {d["id"]: d for d in (await client.get("/v1/documents")).json()["documents"]}
    assert set(listed) == {listed_as(p) for p in corpus.values()}
    assert {d["name"] for d in listed.values()} == set(HOSTILE)


async def http_delete(client: Client, corpus: dict[str, Path]) -> None:
    for name in HOSTILE[:8]:
        r = await client.delete("/v1/documents/" + quote(listed_as(corpus[name]), safe="/"))
        assert r.status_code == 200 and r.json()["chunks"] == 1, r.text
    listed = {d["id"] for d in (await client.get("/v1/documents")).json()["documents"]}
    assert listed == {listed_as(corpus[n]) for n in HOSTILE[8:]}
    for bad in ['x" or doc_id != "y', "%00", "..%2f..%2fetc", quote(HOSTILE[9])]:
        assert (await client.delete("/v1/documents/" + bad)).status_code == 404
    assert len((await client.get("/v1/documents")).json()["documents"]) == len(HOSTILE) - 8


async def http_job(client: Client, corpus: dict[str, Path]) -> None:
    for bad in ['"]or', "..%2f..", "%00", quote("名前")]:
        r = await client.get("/v1/jobs/" + bad)
        assert r.status_code == 404 and "\n" not in r.json()["error"]["message"]


async def http_search(client: Client, corpus: dict[str, Path]) -> None:
    for i, name in enumerate(HOSTILE):
        found = (await client.post("/v1/search", json={"query": marker(i), "mode": "sparse", "top_k": 1})).json()
        assert found["sources"][0]["source"] == listed_as(corpus[name])
        assert (await client.post("/v1/search", json={"query": name})).status_code == 200


async def http_ask(client: Client, corpus: dict[str, Path]) -> None:
    for i in (0, 6, 10):
        answer = (await client.post("/v1/ask", json={"question": marker(i), "mode": "sparse"})).json()
        assert answer["sources"][0]["source"] == listed_as(corpus[HOSTILE[i]])
    assert (await client.post("/v1/ask", json={"question": HOSTILE[0], "history": HOSTILE})).status_code == 200


async def http_chat(client: Client, corpus: dict[str, Path]) -> None:
    messages = [{"role": "user", "content": name} for name in HOSTILE]
    r = await client.post("/v1/chat/completions", json={"messages": messages})
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


async def http_embeddings(client: Client, corpus: dict[str, Path]) -> None:
    r = await client.post("/v1/embeddings", json={"input": HOSTILE})
    assert r.status_code == 200 and len(r.json()["data"]) == len(HOSTILE)


async def http_stats(client: Client, corpus: dict[str, Path]) -> None:
    assert (await client.get("/v1/stats")).json()["documents"] == len(HOSTILE)


async def http_plain(client: Client, corpus: dict[str, Path], path: str) -> None:
    assert (await client.get(path)).status_code == 200


async def mcp_call(client: Client, method: str, params: dict[str, object]) -> dict:
    rpc = {"jsonrpc": "2.0", "id": 1, "method": method, "params": params}
    response = await client.post("/mcp", json=rpc, headers={"Accept": "application/json, text/event-stream"})
    assert response.status_code == 200, response.text
    return response.json()


async def mcp_tool(client: Client, tool: str, **arguments: object) -> dict:
    return (await mcp_call(client, "tools/call", {"name": tool, "arguments": arguments}))["result"]


async def http_mcp(client: Client, corpus: dict[str, Path]) -> None:
    """Every MCP tool and resource method with the hostile names (the tools are enumerated: each has a line)."""
    tools = {t["name"] for t in (await mcp_call(client, "tools/list", {}))["result"]["tools"]}
    assert tools == {"search", "ask", "list_documents", "ingest", "job_status"}
    for i, name in enumerate(HOSTILE):
        hits = (await mcp_tool(client, "search", query=marker(i), mode="sparse", k=1))["structuredContent"]["sources"]
        assert hits[0]["source"] == listed_as(corpus[name])
        from_filter = await mcp_tool(client, "search", query="marker", filter=f"file_name == {literal(name)}")
        assert [h["source"] for h in from_filter["structuredContent"]["sources"]] == [listed_as(corpus[name])]
        assert not (await mcp_tool(client, "ask", question=name))["isError"]
        missing = await mcp_tool(client, "job_status", job_id=name)
        assert missing["isError"] and missing["content"][0]["text"] == f"no job {name!r}"
    listed = (await mcp_tool(client, "list_documents"))["structuredContent"]["documents"]
    assert {d["name"] for d in listed} == set(HOSTILE)
    resources = (await mcp_call(client, "resources/list", {}))["result"]["resources"]
    assert {r["name"] for r in resources} == set(HOSTILE)
    for r in resources:
        text = (await mcp_call(client, "resources/read", {"uri": r["uri"]}))["result"]["contents"][0]["text"]
        assert marker(HOSTILE.index(r["name"])) in text
    for bad in ['x" or doc_id != "y', "..%2F..%2Fetc%2Fpasswd", "%00", quote(str(corpus[HOSTILE[3]]), safe="")]:
        error = (await mcp_call(client, "resources/read", {"uri": "asyncrag://document/" + bad}))["error"]
        assert "\n" not in error["message"] and "Traceback" not in error["message"], error
    job = (await mcp_tool(client, "ingest", name=HOSTILE[0], text="a note about zq99x"))["structuredContent"]
    done = await _wait(client, job["id"])
    assert done["status"] == "done" and done["report"]["files"] == 1, done


async def http_keys(client: Client, corpus: dict[str, Path]) -> None:
    """Key names are data through every key route; a tenant's name is checked (400, one line)."""
    made = await client.post("/v1/keys", json={"name": "admin", "role": "admin"})
    assert made.status_code == 201, made.text
    client.headers["Authorization"] = f"Bearer {made.json()['key']}"  # the server is no longer open
    printable = [n for n in HOSTILE if n.isprintable()]
    for name in HOSTILE:
        r = await client.post("/v1/keys", json={"name": name, "tenant": "t1"})
        assert r.status_code == (201 if name in printable else 400), r.text
        assert "\n" not in r.json().get("error", {}).get("message", "")
    listed = {k["name"]: k for k in (await client.get("/v1/keys")).json()["keys"]}
    assert set(listed) == {"admin", *printable} and listed[printable[0]]["tenant"] == "t1"
    for name in printable[:6]:
        assert (await client.delete("/v1/keys/" + quote(name, safe=""))).status_code == 200
        assert (await client.delete("/v1/keys/" + quote(name, safe=""))).status_code == 404
    assert {k["name"] for k in (await client.get("/v1/keys")).json()["keys"]} == {"admin", *printable[6:]}
    for name in HOSTILE[:3]:
        r = await client.post("/v1/keys", json={"name": "k", "tenant": name})
        assert r.status_code == 400 and "invalid tenant name" in r.json()["error"]["message"], r.text


HTTP_CASES: dict[tuple[str, str], Callable[[Client, dict[str, Path]], object]] = {
    ("get", "/v1/keys"): http_keys,
    ("post", "/v1/keys"): http_keys,
    ("delete", "/v1/keys/{name}"): http_keys,
    ("post", "/mcp"): http_mcp,
    ("post", "/v1/documents"): http_upload,
    ("get", "/v1/documents"): http_list,
    ("delete", "/v1/documents/{doc_id}"): http_delete,
    ("get", "/v1/jobs/{job_id}"): http_job,
    ("post", "/v1/search"): http_search,
    ("post", "/v1/ask"): http_ask,
    ("post", "/v1/chat/completions"): http_chat,
    ("post", "/v1/embeddings"): http_embeddings,
    ("get", "/v1/stats"): http_stats,
    ("get", "/v1/models"): lambda c, corpus: http_plain(c, corpus, "/v1/models"),
    ("get", "/healthz"): lambda c, corpus: http_plain(c, corpus, "/healthz"),
    ("get", "/readyz"): lambda c, corpus: http_plain(c, corpus, "/readyz"),
    ("get", "/metrics"): lambda c, corpus: http_plain(c, corpus, "/metrics"),
}


def test_every_route_has_a_case() -> None:
    app = create_app()
    routes = {(method, path) for path, ops in app.openapi()["paths"].items() for method in ops}
    # ... and the routes outside the schema that are apps of their own (/mcp)
    routes |= {("post", r.path) for r in app.routes if isinstance(r, Route) and not inspect.isroutine(r.endpoint)}
    assert routes == set(HTTP_CASES), "a route without a hostile-name case (or a case without a route)"


@pytest.mark.parametrize("route", sorted(HTTP_CASES), ids=" ".join)
async def test_hostile_names_through_every_route(
    route: tuple[str, str], env: dict[str, str], corpus: dict[str, Path], tmp_path: Path
) -> None:
    """The server over the collection the CLI filled with the hostile names (their ids are paths)."""
    settings = settings_for(env["ASYNCRAG_URI"]).override(collection="cli")
    release_lite(env["ASYNCRAG_URI"])
    async with serving(settings, HashEmbedder(), "none", upload_dir=tmp_path / "up") as (_, client):
        await HTTP_CASES[route](client, corpus)  # type: ignore[misc]
