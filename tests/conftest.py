"""Shared fixtures. Everything here is real: Milvus Lite, the bundled embedding model.

Imports of the library stay inside fixtures: a test file that needs no model or store does not
pay for LlamaIndex, pymilvus or torch at collection time. Tests that use the real Milvus server
(the `milvus_server` fixture) carry the `server` marker, set at collection from their fixtures
(or by a `server` parameter's marks), so `-m "not server"` selects by what a test uses, never by
its name; the fixture fails a test that reaches it unmarked.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from asyncrag.testing import HashEmbedder  # re-exported for the tests (a light import: no model, no store)

if TYPE_CHECKING:
    from asyncrag.embed.local import LocalEmbedder

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The tutorial's own data, beside the checkout (never copied into the repo)."""
    if not (SHARED_DATA / "paul_graham_essay.txt").is_file():
        pytest.skip(f"../shared/data is absent (looked in {SHARED_DATA})")
    return SHARED_DATA


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "milvus_server" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.server)


@pytest.fixture(scope="session")
def embedder() -> LocalEmbedder:
    from asyncrag.embed.local import load_minilm

    return load_minilm()


@pytest.fixture(scope="session")
def hash_embedder() -> HashEmbedder:
    return HashEmbedder()


def cli_environment(monkeypatch: pytest.MonkeyPatch, home: Path, embedder: object) -> dict[str, str]:
    """The env for CLI commands run with CliRunner in `home`: no ASYNCRAG_* or asyncrag.toml from the
    caller, a fresh Milvus Lite, no LLM, and `embedder` instead of loading a model per command."""
    monkeypatch.setattr("asyncrag.rag.load_embedder", lambda spec: embedder)
    for name in list(os.environ):
        if name.startswith("ASYNCRAG_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(home)
    return {
        "ASYNCRAG_CONFIG": "",
        "ASYNCRAG_URI": str(home / "cli.db"),
        "ASYNCRAG_COLLECTION": "cli",
        "ASYNCRAG_LLM": "none",
        "ASYNCRAG_PARSE_WORKERS": "0",
    }


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, embedder: LocalEmbedder) -> dict[str, str]:
    """CLI commands on a fresh Milvus Lite in tmp_path, with the session's real embedding model."""
    return cli_environment(monkeypatch, tmp_path, embedder)


@pytest.fixture
def lite_uri(tmp_path: Path) -> str:
    """A fresh Milvus Lite database for one test."""
    return str(tmp_path / "milvus.db")


@pytest.fixture
async def rag(lite_uri: str, embedder: LocalEmbedder):
    """An AsyncRAG on a fresh Milvus Lite, parsing in threads (no process start-up per test)."""
    from asyncrag.rag import AsyncRAG

    async with AsyncRAG(embedder=embedder, uri=lite_uri, collection="test", parse_workers=0, llm="none") as r:
        yield r


@pytest.fixture(scope="session")
def make_pdf() -> Callable[[list[str]], bytes]:
    """examples/make_pdf.py's writer: text PDFs made on the fly."""
    spec = importlib.util.spec_from_file_location("make_pdf", ROOT / "examples" / "make_pdf.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.make_pdf


# -- a real Milvus server (issue 3) ------------------------------------------------------------


@pytest.fixture
def milvus_server(request: pytest.FixtureRequest, milvus_server_process):
    """The session's Milvus server, for a test marked `server` (so that `-m "not server"` leaves it out)."""
    if request.node.get_closest_marker("server") is None:
        pytest.fail(f"{request.node.nodeid} uses the Milvus server: mark it (or its parameter) with pytest.mark.server")
    return milvus_server_process


@pytest.fixture(scope="session")
def milvus_server_process():
    """A real Milvus 2.3.5 standalone (the PyPI `milvus` package), once per session.

    It runs on 127.0.0.1 with free ports and a fresh data dir, and is killed at the end.
    Skipped when the package is not installed; when it is installed but the server cannot
    start, skipped too, unless ASYNCRAG_REQUIRE_MILVUS_SERVER=1 (CI) makes that a failure.
    """
    from asyncrag.testing import MilvusServer, MilvusServerError, milvus_package_available

    if not milvus_package_available():
        pytest.skip("the `milvus` package (Milvus 2.3.5 standalone) is not installed")
    try:
        server = MilvusServer().start()
    except MilvusServerError as e:
        if os.environ.get("ASYNCRAG_REQUIRE_MILVUS_SERVER") == "1":
            pytest.fail(f"could not start Milvus: {e}")
        pytest.skip(f"could not start Milvus: {e}")
    yield server
    server.stop()
