"""The bundled embedding model: workers change the speed, never the vectors or their order; loading
and importing touch neither the network nor the process's environment."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

import asyncrag
from asyncrag.embed.local import ENCODE_BATCH, LocalEmbedder, verify_sha256
from asyncrag.errors import EmbedderError

TEXTS = [f"{i}: " + "tea from the Kestrel Valley " * (1 + i % 9) for i in range(5 * ENCODE_BATCH + 3)]


@pytest.mark.slow
def test_workers_give_the_same_vectors_in_the_same_order(embedder: LocalEmbedder) -> None:
    assert embedder.workers >= 1
    got = np.array(embedder.embed(TEXTS))
    one_call = embedder._encode(TEXTS)  # sentence-transformers alone, in this thread
    assert got.shape == (len(TEXTS), embedder.dim)
    np.testing.assert_allclose(got, one_call, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)  # normalised, for COSINE and IP alike
    assert embedder.embed([]) == [] and len(embedder.embed(TEXTS[:1])) == 1


@pytest.mark.slow
def test_single_worker_and_callers_in_threads(embedder: LocalEmbedder) -> None:
    single = LocalEmbedder(embedder.path, embedder.name, workers=1)
    np.testing.assert_allclose(single.embed(TEXTS), embedder.embed(TEXTS), atol=1e-5)
    threads_before = torch.get_num_threads()
    results: dict[int, list[list[float]]] = {}
    callers = [threading.Thread(target=lambda i=i: results.__setitem__(i, embedder.embed(TEXTS))) for i in range(3)]
    for t in callers:
        t.start()
    for t in callers:
        t.join()
    for vectors in results.values():  # concurrent callers share the workers safely
        np.testing.assert_allclose(vectors, single.embed(TEXTS), atol=1e-5)
    assert torch.get_num_threads() == threads_before  # the workers' one thread each is theirs alone


def test_verify_sha256_accepts_the_pinned_hash_only(tmp_path: Path) -> None:
    weights = tmp_path / "weights.bin"
    weights.write_bytes(os.urandom(3 << 20))
    verify_sha256(weights, hashlib.sha256(weights.read_bytes()).hexdigest())
    with pytest.raises(EmbedderError, match="does not match its pinned sha256"):
        verify_sha256(weights, "0" * 64)


@pytest.mark.slow
def test_loading_a_model_needs_no_network_nor_hf_hub_offline(
    embedder: LocalEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    connects: list[object] = []
    real_connect = socket.socket.connect

    def connect(sock: socket.socket, address: object) -> None:
        connects.append(address)
        real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    loaded = LocalEmbedder(embedder.path, embedder.name, workers=1)
    assert loaded.dim == embedder.dim
    assert connects == []


# Every module but the CLI, the program itself, which may set up its own process (it quiets gRPC's logging).
ENV_AFTER_IMPORTS = """
import importlib, json, os, pkgutil
before = dict(os.environ)
import asyncrag
for module in pkgutil.walk_packages(asyncrag.__path__, "asyncrag."):
    if module.name != "asyncrag.cli":
        importlib.import_module(module.name)
changed = {k: os.environ.get(k) for k in before.keys() | os.environ.keys() if before.get(k) != os.environ.get(k)}
print(json.dumps({"changed": changed}))
"""


@pytest.mark.slow
def test_importing_asyncrag_leaves_the_environment_alone() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env["PYTHONPATH"] = str(Path(asyncrag.__file__).parents[1])  # this checkout's asyncrag, in a fresh interpreter
    out = subprocess.run([sys.executable, "-c", ENV_AFTER_IMPORTS], env=env, capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.splitlines()[-1]) == {"changed": {}}


def test_a_run_with_nothing_to_embed_never_loads_the_weights(tmp_path: Path) -> None:
    """The identity, dimension, window and tokenizer come from the model's files (issue 18)."""
    import asyncio

    from asyncrag.embed.local import load_minilm, read_card
    from asyncrag.rag import AsyncRAG

    corpus = Path(__file__).resolve().parents[1] / "examples" / "corpus"

    async def ingest(embedder: LocalEmbedder) -> str:
        async with AsyncRAG(embedder=embedder, uri=str(tmp_path / "m.db"), collection="c", llm="none") as rag:
            report = await rag.ingest([corpus])
        return ",".join(f"{n} {s}" for s, n in report.counts().items() if n)

    first, second = load_minilm(), load_minilm()
    assert not first.loaded and (first.dim, first.max_tokens) == (384, 256) == read_card(first.path)
    assert asyncio.run(ingest(first)) == "4 added" and first.loaded
    assert (first.dim, first.max_tokens) == (first.model.get_embedding_dimension(), first.model.max_seq_length)
    assert asyncio.run(ingest(second)) == "4 unchanged" and not second.loaded
    assert second.identity == first.identity


def test_a_folder_whose_files_do_not_say_loads_at_once(tmp_path: Path, embedder: LocalEmbedder) -> None:
    import shutil

    from asyncrag.embed.local import read_card

    folder = tmp_path / "model"
    shutil.copytree(embedder.path, folder)
    (folder / "sentence_bert_config.json").unlink()
    assert read_card(folder) is None
    eager = LocalEmbedder(folder, workers=1)
    assert eager.loaded and eager.dim == 384
