"""The bundled embedding model: workers change the speed, never the vectors or their order."""

from __future__ import annotations

import threading

import numpy as np
import torch

from asyncrag.embed.local import ENCODE_BATCH, LocalEmbedder

TEXTS = [f"{i}: " + "tea from the Kestrel Valley " * (1 + i % 9) for i in range(5 * ENCODE_BATCH + 3)]


def test_workers_give_the_same_vectors_in_the_same_order(embedder: LocalEmbedder) -> None:
    assert embedder.workers >= 1
    got = np.array(embedder.embed(TEXTS))
    one_call = embedder._encode(TEXTS)  # sentence-transformers alone, in this thread
    assert got.shape == (len(TEXTS), embedder.dim)
    np.testing.assert_allclose(got, one_call, atol=1e-5)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)  # normalised, for COSINE and IP alike
    assert embedder.embed([]) == [] and len(embedder.embed(TEXTS[:1])) == 1


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
